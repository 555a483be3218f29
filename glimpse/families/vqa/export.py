"""Export a VQA model (saaa, san, rdan, naive) to a bundle: encoder, question and head graphs, each checked
against the reference modules on ONNX Runtime, questions of mixed lengths included."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from glimpse.export import compare
from glimpse.export import onnx as onnx_export
from glimpse.families.vqa.model import VQAModel
from glimpse.preprocess import Preprocess
from glimpse.vocab import Vocab


def cut(model: VQAModel, batch: int = 3, words: int = 5) -> list[onnx_export.Graph]:
    """The three graphs with example inputs (batch, words >= 2, lengths unequal, so all stay dynamic)."""
    c = model.config
    image = torch.randn(2, 3, c.image_size, c.image_size)
    tokens = torch.randint(1, c.tokens, (batch, words))
    lengths = torch.tensor([words] + [2] * (batch - 1))
    with torch.no_grad():
        grid = model.cnn(image[:1]).expand(batch, -1, -1, -1).contiguous()
        q = model.question(tokens, lengths)
    q = q if isinstance(q, tuple) else (q,)
    named = dict(zip(model.QUESTION_OUTPUTS, q)) | {"grid": grid, "lengths": lengths}
    head_inputs = {n: named[n] for n in model.HEAD_INPUTS}
    by_batch = {n: {0: "batch"} for n in head_inputs}
    if "words" in head_inputs:
        by_batch["words"] = {0: "batch", 1: "words"}
    g = model.graphs()
    return [
        onnx_export.Graph("encoder", g["encoder"], {"image": image}, ["grid"], {"image": {0: "batch"}}),
        onnx_export.Graph(
            "question",
            g["question"],
            {"tokens": tokens, "lengths": lengths},
            list(model.QUESTION_OUTPUTS),
            {"tokens": {0: "batch", 1: "words"}, "lengths": {0: "batch"}},
            lstm_lengths="lengths",
        ),
        onnx_export.Graph("head", g["head"], head_inputs, list(model.HEAD_OUTPUTS), by_batch),
    ]


@torch.no_grad()
def check(model: VQAModel, sessions: dict, images: np.ndarray) -> dict:
    """Errors of each graph against the reference modules: the CNN on ``images``; the question
    encoder on padded questions of mixed lengths against packed PyTorch; the head on the grids and
    those questions against the family's reference (pytorch-vqa's own Net.forward for saaa)."""
    grid = model.cnn(torch.from_numpy(images))
    err = {"encoder": compare.errors(sessions["encoder"].run({"image": images}), {"grid": grid.numpy()})}
    tokens, lengths = onnx_export.example_texts(model.config.tokens)
    q = model.question(torch.from_numpy(tokens), torch.from_numpy(lengths))
    q = q if isinstance(q, tuple) else (q,)
    want = {n: t.numpy() for n, t in zip(model.QUESTION_OUTPUTS, q)}
    got = sessions["question"].run({"tokens": tokens, "lengths": lengths})
    err["question"] = compare.errors(got, want)

    n = len(tokens)
    rows = np.arange(n) % len(images)  # every question against some image
    named = {**want, "grid": grid.numpy()[rows], "lengths": lengths}
    feed = {k: named[k] for k in model.HEAD_INPUTS}
    got = sessions["head"].run(feed)
    outputs = model.head(*(torch.from_numpy(v) for v in feed.values()))
    want = {name: t.numpy() for name, t in zip(model.HEAD_OUTPUTS, outputs)}
    want["logits"] = model.reference(grid[rows], torch.from_numpy(tokens), torch.from_numpy(lengths)).numpy()
    err["head"] = compare.errors(got, want)
    return err


def export_vqa(
    model: VQAModel, family: str, questions: Vocab, answers: Vocab, preprocess: Preprocess, out: str | Path, **options
) -> Path:
    """Write the bundle to ``out``; raise ExportError, leaving nothing at ``out``, if a graph is off.
    ``options``: images, force, tolerance, source, log (``glimpse.export.onnx.write_bundle``)."""
    model = model.eval()
    vocabs = {"vocab": ("questions.json", questions), "answers": ("answers.json", answers)}
    notes = {"questions": "6 random, lengths 1 to 9, unsorted"}
    checked = partial(check, model)  # (sessions, images) -> errors
    return onnx_export.write_bundle(model, family, cut(model), checked, vocabs, preprocess, out, notes, **options)
