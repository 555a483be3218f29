"""Export an m-DAN matching model to a bundle: encoder (image -> grid), image_embed (grid -> z_v) and
text_embed (tokens, lengths -> z_u), each checked against the reference module on ONNX Runtime."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from glimpse.export import compare
from glimpse.export import onnx as onnx_export
from glimpse.families.mdan.model import MDAN
from glimpse.preprocess import Preprocess
from glimpse.vocab import Vocab

IMAGE_OUTPUTS = ("image_embedding", "glimpses")
TEXT_OUTPUTS = ("text_embedding", "word_weights")


def cut(model: MDAN, batch: int = 3, words: int = 5) -> list[onnx_export.Graph]:
    """The three graphs with example inputs (lengths unequal, so batch and words stay dynamic)."""
    c = model.config
    image = torch.randn(2, 3, c.image_size, c.image_size)
    with torch.no_grad():
        grid = model.cnn(image)
    tokens = torch.randint(1, c.tokens, (batch, words))
    lengths = torch.tensor([words] + [2] * (batch - 1))
    g = model.graphs()
    return [
        onnx_export.Graph("encoder", g["encoder"], {"image": image}, ["grid"], {"image": {0: "batch"}}),
        onnx_export.Graph("image_embed", g["image_embed"], {"grid": grid}, list(IMAGE_OUTPUTS), {"grid": {0: "batch"}}),
        onnx_export.Graph(
            "text_embed",
            g["text_embed"],
            {"tokens": tokens, "lengths": lengths},
            list(TEXT_OUTPUTS),
            {"tokens": {0: "batch", 1: "words"}, "lengths": {0: "batch"}},
            lstm_lengths="lengths",
        ),
    ]


@torch.no_grad()
def check(model: MDAN, sessions: dict, images: np.ndarray) -> dict:
    """Errors of each graph against the module: the CNN and image side on ``images``, the text side on
    padded sentences of mixed lengths against packed PyTorch."""
    grid = model.cnn(torch.from_numpy(images))
    err = {"encoder": compare.errors(sessions["encoder"].run({"image": images}), {"grid": grid.numpy()})}
    want = dict(zip(IMAGE_OUTPUTS, (t.numpy() for t in model.image_embed(grid))))
    err["image_embed"] = compare.errors(sessions["image_embed"].run({"grid": grid.numpy()}), want)
    tokens, lengths = onnx_export.example_texts(model.config.tokens)
    embedded = model.text_embed(torch.from_numpy(tokens), torch.from_numpy(lengths))
    want = dict(zip(TEXT_OUTPUTS, (t.numpy() for t in embedded)))
    err["text_embed"] = compare.errors(sessions["text_embed"].run({"tokens": tokens, "lengths": lengths}), want)
    return err


def export_mdan(model: MDAN, vocab: Vocab, preprocess: Preprocess, out: str | Path, **options) -> Path:
    """Write the bundle to ``out``; raise ExportError, leaving nothing at ``out``, if a graph is off.
    ``options``: images, force, tolerance, source, log (``glimpse.export.onnx.write_bundle``)."""
    model = model.eval()
    notes = {"sentences": "6 random, lengths 1 to 9, unsorted"}
    checked = partial(check, model)  # (sessions, images) -> errors
    vocabs = {"vocab": ("words.json", vocab)}
    return onnx_export.write_bundle(model, "mdan", cut(model), checked, vocabs, preprocess, out, notes, **options)
