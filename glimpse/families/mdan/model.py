"""Dual Attention Networks for image-text matching, m-DAN (Nam et al. CVPR 2017), glimpse's canonical
layout. There is no official PyTorch code; this follows the paper with K = 2 hops, per-hop weights and
a separate memory per modality:

    v_n   image regions (B, N, C);  u_t = forward + backward BiLSTM states (B, T, d), t < length
    v(0)  = tanh(P(0) mean_n v_n);      m_v(0) = v(0)
    u(0)  = mean_t u_t;                 m_u(0) = u(0)
    hop k (visual):  h_n = tanh(W_v v_n) * tanh(W_vm m_v(k-1));  a = softmax_n(W_vh h_n)
                     v(k) = tanh(P(k) sum_n a_n v_n);   m_v(k) = m_v(k-1) + v(k)
    hop k (textual): h_t = tanh(W_u u_t) * tanh(W_um m_u(k-1));  b = softmax_t(W_uh h_t), pads masked
                     u(k) = sum_t b_t u_t;              m_u(k) = m_u(k-1) + u(k)
    S(image, text) = sum_{k=0..K} <v(k), u(k)>  =  <z_v, z_u>,  z_v = [v(0); ...; v(K)], z_u likewise

The two sides never look at each other, so each embeds alone: a gallery is embedded once and searched
with an inner product. The graphs: ``encoder`` (image -> grid, the VQA families' trunk),
``image_embed`` (grid -> z_v, glimpses) and ``text_embed`` (tokens, lengths -> z_u, word weights).

State dict: ``cnn.*`` (torchvision ResNet names), ``embedding.weight``, ``lstm.*`` (bidirectional),
``pool.{0..K}.*`` (P(k)), ``visual.{k}.{features,memory,logit}.*``, ``textual.{k}.{features,memory,logit}.*``
(k = 0..K-1 for the hops): r-DAN's names, without the classifier.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from glimpse.nn.cnn import Trunk
from glimpse.nn.dan import DualHop
from glimpse.nn.text import Call, length_mask, run_lstm


@dataclass
class MDANConfig:
    backbone: str = "resnet152"
    caffe: bool = False
    image_size: int = 448
    tokens: int = 10000  # vocabulary + 1 (0: unknown and padding)
    embedding_features: int = 512
    vision_features: int = 2048
    features: int = 512  # d: v(k), u(k) and the memories
    hops: int = 2
    max_sentence_length: int = 40  # longer sentences are truncated

    @property
    def embedding_size(self) -> int:
        return (self.hops + 1) * self.features

    def to_dict(self) -> dict:
        return asdict(self)


class MDAN(nn.Module):
    def __init__(self, config: MDANConfig):
        super().__init__()
        self.config = c = config
        self.cnn = Trunk(c.backbone, c.caffe)
        self.embedding = nn.Embedding(c.tokens, c.embedding_features, padding_idx=0)
        self.lstm = nn.LSTM(c.embedding_features, c.features, batch_first=True, bidirectional=True)
        self.pool = nn.ModuleList(nn.Linear(c.vision_features, c.features) for _ in range(c.hops + 1))
        self.visual = nn.ModuleList(DualHop(c.vision_features, c.features) for _ in range(c.hops))
        self.textual = nn.ModuleList(DualHop(c.features, c.features) for _ in range(c.hops))

    def image_embed(self, grid):
        """grid (B, C, h, w) -> z_v (B, (K+1)d), glimpses (B, K, h, w)."""
        b, _, gh, gw = grid.shape
        v = grid.flatten(2).transpose(1, 2)  # (B, N, C)
        parts = [torch.tanh(self.pool[0](v.mean(dim=1)))]  # v(0): (B, d)
        memory, glimpses = parts[0], []
        for k in range(self.config.hops):
            a = self.visual[k](v, memory)  # (B, N)
            parts.append(torch.tanh(self.pool[k + 1](torch.bmm(a[:, None, :], v).squeeze(1))))  # v(k): (B, d)
            memory = memory + parts[-1]
            glimpses.append(a)
        return torch.cat(parts, dim=1), torch.stack(glimpses, 1).view(b, -1, gh, gw)

    def text_embed(self, tokens, lengths):
        """tokens (B, T) int64, lengths (B,) -> z_u (B, (K+1)d), word_weights (B, K, T)."""
        d = self.config.features
        y, _, _ = run_lstm(self.lstm, self.embedding(tokens), lengths)  # (B, T, 2d), zeros past each length
        words = y[..., :d] + y[..., d:]  # (B, T, d)
        mask = length_mask(lengths, tokens.shape[1])  # (B, T)
        parts = [words.sum(dim=1) / lengths[:, None].to(words.dtype)]  # u(0): the mean over real words
        memory, weights = parts[0], []
        for k in range(self.config.hops):
            b = self.textual[k](words, memory, mask)  # (B, T)
            parts.append(torch.bmm(b[:, None, :], words).squeeze(1))  # u(k): (B, d)
            memory = memory + parts[-1]
            weights.append(b)
        return torch.cat(parts, dim=1), torch.stack(weights, 1)

    def forward(self, image, tokens, lengths):
        """Similarities (B_images, B_texts) of every image with every text."""
        return self.image_embed(self.cnn(image))[0] @ self.text_embed(tokens, lengths)[0].T

    def reference(self, grid, tokens, lengths):
        """S of each (grid, text) row pair as the paper writes it, sum_k <v(k), u(k)>: (B,)."""
        d = self.config.features
        zv, zu = self.image_embed(grid)[0], self.text_embed(tokens, lengths)[0]
        return sum(
            (zv[:, k * d : (k + 1) * d] * zu[:, k * d : (k + 1) * d]).sum(dim=1) for k in range(self.config.hops + 1)
        )

    def graphs(self) -> dict[str, nn.Module]:
        return {"encoder": self.cnn, "image_embed": Call(self.image_embed), "text_embed": Call(self.text_embed)}


def ranking_loss(zv: torch.Tensor, zu: torch.Tensor, margin: float) -> torch.Tensor:
    """The paper's bidirectional max-margin loss over a batch of matching pairs (row i of zv matches row i
    of zu), every other row a negative: sum over negatives of [m - S(v, u) + S(v, u-)]_+ + [m - S(v, u) + S(v-, u)]_+,
    averaged over the pairs."""
    s = zv @ zu.T  # (B, B)
    positive = s.diagonal()[:, None]  # (B, 1)
    off = ~torch.eye(len(s), dtype=torch.bool, device=s.device)
    to_texts = (margin - positive + s).clamp(min=0)[off]  # image i against text j != i
    to_images = (margin - positive.T + s).clamp(min=0)[off]  # text j against image i != j
    return (to_texts.sum() + to_images.sum()) / len(s)
