"""What the VQA families (saaa, san, rdan) share: the question LSTM over padded batches, masks, and the
three-graph cut every one of them exports.

    encoder   image (B, 3, H, W) -> grid (B, C, h, w)          the CNN, once per image
    question  tokens (B, T) int64, lengths (B,) int64 -> the question's encoding (per family)
    head      grid and the question's encoding -> logits (B, A), glimpses (B, G, h, w) (+ per family)

One image's grid serves all of its questions: the head takes grids and questions row by row, so a
pipeline repeats a grid (cheap) instead of re-running the CNN (the cost).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from glimpse.models.cnn import Trunk


def run_lstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor):
    """A batch-first LSTM over each row's first ``lengths`` steps: x (B, T, E) -> outputs (B, T, H*dirs)
    (zeros past a row's length), h and c (dirs, B, H) at each row's last step (first, backwards).

    Eager PyTorch packs the batch, which is the reference arithmetic. In ONNX export the LSTM runs over
    the padded batch and ``glimpse.export.vqa`` hands the lengths to the ONNX LSTM operator as its
    ``sequence_lens``, which gives the packed result exactly (checked at export against eager).
    """
    if torch.onnx.is_in_onnx_export():
        y, (h, c) = lstm(x)
        return y, h, c
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    y, (h, c) = lstm(packed)
    y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
    return y, h, c


def length_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) True where a step is a real word."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


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
        return {"encoder": self.cnn, "question": _Call(self.question), "head": _Call(self.head)}


class _Call(nn.Module):
    """A method of a model as a module to export (its parameters are the model's). torch.export reads
    input names from ``forward``'s signature, so the method's own signature is lent to it."""

    def __init__(self, method):
        super().__init__()
        self.owner, self.name = method.__self__, method.__name__
        self.forward = method  # an instance attribute: nn.Module.__call__ and torch.export find it
