"""Reading text with an LSTM over padded batches, as the VQA and matching families do, and exporting a
method of a model as a graph of its own."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

UNKNOWN = "<unk>"  # token 0 of the question/sentence vocabularies: unknown words and padding


def run_lstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor):
    """A batch-first LSTM over each row's first ``lengths`` steps: x (B, T, E) -> outputs (B, T, H*dirs)
    (zeros past a row's length), h and c (dirs, B, H) at each row's last step (first, backwards).

    Eager PyTorch packs the batch, which is the reference arithmetic. In ONNX export the LSTM runs over
    the padded batch and the family's export hands the lengths to the ONNX LSTM operator as its
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


class Call(nn.Module):
    """A method of a model as a module to export (its parameters are the model's). torch.export reads
    input names from ``forward``'s signature, so the method's own signature is lent to it."""

    def __init__(self, method):
        super().__init__()
        self.owner, self.name = method.__self__, method.__name__
        self.forward = method  # an instance attribute: nn.Module.__call__ and torch.export find it
