"""Export a Show-Attend-Tell model to a bundle: encoder, init and step graphs, each checked against
the tutorial's own arithmetic on ONNX Runtime."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from glimpse.export import onnx as onnx_export
from glimpse.models.sat import GRAPH_IO, ShowAttendTell, reference_step
from glimpse.preprocess import Preprocess
from glimpse.vocab import Vocab


def cut(model: ShowAttendTell, batch: int = 2, beam: int = 3) -> list[onnx_export.Graph]:
    """The three graphs with example inputs (batch and beam >= 2 so that export keeps them dynamic)."""
    cfg, g = model.config, model.graphs()
    image = torch.randn(batch, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        features = g["encoder"](image)
        att_proj, h, c = g["init"](features)
    by_beam = {0: "batch", 1: "beam"}
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
    ]


@torch.no_grad()
def check(model: ShowAttendTell, sessions: dict, images: np.ndarray, start: int, beam: int = 3, steps: int = 3) -> dict:
    """Errors of each graph against the tutorial's modules on ``images`` (N, 3, S, S).

    encoder: against Encoder (with the real AdaptiveAvgPool2d); init: against encoder_att and
    init_hidden_state; step: ``steps`` steps of K beams against reference_step on K copies of each
    image's features, fed the reference's own states and top tokens.
    """
    enc, dec = model.encoder, model.decoder
    x = torch.from_numpy(images)
    features = enc(x).flatten(1, 2)  # (N, P, E)
    h, c = dec.init_hidden_state(features)
    att_proj = dec.attention.encoder_att(features)
    err = {
        "encoder": onnx_export.errors(sessions["encoder"].run({"image": images}), {"features": features.numpy()}),
        "init": onnx_export.errors(
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
    for _ in range(steps):
        got = sessions["step"].run(
            {
                "features": features.numpy(),
                "att_proj": att_proj.numpy(),
                "tokens": tokens.numpy(),
                "h": h.numpy(),
                "c": c.numpy(),
            }
        )
        ref = [reference_step(dec, features[i].expand(beam, -1, -1), tokens[i], h[i], c[i]) for i in range(n)]
        logprobs, h, c, alpha = (torch.stack(t) for t in zip(*ref))  # (N, K, ...) each
        want = {"logprobs": logprobs, "h_next": h, "c_next": c, "alpha": alpha}
        step_err = onnx_export.merge_errors(step_err, onnx_export.errors(got, {k: v.numpy() for k, v in want.items()}))
        tokens = logprobs.argmax(-1)
    err["step"] = step_err
    return err


def export_sat(model: ShowAttendTell, vocab: Vocab, preprocess: Preprocess, out: str | Path, **options) -> Path:
    """Write the bundle to ``out``; raise ExportError, leaving nothing at ``out``, if a graph is off.
    ``options``: images, force, tolerance, source, log (``glimpse.export.onnx.write_bundle``); noise
    images are always checked, ``images`` besides."""
    model = model.eval()
    checked = partial(check, model, start=vocab.special["start"])  # (sessions, images) -> errors
    vocabs = {"vocab": ("vocab.json", vocab)}
    notes = {"beam": 3, "steps": 3}
    return onnx_export.write_bundle(model, "sat", cut(model), checked, vocabs, preprocess, out, notes, **options)
