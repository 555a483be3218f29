"""Show, Ask, Attend, and Answer (Kazemi & Elqursh 2017) as Cyanogenoid/pytorch-vqa implements it.

``Net``, ``TextProcessor``, ``Attention``, ``Classifier`` and ``apply_attention`` are that repository's
model.py attribute for attribute, so a checkpoint's ``weights`` (less DataParallel's ``module.``) load
strictly. Its image side is the Caffe-ported ResNet-152's layer4 grid (2048 x 14 x 14 at 448 x 448).

Shapes: B questions, T words, C vision features, h x w grid, Q question features, G glimpses, A answers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from glimpse.families.vqa.model import VQAModel, run_lstm


@dataclass
class SAAAConfig:
    backbone: str = "resnet152"
    caffe: bool = True  # the Caffe port, as pytorch-vqa's preprocess-images.py uses
    image_size: int = 448
    tokens: int = 15193  # question vocabulary + 1 (0: unknown and padding)
    embedding_features: int = 300
    lstm_features: int = 1024
    vision_features: int = 2048
    mid_features: int = 512
    glimpses: int = 2
    classifier_features: int = 1024
    answers: int = 3000
    max_question_length: int = 23  # VQA v2's longest training question; longer ones are truncated

    def to_dict(self) -> dict:
        return asdict(self)


class TextProcessor(nn.Module):
    def __init__(self, embedding_tokens, embedding_features, lstm_features, drop=0.0):
        super().__init__()
        self.embedding = nn.Embedding(embedding_tokens, embedding_features, padding_idx=0)
        self.drop = nn.Dropout(drop)
        self.tanh = nn.Tanh()
        # pytorch-vqa's LSTM is sequence-first and fed a packed batch; batch-first here (not a weight)
        self.lstm = nn.LSTM(input_size=embedding_features, hidden_size=lstm_features, num_layers=1, batch_first=True)

    def forward(self, q, q_len):
        """q (B, T) int64, q_len (B,) -> the final CELL state (B, Q), as pytorch-vqa returns it."""
        tanhed = self.tanh(self.drop(self.embedding(q)))  # (B, T, 300)
        _, _, c = run_lstm(self.lstm, tanhed, q_len)
        return c.squeeze(0)


class Attention(nn.Module):
    def __init__(self, v_features, q_features, mid_features, glimpses, drop=0.0):
        super().__init__()
        self.v_conv = nn.Conv2d(v_features, mid_features, 1, bias=False)
        self.q_lin = nn.Linear(q_features, mid_features)
        self.x_conv = nn.Conv2d(mid_features, glimpses, 1)
        self.drop = nn.Dropout(drop)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, v, q):
        """v (B, C, h, w), q (B, Q) -> glimpse logits (B, G, h, w)."""
        v = self.v_conv(self.drop(v))  # (B, mid, h, w)
        q = self.q_lin(self.drop(q))  # (B, mid)
        x = self.relu(v + q[:, :, None, None])  # pytorch-vqa's tile_2d_over_nd, as a broadcast
        return self.x_conv(self.drop(x))


def apply_attention(input, attention):
    """input (B, C, h, w), attention logits (B, G, h, w) -> (B, G*C), glimpse-major: [g0 C | g1 C]."""
    n, c = input.shape[:2]
    g = attention.shape[1]
    input = input.view(n, 1, c, -1)  # (B, 1, C, h*w)
    attention = torch.softmax(attention.view(n, g, -1), dim=-1).unsqueeze(2)  # (B, G, 1, h*w)
    weighted_mean = (attention * input).sum(dim=-1)  # (B, G, C)
    return weighted_mean.view(n, -1)


class Classifier(nn.Sequential):
    def __init__(self, in_features, mid_features, out_features, drop=0.0):
        super().__init__()
        self.add_module("drop1", nn.Dropout(drop))
        self.add_module("lin1", nn.Linear(in_features, mid_features))
        self.add_module("relu", nn.ReLU())
        self.add_module("drop2", nn.Dropout(drop))
        self.add_module("lin2", nn.Linear(mid_features, out_features))


class Net(nn.Module):
    """pytorch-vqa's model over CNN grid features: forward(v, q, q_len) -> answer logits (B, A)."""

    def __init__(self, c: SAAAConfig):
        super().__init__()
        self.text = TextProcessor(c.tokens, c.embedding_features, c.lstm_features)
        self.attention = Attention(c.vision_features, c.lstm_features, c.mid_features, c.glimpses)
        self.classifier = Classifier(c.glimpses * c.vision_features + c.lstm_features, c.classifier_features, c.answers)

    def forward(self, v, q, q_len):
        q = self.text(q, q_len)
        v = v / (v.norm(p=2, dim=1, keepdim=True).expand_as(v) + 1e-8)  # L2 over channels, per cell
        a = self.attention(v, q)
        v = apply_attention(v, a)
        return self.classifier(torch.cat([v, q], dim=1))


class SAAA(VQAModel):
    """The Caffe ResNet trunk and pytorch-vqa's Net, cut into glimpse's encoder/question/head."""

    Config = SAAAConfig

    QUESTION_OUTPUTS = ("question",)
    HEAD_INPUTS = ("grid", "question")

    def __init__(self, config: SAAAConfig):
        super().__init__(config.backbone, config.caffe)
        self.config = config
        self.net = Net(config)

    def reference(self, grid, tokens, lengths):
        return self.net(grid, tokens, lengths)  # pytorch-vqa's forward, verbatim

    def question(self, tokens, lengths):
        return self.net.text(tokens, lengths)  # (B, Q)

    def head(self, grid, question):
        """grid (B, C, h, w), question (B, Q) -> logits (B, A), glimpses (B, G, h, w) (softmax maps)."""
        v = grid / (grid.norm(p=2, dim=1, keepdim=True) + 1e-8)
        a = self.net.attention(v, question)  # (B, G, h, w)
        logits = self.net.classifier(torch.cat([apply_attention(v, a), question], dim=1))
        glimpses = torch.softmax(a.flatten(2), dim=-1).view_as(a)
        return logits, glimpses
