"""Export a Show and Tell model to a bundle: encoder, init and step graphs, each checked against the
tutorial's modules on ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from glimpse.export import compare
from glimpse.export import onnx as onnx_export
from glimpse.families.nic.model import GRAPH_IO, ShowAndTell
from glimpse.preprocess import Preprocess
from glimpse.vocab import Vocab


def cut(model: ShowAndTell, batch: int = 2, beam: int = 3) -> list[onnx_export.Graph]:
    """The graphs with example inputs (batch and beam >= 2, so that export keeps them dynamic)."""
    cfg, g = model.config, model.graphs()
    image = torch.randn(batch, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        features = g["encoder"](image)
        _, h, c = g["init"](features)  # (B, L, H)
    by_beam = {0: "batch", 1: "beam"}
    beams = {"h": h.unsqueeze(1).expand(-1, beam, -1, -1).contiguous(), "c": c.unsqueeze(1).expand(-1, beam, -1, -1)}
    step_inputs = {
        "tokens": torch.zeros(batch, beam, dtype=torch.int64),
        **{k: v.contiguous() for k, v in beams.items()},
    }
    return [
        onnx_export.Graph("encoder", g["encoder"], {"image": image}, GRAPH_IO["encoder"][1], {"image": {0: "batch"}}),
        onnx_export.Graph("init", g["init"], {"features": features}, GRAPH_IO["init"][1], {"features": {0: "batch"}}),
        onnx_export.Graph("step", g["step"], step_inputs, GRAPH_IO["step"][1], dict.fromkeys(step_inputs, by_beam)),
    ]


@torch.no_grad()
def check(model: ShowAndTell, sessions: dict, images: np.ndarray, beam: int = 3, steps: int = 3) -> dict:
    """Errors of each graph against the tutorial's modules on ``images`` (N, 3, 224, 224): the encoder
    against EncoderCNN; init against the LSTM's first step on the image (states None, as sample()); the step
    over ``steps`` steps of K beams against the LSTM fed each beam's token, with the reference's own states
    and, after the first, its best tokens."""
    enc, dec = model.encoder, model.decoder
    features = enc(torch.from_numpy(images))  # (N, E)
    hiddens, (h, c) = dec.lstm(features.unsqueeze(1))  # h, c (L, N, H)
    want = {
        "logprobs": F.log_softmax(dec.linear(hiddens.squeeze(1)), -1),
        "h": h.transpose(0, 1),
        "c": c.transpose(0, 1),
    }
    err = {
        "encoder": compare.errors(sessions["encoder"].run({"image": images}), {"features": features.numpy()}),
        "init": compare.errors(sessions["init"].run({"features": features.numpy()}), _numpy(want)),
    }
    n = len(images)
    tokens = torch.randint(0, model.config.vocab_size, (n, beam))
    h, c = (x.transpose(0, 1).unsqueeze(1).repeat(1, beam, 1, 1) for x in (h, c))  # (N, K, L, H)
    step_err: dict = {}
    for _ in range(steps):
        got = sessions["step"].run(_numpy({"tokens": tokens, "h": h, "c": c}))
        state = tuple(x.flatten(0, 1).transpose(0, 1).contiguous() for x in (h, c))  # (L, N*K, H)
        y, (h, c) = dec.lstm(dec.embed(tokens.flatten()).unsqueeze(1), state)  # y (N*K, 1, H)
        logprobs = F.log_softmax(dec.linear(y.squeeze(1)), -1).reshape(n, beam, -1)  # (N, K, V)
        h, c = (x.transpose(0, 1).reshape(n, beam, *x.shape[::2]) for x in (h, c))  # (N, K, L, H)
        want = {"logprobs": logprobs, "h_next": h, "c_next": c}
        step_err = compare.merge_errors(step_err, compare.errors(got, _numpy(want)))
        tokens = logprobs.argmax(-1)
    err["step"] = step_err
    return err


def _numpy(tensors: dict) -> dict:
    return {name: x.numpy() for name, x in tensors.items()}


@torch.no_grad()
def export_nic(model: ShowAndTell, vocab: Vocab, preprocess: Preprocess, out: str | Path, **options) -> Path:
    """Write the bundle to ``out``; raise ExportError, leaving nothing at ``out``, if a graph is off.
    ``options``: images, force, tolerance, source, log (``glimpse.export.onnx.write_bundle``); noise images
    are always checked, ``images`` besides."""
    model = model.eval()
    checked = lambda sessions, images: check(model, sessions, images)  # noqa: E731
    vocabs = {"vocab": ("vocab.json", vocab)}
    return onnx_export.write_bundle(
        model, "nic", cut(model), checked, vocabs, preprocess, out, {"beam": 3, "steps": 3}, **options
    )
