"""Meshed-Memory Transformer (Cornia et al. 2020), as aimagelab/meshed-memory-transformer implements it.

Two halves, sharing one set of parameters:

* ``MemoryAugmentedEncoder``, ``MeshedDecoder`` and their parts: the public modules attribute for attribute
  (state-dict keys, the ``running_*`` buffers included), so a public checkpoint loads strictly.
  ``M2.reference_step`` is the public stateful decoding step: each self-attention layer caches its
  *inputs* and projects keys and values over the whole prefix again at every step. These are the truth.
* ``EncoderGraph``, ``InitGraph``, ``StepGraph``: the same arithmetic cut for inference. The decoder's
  cross-attention keys and values are projected once per image (``init``); self-attention keys and
  values are projected once per position and written into fixed-size caches at a position input, so
  every shape stays static for a whole decode.

Shapes: B images, K beams, R regions (50), L encoder levels (= layers, 3), D model width (512),
H heads, d = D / H, T cache positions (the decode length), V vocabulary, M memory slots (40).
Masks are bool, True where a key is masked, as the public code has them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class M2Config:
    vocab_size: int = 10201
    max_len: int = 54  # the decoder's position table has max_len + 1 rows (row 0: padding)
    layers: int = 3  # encoder and decoder layers alike (the meshing gates read one level per encoder layer)
    d_model: int = 512
    heads: int = 8
    d_ff: int = 2048
    memory: int = 40  # memory slots per encoder layer
    d_in: int = 2048  # region feature width
    regions: int = 50  # detections per image, zero-padded or truncated (max_detections)
    padding_idx: int = 1  # the decoder's <pad>

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- the public modules


class ScaledDotProductAttention(nn.Module):
    """Multi-head scaled dot-product attention; with ``memory`` slots, the encoder's memory-augmented kind:
    learned keys and values (scaled by sqrt(d) and sqrt(M), not projected) appended to the projected ones."""

    def __init__(self, d_model: int, heads: int, memory: int = 0):
        super().__init__()
        d = d_model // heads
        self.fc_q, self.fc_k = nn.Linear(d_model, heads * d), nn.Linear(d_model, heads * d)
        self.fc_v, self.fc_o = nn.Linear(d_model, heads * d), nn.Linear(heads * d, d_model)
        self.d_model, self.heads, self.d, self.memory = d_model, heads, d, memory
        if memory:
            self.m_k = nn.Parameter(torch.empty(1, memory, heads * d))
            self.m_v = nn.Parameter(torch.empty(1, memory, heads * d))
        self.reset_parameters()

    def reset_parameters(self):  # the public init
        for fc in (self.fc_q, self.fc_k, self.fc_v, self.fc_o):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.constant_(fc.bias, 0)
        if self.memory:
            nn.init.normal_(self.m_k, 0, 1 / self.d)
            nn.init.normal_(self.m_v, 0, 1 / self.memory)

    def forward(self, queries, keys, values, mask):
        """queries (b, nq, D), keys and values (b, nk, D), mask (b, 1, 1 or nq, nk) -> (b, nq, D)."""
        b, nq, nk, h, d = (
            queries.shape[0],
            queries.shape[1],
            keys.shape[1],
            self.heads,
            self.d,
        )  # not len(): it fixes the axis in export
        q = self.fc_q(queries).view(b, nq, h, d).permute(0, 2, 1, 3)  # (b, H, nq, d)
        k, v = self.fc_k(keys), self.fc_v(values)  # (b, nk, D)
        if self.memory:
            k = torch.cat([k, math.sqrt(d) * self.m_k.expand(b, self.memory, h * d)], 1)  # (b, nk+M, D)
            v = torch.cat([v, math.sqrt(self.memory) * self.m_v.expand(b, self.memory, h * d)], 1)
        k = k.view(b, -1, h, d).permute(0, 2, 3, 1)  # (b, H, d, nk[+M])
        v = v.view(b, -1, h, d).permute(0, 2, 1, 3)  # (b, H, nk[+M], d)
        att = torch.matmul(q, k) / math.sqrt(d)  # (b, H, nq, nk[+M])
        if mask is not None:  # masks the regions only, never the memory slots
            pad = torch.zeros(mask.shape[:-1] + (att.shape[-1] - nk,), dtype=torch.bool)
            att = att.masked_fill(torch.cat([mask, pad], -1) if self.memory else mask, -math.inf)
        out = torch.matmul(torch.softmax(att, -1), v)  # (b, H, nq, d)
        return self.fc_o(out.permute(0, 2, 1, 3).reshape(b, nq, h * d))


class MultiHeadAttention(nn.Module):
    """Attention, dropout, residual, post-LayerNorm. ``running_keys``/``running_values`` are the public
    stateful cache's buffers, kept so that state dicts load strictly; decoding here passes the prefix in."""

    def __init__(self, d_model: int, heads: int, dropout: float = 0.1, memory: int = 0, stateful: bool = False):
        super().__init__()
        self.attention = ScaledDotProductAttention(d_model, heads, memory)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(d_model)
        if stateful:
            self.register_buffer("running_keys", torch.zeros(0, d_model))
            self.register_buffer("running_values", torch.zeros(0, d_model))

    def forward(self, queries, keys, values, mask):
        return self.layer_norm(queries + self.dropout(self.attention(queries, keys, values, mask)))


class PositionWiseFeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.dropout, self.dropout_2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(d_model)

    def forward(self, x):
        return self.layer_norm(x + self.dropout(self.fc2(self.dropout_2(F.relu(self.fc1(x))))))


class EncoderLayer(nn.Module):
    def __init__(self, c: M2Config, dropout: float):
        super().__init__()
        self.mhatt = MultiHeadAttention(c.d_model, c.heads, dropout, memory=c.memory)
        self.pwff = PositionWiseFeedForward(c.d_model, c.d_ff, dropout)

    def forward(self, x, mask):
        return self.pwff(self.mhatt(x, x, x, mask))


class MemoryAugmentedEncoder(nn.Module):
    def __init__(self, c: M2Config, dropout: float = 0.1):
        super().__init__()
        self.padding_idx = 0
        self.fc = nn.Linear(c.d_in, c.d_model)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(c.d_model)
        self.layers = nn.ModuleList(EncoderLayer(c, dropout) for _ in range(c.layers))

    def forward(self, regions):
        """regions (B, R, d_in) -> levels (B, L, R, D), mask (B, 1, 1, R)."""
        x = self.layer_norm(self.dropout(F.relu(self.fc(regions))))  # (B, R, D)
        # The public code computes the padding mask here, after fc and LayerNorm, where a zero region
        # rarely sums to exactly 0: in practice padded regions are attended to. Kept as it is.
        mask = (x.sum(-1) == self.padding_idx)[:, None, None]  # (B, 1, 1, R)
        levels = []
        for layer in self.layers:
            x = layer(x, mask)
            levels.append(x)
        return torch.stack(levels, 1), mask


class MeshedDecoderLayer(nn.Module):
    def __init__(self, c: M2Config, dropout: float = 0.1):
        super().__init__()
        self.self_att = MultiHeadAttention(c.d_model, c.heads, dropout, stateful=True)
        self.enc_att = MultiHeadAttention(c.d_model, c.heads, dropout)  # one module for every level
        self.pwff = PositionWiseFeedForward(c.d_model, c.d_ff, dropout)
        self.fc_alpha1, self.fc_alpha2, self.fc_alpha3 = (nn.Linear(2 * c.d_model, c.d_model) for _ in range(3))
        for fc in (self.fc_alpha1, self.fc_alpha2, self.fc_alpha3):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.constant_(fc.bias, 0)

    def forward(self, x, keys, levels, mask_pad, mask_self, mask_enc):
        """x (b, n, D) queries, keys (b, t, D) the self-attention's keys and values (x itself, or in
        stateful decoding the prefix's inputs), levels (b, L, R, D) -> (b, n, D)."""
        self_att = self.self_att(x, keys, keys, mask_self) * mask_pad
        gates = (self.fc_alpha1, self.fc_alpha2, self.fc_alpha3)
        meshed = 0
        for level, gate in enumerate(gates):
            enc_att = self.enc_att(self_att, levels[:, level], levels[:, level], mask_enc) * mask_pad
            meshed = meshed + enc_att * torch.sigmoid(gate(torch.cat([self_att, enc_att], -1)))
        return self.pwff(meshed / math.sqrt(3) * mask_pad) * mask_pad


