"""The attention hop of Dual Attention Networks, shared by r-DAN (VQA) and m-DAN (matching)."""

from __future__ import annotations

import torch
from torch import nn


class DualHop(nn.Module):
    """One modality's attention at one hop, guided by the joint memory."""

    def __init__(self, in_features: int, features: int):
        super().__init__()
        self.features = nn.Linear(in_features, features)
        self.memory = nn.Linear(features, features)
        self.logit = nn.Linear(features, 1)

    def forward(self, x, m, mask=None):
        """x (B, N, in), m (B, d), mask (B, N) or None -> weights (B, N)."""
        h = torch.tanh(self.features(x)) * torch.tanh(self.memory(m))[:, None, :]  # (B, N, d)
        logits = self.logit(h).squeeze(-1)  # (B, N)
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        return torch.softmax(logits, dim=-1)
