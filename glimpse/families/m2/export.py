"""Export a Meshed-Memory Transformer to a bundle: encoder (regions -> levels, mask), init (levels -> the
decoder's cross-attention keys and values) and step (one token over fixed-size self-attention caches),
checked against the public stateful decoding on ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from glimpse.export import compare
from glimpse.export import onnx as onnx_export
from glimpse.families.m2.model import GRAPH_IO, M2
from glimpse.families.m2.pipeline import empty_cache
from glimpse.vocab import Vocab


def cut(model: M2, batch: int = 2, beams: int = 3, positions: int = 7) -> list[onnx_export.Graph]:
    """The graphs with example inputs (batch, beams and positions differ, so export keeps them dynamic)."""
    c, g = model.config, model.graphs()
    regions = torch.randn(batch, c.regions, c.d_in)
    with torch.no_grad():
        levels, mask = g["encoder"](regions)
        cross_keys, cross_values = g["init"](levels)
    cache = {n: torch.from_numpy(a) for n, a in empty_cache(batch, beams, c.to_dict(), positions).items()}
    step_inputs = {
        "tokens": torch.randint(0, c.vocab_size, (batch, beams)),
        "position": torch.tensor([0]),
        "cross_keys": cross_keys,
        "cross_values": cross_values,
        "mask": mask,
        **cache,
    }
    per_beam = {0: "batch", 1: "beam"}
    step_axes = {n: {0: "batch"} for n in ("cross_keys", "cross_values", "mask")}
    step_axes |= {"tokens": per_beam, "self_mask": per_beam | {2: "positions"}}
    step_axes |= {n: per_beam | {4: "positions"} for n in ("self_keys", "self_values")}
    return [
        onnx_export.Graph(
            "encoder", g["encoder"], {"regions": regions}, GRAPH_IO["encoder"][1], {"regions": {0: "batch"}}
        ),
        onnx_export.Graph("init", g["init"], {"levels": levels}, GRAPH_IO["init"][1], {"levels": {0: "batch"}}),
        onnx_export.Graph("step", g["step"], step_inputs, GRAPH_IO["step"][1], step_axes),
    ]


def check_regions(config, n: int = 3, seed: int = 0) -> np.ndarray:
    """(n, R, d_in) regions as detectors give them: non-negative (post-ReLU pooled features), images
    with fewer detections zero-padded."""
    rng = np.random.default_rng(seed)
    regions = rng.exponential(1.0, (n, config.regions, config.d_in)).astype(np.float32)
    for i in range(1, n):
        regions[i, config.regions // (i + 1) :] = 0
    return regions


@torch.no_grad()
def check(model: M2, sessions: dict, regions: np.ndarray, steps: int = 6, beams: int = 2) -> dict:
    """Errors of each graph on ``regions``: encoder and init against the modules; the step driven for
    ``steps`` steps over its own caches (random words, <pad> among them) against the public stateful
    decoding (``M2.reference_step``) fed the same words."""
    c, g = model.config, model.graphs()
    x = torch.from_numpy(regions)
    levels, mask = model.encoder(x)
    errors = {"encoder": compare.errors(sessions["encoder"].run({"regions": regions}), {"levels": levels.numpy()})}
    keys, values = g["init"](levels)
    got = sessions["init"].run({"levels": levels.numpy()})
    errors["init"] = compare.errors(got, {"cross_keys": keys.numpy(), "cross_values": values.numpy()})

    b = len(regions)
    rng = np.random.default_rng(1)
    words = rng.integers(0, c.vocab_size, (steps, b, beams))
    words[words == c.padding_idx] = 0  # a first word <pad> leaves nothing to attend to: NaN, upstream too
    words[2, 0, 1] = c.padding_idx  # a later <pad> masks its own key and zeroes its outputs
    feeds = {"cross_keys": keys.numpy(), "cross_values": values.numpy(), "mask": mask.numpy()}
    feeds |= empty_cache(b, beams, c.to_dict(), steps + 1)
    past = [torch.zeros(b * beams, 0, c.d_model) for _ in range(c.layers)]
    past_mask = torch.zeros(b * beams, 1, 1, 0, dtype=torch.bool)
    rows_levels, rows_mask = levels.repeat_interleave(beams, 0), mask.repeat_interleave(beams, 0)
    errors["step"] = {}
    for t in range(steps):
        out = sessions["step"].run(feeds | {"tokens": words[t], "position": np.array([t])})
        want, past, past_mask = model.reference_step(
            torch.from_numpy(words[t].reshape(-1)), t, rows_levels, rows_mask, past, past_mask
        )
        step_error = compare.errors(out, {"logprobs": want.view(b, beams, -1).numpy()})
        errors["step"] = compare.merge_errors(errors["step"], step_error)
        feeds |= {"self_keys": out["self_keys_next"], "self_values": out["self_values_next"]}
        feeds["self_mask"] = out["self_mask_next"]
    return errors


def export_m2(model: M2, vocab: Vocab, out: str | Path, **options) -> Path:
    """Write the bundle to ``out``; raise ExportError, leaving nothing at ``out``, if a graph is off.
    ``options``: force, tolerance, source, log (``glimpse.export.onnx.write_bundle``)."""
    model = model.eval()
    notes = {"regions": "3 sets of random detections, 2 zero-padded", "steps": 6}
    regions = check_regions(model.config)

    def checked(sessions, _images):
        return check(model, sessions, regions)

    vocabs = {"vocab": ("vocab.json", vocab)}
    return onnx_export.write_bundle(model, "m2", cut(model), checked, vocabs, None, out, notes, **options)
