"""Stacked Attention Networks (Yang et al. CVPR 2016), glimpse's canonical layout.

No canonical PyTorch SAN exists (the public ports tie or mangle the hop weights), so this follows the
paper with its LSTM question model and K = 2 hops, each with its own weights:

    v_I   = tanh(W_I f_I + b_I)                           image regions (B, P, d)
    u_0   = the LSTM's last hidden state                  (B, d)
    h_A   = tanh(W_IA v_I + (W_QA u_{k-1} + b_A))         (B, P, a)
    p_I   = softmax(W_P h_A + b_P)                        (B, P)     over the regions
    u_k   = sum_i p_I,i v_I,i + u_{k-1}
    logits = W_u u_K + b_u                                (B, A)

State dict: ``cnn.*`` (torchvision ResNet names), ``embedding.weight``, ``lstm.*``, ``image.weight/bias``,
``hops.{k}.image.weight`` (no bias: b_A sits on the question side), ``hops.{k}.question.weight/bias``,
``hops.{k}.logit.weight/bias``, ``classifier.weight/bias``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from glimpse.families.vqa.model import VQAModel, run_lstm


@dataclass
class SANConfig:
    backbone: str = "resnet152"
    caffe: bool = False
    image_size: int = 448
    tokens: int = 13746  # question vocabulary + 1 (0: unknown and padding)
    embedding_features: int = 500
    vision_features: int = 2048
    features: int = 1024  # d: image regions and question share it, since u_k adds them
    attention_features: int = 512
    hops: int = 2
    answers: int = 1000
    max_question_length: int = 23

    def to_dict(self) -> dict:
        return asdict(self)


class Hop(nn.Module):
    def __init__(self, features: int, attention_features: int):
        super().__init__()
        self.image = nn.Linear(features, attention_features, bias=False)
        self.question = nn.Linear(features, attention_features)
        self.logit = nn.Linear(attention_features, 1)

    def forward(self, v, u):
        """v (B, P, d), u (B, d) -> u' (B, d), attention (B, P)."""
        h = torch.tanh(self.image(v) + self.question(u)[:, None, :])  # (B, P, a)
        p = torch.softmax(self.logit(h).squeeze(-1), dim=-1)  # (B, P)
        return torch.bmm(p[:, None, :], v).squeeze(1) + u, p


class SAN(VQAModel):
    Config = SANConfig

    QUESTION_OUTPUTS = ("question",)
    HEAD_INPUTS = ("grid", "question")

    def __init__(self, config: SANConfig):
        super().__init__(config.backbone, config.caffe)
        self.config = c = config
        self.embedding = nn.Embedding(c.tokens, c.embedding_features, padding_idx=0)
        self.lstm = nn.LSTM(c.embedding_features, c.features, batch_first=True)
        self.image = nn.Linear(c.vision_features, c.features)
        self.hops = nn.ModuleList(Hop(c.features, c.attention_features) for _ in range(c.hops))
        self.classifier = nn.Linear(c.features, c.answers)

    def question(self, tokens, lengths):
        _, h, _ = run_lstm(self.lstm, self.embedding(tokens), lengths)
        return h.squeeze(0)  # (B, d)

    def head(self, grid, question):
        """grid (B, C, h, w), question (B, d) -> logits (B, A), glimpses (B, K, h, w): each hop's map."""
        b, _, gh, gw = grid.shape
        v = torch.tanh(self.image(grid.flatten(2).transpose(1, 2)))  # (B, P, d)
        u, maps = question, []
        for hop in self.hops:
            u, p = hop(v, u)
            maps.append(p)
        return self.classifier(u), torch.stack(maps, dim=1).view(b, -1, gh, gw)
