"""Export a Show-Attend-Tell model to a bundle: encoder, init and step graphs, each checked against
the tutorial's own arithmetic on ONNX Runtime."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from glimpse.export import compare
from glimpse.export import onnx as onnx_export
from glimpse.families.sat.model import GRAPH_IO, ShowAttendTell, reference_step
from glimpse.preprocess import Preprocess
from glimpse.vocab import Vocab

FUSED_BEAM = 5  # the fused step's fixed K: it serves every beam size up to K


def cut(model: ShowAttendTell, end: int, fused_beam: int = FUSED_BEAM, batch: int = 2, beam: int = 3):
    """The graphs with example inputs (batch and beam >= 2 so that export keeps them dynamic); the
    fused step, with ``fused_beam`` slots, unless that is 0."""
    cfg, g = model.config, model.graphs(end)
    image = torch.randn(batch, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        features = g["encoder"](image)
        att_proj, h, c = g["init"](features)
    by_beam = {0: "batch", 1: "beam"}
    fused_inputs = {
        "features": features,
        "att_proj": att_proj,
        "tokens": torch.zeros(batch, fused_beam, dtype=torch.int64),
        "h": h.unsqueeze(1).expand(-1, fused_beam, -1).contiguous(),
        "c": c.unsqueeze(1).expand(-1, fused_beam, -1).contiguous(),
        "scores": torch.zeros(batch, fused_beam),
        "width": torch.full((batch,), fused_beam, dtype=torch.int64),
    }
    fused = onnx_export.Graph(
        "step_fused", g["step_fused"], fused_inputs, GRAPH_IO["step_fused"][1], {n: {0: "batch"} for n in fused_inputs}
    )
    return [
        onnx_export.Graph("encoder", g["encoder"], {"image": image}, GRAPH_IO["encoder"][1], {"image": {0: "batch"}}),
        onnx_export.Graph("init", g["init"], {"features": features}, GRAPH_IO["init"][1], {"features": {0: "batch"}}),
        onnx_export.Graph(
            "step",
            g["step"],
            {
                "features": features,
                "att_proj": att_proj,
                "tokens": torch.zeros(batch, beam, dtype=torch.int64),
                "h": h.unsqueeze(1).expand(-1, beam, -1).contiguous(),
                "c": c.unsqueeze(1).expand(-1, beam, -1).contiguous(),
            },
            GRAPH_IO["step"][1],
            {"features": {0: "batch"}, "att_proj": {0: "batch"}, "tokens": by_beam, "h": by_beam, "c": by_beam},
        ),
    ] + ([fused] if fused_beam else [])


@torch.no_grad()
def check(
    model: ShowAttendTell, sessions: dict, images: np.ndarray, start: int, end: int, beam: int = 3, steps: int = 3
) -> dict:
    """Errors of each graph against the tutorial's modules on ``images`` (N, 3, S, S).

    encoder: against Encoder (with the real AdaptiveAvgPool2d); init: against encoder_att and
    init_hidden_state; step: ``steps`` steps of K beams against reference_step on K copies of each
    image's features, fed the reference's own states and top tokens; step_fused: on the same feeds
    (``beam`` must be its K), see ``check_fused``.
    """
    enc, dec = model.encoder, model.decoder
    x = torch.from_numpy(images)
    features = enc(x).flatten(1, 2)  # (N, P, E)
    h, c = dec.init_hidden_state(features)
    att_proj = dec.attention.encoder_att(features)
    err = {
        "encoder": compare.errors(sessions["encoder"].run({"image": images}), {"features": features.numpy()}),
        "init": compare.errors(
            sessions["init"].run({"features": features.numpy()}),
            {"att_proj": att_proj.numpy(), "h": h.numpy(), "c": c.numpy()},
        ),
    }
    n = len(images)
    tokens = torch.full((n, beam), start, dtype=torch.int64)
    tokens[:, 1:] = torch.randint(0, model.config.vocab_size, (n, beam - 1))
    h = h.unsqueeze(1).repeat(1, beam, 1)  # (N, K, D)
    c = c.unsqueeze(1).repeat(1, beam, 1)
    step_err: dict = {}
    fused_err: dict = {}
    for _ in range(steps):
        feeds = {"features": features, "att_proj": att_proj, "tokens": tokens, "h": h, "c": c}
        feeds = {name: x.numpy() for name, x in feeds.items()}
        got = sessions["step"].run(feeds)
        ref = [reference_step(dec, features[i].expand(beam, -1, -1), tokens[i], h[i], c[i]) for i in range(n)]
        logprobs, h, c, alpha = (torch.stack(t) for t in zip(*ref))  # (N, K, ...) each
        want = {"logprobs": logprobs, "h_next": h, "c_next": c, "alpha": alpha}
        step_err = compare.merge_errors(step_err, compare.errors(got, {k: v.numpy() for k, v in want.items()}))
        if "step_fused" in sessions:
            fused_err = compare.merge_errors(fused_err, check_fused(sessions["step_fused"], feeds, want, end))
        tokens = logprobs.argmax(-1)
    err["step"] = step_err
    if "step_fused" in sessions:
        err["step_fused"] = fused_err
    return err


def check_fused(session, feeds: dict, want: dict, end: int, seed: int = 0) -> dict:
    """Errors of the fused step against the reference step's outputs ``want`` on the same ``feeds``,
    with random running scores and widths: the scores it chose against the reference's best
    continuations, its states, attention and scores against the reference's at the parents and words
    it picked (so a near-tie that floating point breaks the other way is no error), and its bookkeeping:
    chosen ``end`` words ended, live beams first."""
    n, k = feeds["tokens"].shape
    rng = np.random.default_rng(seed)
    width = rng.integers(1, k + 1, n)
    live = np.arange(k)[None, :] < width[:, None]
    scores = np.where(live, -rng.uniform(0, 10, (n, k)), -np.inf).astype(np.float32)
    got = session.run({**feeds, "scores": scores, "width": width})
    lp = want["logprobs"].numpy()  # (N, K, V)
    best = np.sort((scores[:, :, None] + lp).reshape(n, -1), axis=1)[:, ::-1][:, :k]  # (N, K): the K best
    chosen = np.sort(np.where(live, got["next_scores"], -np.inf), axis=1)[:, ::-1]  # ranked as best
    rows, parents = np.arange(n)[:, None], got["parents"]
    at = {  # the reference's values at the fused step's own choices
        "next_scores": scores[rows, parents] + lp[rows, parents, got["next_tokens"]],
        **{o: want[o].numpy()[rows, parents] for o in ("h_next", "c_next", "alpha")},
    }
    masked = {o: got[o][live] for o in at}
    # the search's bookkeeping: a chosen <end> has ended, and the live ones come first, next_width of them
    ended = live & (got["next_tokens"] == end)
    ordered = (np.arange(k)[None, :] < got["next_width"][:, None]) == (live & ~ended)
    wrong = int((got["ended"] != ended).sum() + (~ordered).sum())
    return {
        "bookkeeping": dict.fromkeys(compare.FIGURES, float(wrong)),  # slots wrong: any is an error
        "best_scores": compare.errors({"s": chosen[live]}, {"s": best[live]})["s"],
        **compare.errors(masked, {o: v[live] for o, v in at.items()}),
    }


def export_sat(
    model: ShowAttendTell, vocab: Vocab, preprocess: Preprocess, out: str | Path, fused_beam=FUSED_BEAM, **options
) -> Path:
    """Write the bundle to ``out``; raise ExportError, leaving nothing at ``out``, if a graph is off.
    ``fused_beam``: the fused step's K (0: no fused step).
    ``options``: images, force, tolerance, source, log (``glimpse.export.onnx.write_bundle``); noise
    images are always checked, ``images`` besides."""
    model = model.eval()
    beam = fused_beam or 3  # the fused step is checked on the very feeds of the step
    special = {"start": vocab.special["start"], "end": vocab.special["end"]}
    checked = partial(check, model, **special, beam=beam)  # (sessions, images) -> errors
    vocabs = {"vocab": ("vocab.json", vocab)}
    notes = {"beam": beam, "steps": 3}
    graphs = cut(model, vocab.special["end"], fused_beam)
    return onnx_export.write_bundle(model, "sat", graphs, checked, vocabs, preprocess, out, notes, **options)