def sinusoid_table(rows: int, d_model: int) -> torch.Tensor:
    """The public sinusoid position table: sin on even, cos on odd dimensions, row 0 zeros (padding)."""
    pos = torch.arange(rows, dtype=torch.float32).view(-1, 1)
    dim = torch.arange(d_model // 2, dtype=torch.float32).view(1, -1)
    angle = pos / 10000 ** (2 * dim / d_model)
    out = torch.zeros(rows, d_model)
    out[:, ::2], out[:, 1::2] = torch.sin(angle), torch.cos(angle)
    out[0] = 0
    return out


class MeshedDecoder(nn.Module):
    def __init__(self, c: M2Config, dropout: float = 0.1):
        super().__init__()
        self.padding_idx = c.padding_idx
        self.word_emb = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.padding_idx)
        self.pos_emb = nn.Embedding.from_pretrained(sinusoid_table(c.max_len + 1, c.d_model), freeze=True)
        self.layers = nn.ModuleList(MeshedDecoderLayer(c, dropout) for _ in range(c.layers))
        self.fc = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.register_buffer("running_mask_self_attention", torch.zeros(1, 1, 0, dtype=torch.uint8))
        self.register_buffer("running_seq", torch.zeros(1, dtype=torch.long))

    def forward(self, words, levels, mask_enc):
        """Teacher forcing: words (B, n) -> log-probs (B, n, V)."""
        n = words.shape[1]
        mask_pad = (words != self.padding_idx).unsqueeze(-1).float()  # (B, n, 1)
        causal = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)[None, None]  # (1, 1, n, n)
        mask_self = causal | (words == self.padding_idx)[:, None, None]  # (B, 1, n, n)
        seq = torch.arange(1, n + 1).expand_as(words).masked_fill(mask_pad[..., 0] == 0, 0)
        x = self.word_emb(words) + self.pos_emb(seq)
        for layer in self.layers:
            x = layer(x, x, levels, mask_pad, mask_self, mask_enc)
        return F.log_softmax(self.fc(x), -1)


class M2(nn.Module):
    """The public ``Transformer``: state-dict keys ``encoder.*`` and ``decoder.*``."""

    def __init__(self, config: M2Config):
        super().__init__()
        self.config = config
        self.encoder = MemoryAugmentedEncoder(config)
        self.decoder = MeshedDecoder(config)

    def reference_step(self, word, t, levels, mask_enc, past: list, past_mask):
        """One step of the public stateful decoding. word (b,) int64 at step t (0-based), past: per layer
        the inputs of the earlier steps (b, t, D), past_mask (b, 1, 1, t) -> log-probs (b, V), past and
        past_mask with this step appended. As the public code: the position is t + 1 whatever the word, a
        <pad> word masks its own key and zeroes its outputs."""
        dec, words = self.decoder, word[:, None]  # (b, 1)
        mask_pad = (words != dec.padding_idx).unsqueeze(-1).float()  # (b, 1, 1)
        mask_self = torch.cat([past_mask, (words == dec.padding_idx)[:, None, None]], -1)  # (b, 1, 1, t+1)
        x = dec.word_emb(words) + dec.pos_emb(torch.full_like(words, t + 1))  # (b, 1, D)
        inputs = []
        for layer, prefix in zip(dec.layers, past):
            keys = torch.cat([prefix, x], 1)  # (b, t+1, D): re-projected by fc_k, fc_v below
            inputs.append(keys)
            x = layer(x, keys, levels, mask_pad, mask_self, mask_enc)
        return F.log_softmax(dec.fc(x[:, 0]), -1), inputs, mask_self

    def graphs(self) -> dict[str, nn.Module]:
        """The inference cut, in the order the runtime calls it."""
        return {"encoder": EncoderGraph(self.encoder), "init": InitGraph(self.decoder), "step": StepGraph(self.decoder)}


@torch.no_grad()
def trained_layer_norms(model: nn.Module, seed: int = 0) -> None:
    """Give a random model's LayerNorms gains and biases as training leaves them. At gain 1 and bias 0 a
    zero-padded region's normalised vector sums to 0 up to rounding, and the encoder's padding mask
    (sum == 0, computed after its LayerNorm) would depend on each backend's rounding; trained ones sum far
    from 0, as the public model's do."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


def infer_config(state: dict, heads: int = 8, max_len: int | None = None) -> M2Config:
    """Every dimension from the weights but the head count, which no weight shape records."""
    layers = len({k.split(".")[2] for k in state if k.startswith("decoder.layers.")})
    return M2Config(
        vocab_size=state["decoder.word_emb.weight"].shape[0],
        max_len=max_len or state["decoder.pos_emb.weight"].shape[0] - 1,
        layers=layers,
        d_model=state["encoder.fc.weight"].shape[0],
        heads=heads,
        d_ff=state["encoder.layers.0.pwff.fc1.weight"].shape[0],
        memory=state["encoder.layers.0.mhatt.attention.m_k"].shape[1],
        d_in=state["encoder.fc.weight"].shape[1],
    )


# --------------------------------------------------------------------------- the inference cut

GRAPH_IO = {
    "encoder": (["regions"], ["levels", "mask"]),
    "init": (["levels"], ["cross_keys", "cross_values"]),
    "step": (
        ["tokens", "position", "cross_keys", "cross_values", "mask", "self_keys", "self_values", "self_mask"],
        ["logprobs", "self_keys_next", "self_values_next", "self_mask_next"],
    ),
}


class EncoderGraph(nn.Module):
    """regions (B, R, d_in) -> levels (B, L, R, D), mask (B, 1, 1, R)."""

    def __init__(self, encoder: MemoryAugmentedEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, regions):
        return self.encoder(regions)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(..., n, D) -> (..., H, n, d)."""
    return x.unflatten(-1, (heads, -1)).transpose(-3, -2)


