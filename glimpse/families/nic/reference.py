"""sample.py of yunjey/pytorch-tutorial's image_captioning, restated for the tests and the benchmark: the
image through EncoderCNN, then DecoderRNN.sample's 20 greedy steps, the ids read up to the first <end>."""

from __future__ import annotations

import torch

from glimpse.families.nic.model import ShowAndTell


@torch.no_grad()
def sample(model: ShowAndTell, pixels: torch.Tensor, end: int) -> list[list[int]]:
    """pixels (B, 3, 224, 224), preprocessed as sample.py does -> each image's ids, cut after the first
    ``end`` as sample.py cuts the words it prints (the <start> it predicts first included)."""
    ids = model.decoder.sample(model.encoder(pixels)).tolist()  # (B, 20)
    return [row[: row.index(end) + 1] if end in row else row for row in ids]
