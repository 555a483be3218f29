"""What the VQA families (saaa, san, rdan, naive) share: the question LSTM over padded batches, masks, and the
three-graph cut every one of them exports.

    encoder   image (B, 3, H, W) -> grid (B, C, h, w)          the CNN, once per image
    question  tokens (B, T) int64, lengths (B,) int64 -> the question's encoding (per family)
    head      grid and the question's encoding -> logits (B, A), glimpses (B, G, h, w) (+ per family)

One image's grid serves all of its questions: the head takes grids and questions row by row, so a
pipeline repeats a grid (cheap) instead of re-running the CNN (the cost).
"""

from __future__ import annotations

from torch import nn

from glimpse.nn.cnn import Trunk
from glimpse.nn.text import Call, length_mask, run_lstm  # noqa: F401 (the families import them from here too)


class VQAModel(nn.Module):
    """A VQA family's model: ``cnn`` (a Trunk) and the family's question and head halves.

    Families set ``QUESTION_OUTPUTS`` and ``HEAD_INPUTS``/``HEAD_OUTPUTS`` (names in the graphs) and
    implement ``question(tokens, lengths)`` and ``head(grid, *question_outputs[, lengths])``.
    """

    QUESTION_OUTPUTS: tuple[str, ...] = ()
    HEAD_INPUTS: tuple[str, ...] = ()
    HEAD_OUTPUTS: tuple[str, ...] = ("logits", "glimpses")

    def __init__(self, backbone: str, caffe: bool):
        super().__init__()
        self.cnn = Trunk(backbone, caffe)

    def forward(self, image, tokens, lengths):
        """The whole model: image (B, 3, H, W), question (B, T) with lengths (B,) -> head outputs."""
        return self.answer(self.cnn(image), tokens, lengths)

    def answer(self, grid, tokens, lengths):
        q = self.question(tokens, lengths)
        q = q if isinstance(q, tuple) else (q,)
        named = dict(zip(self.QUESTION_OUTPUTS, q)) | {"grid": grid, "lengths": lengths}
        return self.head(*(named[n] for n in self.HEAD_INPUTS))

    def reference(self, grid, tokens, lengths):
        """The answer logits as the family's reference computes them (a family whose public code
        differs in form from the cut overrides this)."""
        return self.answer(grid, tokens, lengths)[0]

    def graphs(self) -> dict[str, nn.Module]:
        return {"encoder": self.cnn, "question": Call(self.question), "head": Call(self.head)}