class InitGraph(nn.Module):
    """levels (B, L, R, D) -> cross_keys, cross_values (B, layers, L, H, R, d): each decoder layer's
    cross-attention projections of every level, computed once per image."""

    def __init__(self, decoder: MeshedDecoder):
        super().__init__()
        self.attentions = [layer.enc_att.attention for layer in decoder.layers]
        self.heads = self.attentions[0].heads
        self.decoder = decoder  # registers the parameters

    def forward(self, levels):
        keys = torch.stack([split_heads(a.fc_k(levels), self.heads) for a in self.attentions], 1)
        values = torch.stack([split_heads(a.fc_v(levels), self.heads) for a in self.attentions], 1)
        return keys, values


class StepGraph(nn.Module):
    """One decode step for K beams of B images over fixed-size caches.

    tokens (B, K) int64, position (1,) int64: the step t (0-based), cross_keys/values (B, layers, L, H, R, d),
    mask (B, 1, 1, R), self_keys/values (B, K, layers, H, T, d), self_mask (B, K, T) (True: no key there)
    -> logprobs (B, K, V), self_keys_next, self_values_next, self_mask_next: this step's keys, values and
    mask written at slot t. Positions after t are masked, so T is any length above the last step.
    """

    def __init__(self, decoder: MeshedDecoder):
        super().__init__()
        self.decoder = decoder
        self.heads = decoder.layers[0].self_att.attention.heads

    def attend(self, mha: MultiHeadAttention, x, keys, values, mask):
        """Attention over keys and values already projected, broadcast over beams or images.
        x (B, K, 1, D), keys and values (B, K or 1, H, n, d), mask (B, K or 1, 1, 1, n) -> (B, K, 1, D)."""
        a = mha.attention
        q = split_heads(a.fc_q(x), self.heads)  # (B, K, H, 1, d)
        att = torch.matmul(q, keys.transpose(-1, -2)) / math.sqrt(a.d)  # (B, K, H, 1, n)
        out = torch.matmul(torch.softmax(att.masked_fill(mask, -math.inf), -1), values)  # (B, K, H, 1, d)
        return mha.layer_norm(x + a.fc_o(out.transpose(-3, -2).flatten(-2)))

    def forward(self, tokens, position, cross_keys, cross_values, mask, self_keys, self_values, self_mask):
        dec, h = self.decoder, self.heads
        words = tokens[..., None]  # (B, K, 1)
        mask_pad = (words != dec.padding_idx).unsqueeze(-1).float()  # (B, K, 1, 1)
        here = torch.arange(self_mask.shape[-1]) == position  # (T,): the slot this step writes
        self_mask = here & (words == dec.padding_idx) | ~here & self_mask  # (B, K, T); no Where on bools in ORT
        x = dec.word_emb(words) + dec.pos_emb(position + 1)  # (B, K, 1, D)
        keys_out, values_out = [], []
        for i, layer in enumerate(dec.layers):
            a = layer.self_att.attention
            keys = torch.where(here[:, None], split_heads(a.fc_k(x), h), self_keys[:, :, i])  # (B, K, H, T, d)
            values = torch.where(here[:, None], split_heads(a.fc_v(x), h), self_values[:, :, i])
            keys_out.append(keys)
            values_out.append(values)
            self_att = self.attend(layer.self_att, x, keys, values, self_mask[:, :, None, None]) * mask_pad
            meshed = 0
            for level, gate in enumerate((layer.fc_alpha1, layer.fc_alpha2, layer.fc_alpha3)):
                ck, cv = cross_keys[:, None, i, level], cross_values[:, None, i, level]  # (B, 1, H, R, d)
                enc_att = self.attend(layer.enc_att, self_att, ck, cv, mask[:, None]) * mask_pad
                meshed = meshed + enc_att * torch.sigmoid(gate(torch.cat([self_att, enc_att], -1)))
            x = layer.pwff(meshed / math.sqrt(3) * mask_pad) * mask_pad
        logprobs = F.log_softmax(dec.fc(x[:, :, 0]), -1)  # (B, K, V)
        return logprobs, torch.stack(keys_out, 2), torch.stack(values_out, 2), self_mask
