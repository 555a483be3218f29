"""Dual Attention Networks for VQA, reasoning variant r-DAN (Nam et al. CVPR 2017), glimpse's canonical
layout. There is no official code; this follows the paper with K = 2 hops and per-hop weights:

    v_n   image regions (B, N, C);  u_t = forward + backward BiLSTM states (B, T, d), t < length
    v(0)  = tanh(P(0) mean_n v_n);  u(0) = mean_t u_t;  m(0) = v(0) * u(0)
    hop k (visual):  h_n = tanh(W_v v_n) * tanh(W_vm m(k-1));  a = softmax_n(W_vh h_n)
                     v(k) = tanh(P(k) sum_n a_n v_n)
    hop k (textual): h_t = tanh(W_u u_t) * tanh(W_um m(k-1));  b = softmax_t(W_uh h_t), pads masked
                     u(k) = sum_t b_t u_t
    m(k)  = m(k-1) + v(k) * u(k);   logits = W_ans m(K)

State dict: ``cnn.*``, ``embedding.weight``, ``lstm.*`` (bidirectional), ``pool.{0..K}.*`` (P(k)),
``visual.{k}.{features,memory,logit}.*``, ``textual.{k}.{features,memory,logit}.*``, ``classifier.*``
(k = 0..K-1 for the hops).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from glimpse.families.vqa.model import VQAModel, length_mask, run_lstm
from glimpse.nn.dan import DualHop


@dataclass
class RDANConfig:
    backbone: str = "resnet152"
    caffe: bool = False
    image_size: int = 448
    tokens: int = 15193  # question vocabulary + 1 (0: unknown and padding)
    embedding_features: int = 300
    vision_features: int = 2048
    features: int = 512  # d: the memory, v(k) and u(k)
    hops: int = 2
    answers: int = 3000
    max_question_length: int = 23

    def to_dict(self) -> dict:
        return asdict(self)


class RDAN(VQAModel):
    Config = RDANConfig

    QUESTION_OUTPUTS = ("words",)
    HEAD_INPUTS = ("grid", "words", "lengths")
    HEAD_OUTPUTS = ("logits", "glimpses", "word_weights")

    def __init__(self, config: RDANConfig):
        super().__init__(config.backbone, config.caffe)
        self.config = c = config
        self.embedding = nn.Embedding(c.tokens, c.embedding_features, padding_idx=0)
        self.lstm = nn.LSTM(c.embedding_features, c.features, batch_first=True, bidirectional=True)
        self.pool = nn.ModuleList(nn.Linear(c.vision_features, c.features) for _ in range(c.hops + 1))
        self.visual = nn.ModuleList(DualHop(c.vision_features, c.features) for _ in range(c.hops))
        self.textual = nn.ModuleList(DualHop(c.features, c.features) for _ in range(c.hops))
        self.classifier = nn.Linear(c.features, c.answers)

    def question(self, tokens, lengths):
        """-> words (B, T, d): forward + backward states, zeros past each question's length."""
        y, _, _ = run_lstm(self.lstm, self.embedding(tokens), lengths)  # (B, T, 2d)
        d = self.config.features
        return y[..., :d] + y[..., d:]

    def head(self, grid, words, lengths):
        """grid (B, C, h, w), words (B, T, d), lengths (B,) -> logits (B, A), glimpses (B, K, h, w),
        word_weights (B, K, T)."""
        b, _, gh, gw = grid.shape
        v = grid.flatten(2).transpose(1, 2)  # (B, N, C)
        mask = length_mask(lengths, words.shape[1])  # (B, T)
        m_v = torch.tanh(self.pool[0](v.mean(dim=1)))  # (B, d)
        m_u = (words * mask[..., None]).sum(dim=1) / lengths[:, None].to(words.dtype)  # (B, d)
        m = m_v * m_u
        glimpses, word_weights = [], []
        for k in range(self.config.hops):
            a = self.visual[k](v, m)  # (B, N)
            b_ = self.textual[k](words, m, mask)  # (B, T)
            v_k = torch.tanh(self.pool[k + 1](torch.bmm(a[:, None, :], v).squeeze(1)))  # (B, d)
            u_k = torch.bmm(b_[:, None, :], words).squeeze(1)  # (B, d)
            m = m + v_k * u_k
            glimpses.append(a)
            word_weights.append(b_)
        return self.classifier(m), torch.stack(glimpses, 1).view(b, -1, gh, gw), torch.stack(word_weights, 1)
