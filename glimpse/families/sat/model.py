"""Show, Attend and Tell (Xu et al. 2015), as the sgrvinod PyTorch tutorial implements it.

Two halves, sharing one set of parameters:

* ``Encoder``, ``Attention``, ``DecoderWithAttention``: the tutorial's modules attribute for attribute,
  so their state_dict keys are the tutorial's and its checkpoints load strictly. ``reference_step`` is
  the tutorial's decode step, verbatim in arithmetic. These are the numerical truth.
* ``EncoderGraph``, ``InitGraph``, ``StepGraph``: the same arithmetic cut for inference. Per-image
  work (the ``encoder_att`` projection, the mean-feature init) runs once; beams are a dimension, so the
  K beams of an image share its features through a batched matmul instead of K copies.

Shapes: B images, K beams, P = S*S feature cells, E encoder dim, A attention dim, M embedding dim,
D decoder dim, V vocabulary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from glimpse.nn.beam import select_beams
from glimpse.nn.cnn import RESNETS, feature_side, resnet


@dataclass
class SATConfig:
    backbone: str = "resnet101"
    encoded_size: int = 14  # side of the pooled feature grid: P = encoded_size ** 2
    image_size: int = 256  # the tutorial resizes every image to 256x256
    encoder_dim: int = 2048
    attention_dim: int = 512
    embed_dim: int = 512
    decoder_dim: int = 512
    vocab_size: int = 9490

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- the tutorial's modules


class Encoder(nn.Module):
    """ResNet without its pool and classifier, then adaptive average pooling to S x S."""

    def __init__(self, backbone: str = "resnet101", encoded_image_size: int = 14):
        super().__init__()
        self.enc_image_size = encoded_image_size
        self.resnet = nn.Sequential(*list(resnet(backbone).children())[:-2])  # = torchvision's resnetNN()
        self.adaptive_pool = nn.AdaptiveAvgPool2d((encoded_image_size, encoded_image_size))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.adaptive_pool(self.resnet(images))  # (B, E, S, S)
        return out.permute(0, 2, 3, 1)  # (B, S, S, E), channels last as the tutorial returns it


class Attention(nn.Module):
    """Additive attention with a ReLU (the tutorial's choice, not tanh)."""

    def __init__(self, encoder_dim: int, decoder_dim: int, attention_dim: int):
        super().__init__()
        self.encoder_att = nn.Linear(encoder_dim, attention_dim)
        self.decoder_att = nn.Linear(decoder_dim, attention_dim)
        self.full_att = nn.Linear(attention_dim, 1)
        self.relu = nn.ReLU()
        self.softmax = nn.Softmax(dim=1)

    def forward(self, encoder_out: torch.Tensor, decoder_hidden: torch.Tensor):
        att1 = self.encoder_att(encoder_out)  # (k, P, A)
        att2 = self.decoder_att(decoder_hidden)  # (k, A)
        att = self.full_att(self.relu(att1 + att2.unsqueeze(1))).squeeze(2)  # (k, P)
        alpha = self.softmax(att)
        awe = (encoder_out * alpha.unsqueeze(2)).sum(dim=1)  # (k, E)
        return awe, alpha


class DecoderWithAttention(nn.Module):
    def __init__(self, attention_dim, embed_dim, decoder_dim, vocab_size, encoder_dim=2048, dropout=0.5):
        super().__init__()
        self.encoder_dim = encoder_dim
        self.attention_dim = attention_dim
        self.embed_dim = embed_dim
        self.decoder_dim = decoder_dim
        self.vocab_size = vocab_size
        self.attention = Attention(encoder_dim, decoder_dim, attention_dim)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.dropout = nn.Dropout(p=dropout)
        self.decode_step = nn.LSTMCell(embed_dim + encoder_dim, decoder_dim, bias=True)
        self.init_h = nn.Linear(encoder_dim, decoder_dim)
        self.init_c = nn.Linear(encoder_dim, decoder_dim)
        self.f_beta = nn.Linear(decoder_dim, encoder_dim)
        self.sigmoid = nn.Sigmoid()
        self.fc = nn.Linear(decoder_dim, vocab_size)

    def init_hidden_state(self, encoder_out: torch.Tensor):
        mean = encoder_out.mean(dim=1)  # (k, E)
        return self.init_h(mean), self.init_c(mean)


def reference_step(decoder: DecoderWithAttention, encoder_out, prev_words, h, c):
    """One decode step exactly as the tutorial's caption.py runs it, on k copies of the features.

    encoder_out (k, P, E), prev_words (k,) int64, h and c (k, D)
    -> logprobs (k, V), h (k, D), c (k, D), alpha (k, P).
    Attention and gate read the previous h; the logits read the new h.
    """
    emb = decoder.embedding(prev_words)  # (k, M)
    awe, alpha = decoder.attention(encoder_out, h)
    awe = decoder.sigmoid(decoder.f_beta(h)) * awe
    h, c = decoder.decode_step(torch.cat([emb, awe], dim=1), (h, c))
    return F.log_softmax(decoder.fc(h), dim=1), h, c, alpha


# Names of each graph's inputs and outputs, shared by the ONNX export and the torch backend.
GRAPH_IO = {
    "encoder": (["image"], ["features"]),
    "init": (["features"], ["att_proj", "h", "c"]),
    "step": (["features", "att_proj", "tokens", "h", "c"], ["logprobs", "h_next", "c_next", "alpha"]),
    "step_fused": (
        ["features", "att_proj", "tokens", "h", "c", "scores", "width"],
        ["next_tokens", "parents", "next_scores", "next_width", "ended", "h_next", "c_next", "alpha"],
    ),
}


class ShowAttendTell(nn.Module):
    """The tutorial's encoder and decoder under one roof; state_dict keys ``encoder.*`` and ``decoder.*``."""

    def __init__(self, config: SATConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config.backbone, config.encoded_size)
        self.decoder = DecoderWithAttention(
            config.attention_dim, config.embed_dim, config.decoder_dim, config.vocab_size, config.encoder_dim
        )

    def graphs(self, end: int | None = None) -> dict[str, nn.Module]:
        """The inference cut, in the order the runtime calls it; with the ``<end>`` token id, also the
        fused step that selects its own beams."""
        graphs = {
            "encoder": EncoderGraph(self.encoder, self.config.image_size),
            "init": InitGraph(self.decoder),
            "step": StepGraph(self.decoder),
        }
        if end is not None:
            graphs["step_fused"] = FusedStepGraph(self.decoder, end)
        return graphs


def infer_config(encoder_sd: dict, decoder_sd: dict, encoded_size: int = 14, image_size: int = 256) -> SATConfig:
    """Read every dimension of the model from its weights (the tutorial stores no config)."""
    return SATConfig(
        backbone=infer_backbone(encoder_sd),
        encoded_size=encoded_size,
        image_size=image_size,
        encoder_dim=decoder_sd["attention.encoder_att.weight"].shape[1],
        attention_dim=decoder_sd["attention.encoder_att.weight"].shape[0],
        embed_dim=decoder_sd["embedding.weight"].shape[1],
        decoder_dim=decoder_sd["decode_step.weight_hh"].shape[1],
        vocab_size=decoder_sd["embedding.weight"].shape[0],
    )


def infer_backbone(encoder_sd: dict) -> str:
    """The ResNet depth from the keys: blocks in ``resnet.4`` .. ``resnet.7`` (layer1..layer4)."""
    blocks = tuple(
        len({k.split(".")[2] for k in encoder_sd if k.startswith(f"resnet.{stage}.")}) for stage in (4, 5, 6, 7)
    )
    kind = "bottleneck" if "resnet.4.0.conv3.weight" in encoder_sd else "basic"
    for name, spec in RESNETS.items():
        if spec == (blocks, kind):
            return name
    raise ValueError(f"encoder weights are not a torchvision ResNet ({kind} blocks per stage {blocks})")


@torch.no_grad()
def settle_batchnorm(encoder, image_size=256, batches=2, seed=0, residual_gamma=0.2, images=None):
    """Make a random ResNet look trained where numerics care: running statistics from data (a fresh
    one's activations grow to 1e5 over 100 layers), and the small scale trained networks learn for the
    last BatchNorm of each residual branch (with 1, the residual stream grows block after block until
    float32 cancellation costs even PyTorch itself 2e-4 relative error against float64). ``images``
    (N, 3, H, W), preprocessed photographs: the statistics of those, 4 at a time, instead of noise's."""
    g = torch.Generator().manual_seed(seed)
    for m in encoder.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        if isinstance(m, (BasicBlock, Bottleneck)):
            (m.bn3 if isinstance(m, Bottleneck) else m.bn2).weight.fill_(residual_gamma)
    if images is None:
        images = torch.rand(4 * batches, 3, image_size, image_size, generator=g) * 4 - 2
    encoder.train()
    for batch in images.split(4):
        encoder(batch)
    encoder.eval()


# --------------------------------------------------------------------------- the inference cut


def adaptive_pool_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) averaging matrix equal to 1-D adaptive average pooling.

    Cell i averages inputs [floor(i*n_in/n_out), ceil((i+1)*n_in/n_out)), as PyTorch does. For 8 -> 14
    (a 256 input) the windows overlap and ONNX has no operator for it; two matmuls are exact.
    """
    a = torch.zeros(n_out, n_in)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
        a[i, start:end] = 1.0 / (end - start)
    return a


class EncoderGraph(nn.Module):
    """image (B, 3, H, W) -> features (B, P, E), the adaptive pool written as two constant matmuls (none where
    the grid already has S cells a side)."""

    def __init__(self, encoder: Encoder, image_size: int):
        super().__init__()
        self.resnet = encoder.resnet
        side, s = feature_side(image_size), encoder.enc_image_size
        self.pool = side != s  # a grid of S cells a side already is its own pooling: no matmuls in the graph
        self.register_buffer("pool_h", adaptive_pool_matrix(side, s), persistent=False)  # (S, h)
        self.register_buffer("pool_wt", adaptive_pool_matrix(side, s).t().contiguous(), persistent=False)  # (w, S)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.resnet(image)  # (B, E, h, w)
        if self.pool:
            x = self.pool_h @ x @ self.pool_wt  # (B, E, S, S)
        b, e = x.shape[:2]
        return x.permute(0, 2, 3, 1).reshape(b, -1, e)  # (B, P, E)


class InitGraph(nn.Module):
    """features (B, P, E) -> att_proj (B, P, A), h (B, D), c (B, D): the once-per-image work."""

    def __init__(self, decoder: DecoderWithAttention):
        super().__init__()
        self.encoder_att = decoder.attention.encoder_att
        self.init_h, self.init_c = decoder.init_h, decoder.init_c

    def forward(self, features: torch.Tensor):
        mean = features.mean(dim=1)  # (B, E)
        return self.encoder_att(features), self.init_h(mean), self.init_c(mean)


class StepGraph(nn.Module):
    """One decode step for K beams per image.

    features (B, P, E), att_proj (B, P, A), tokens (B, K) int64, h (B, K, D), c (B, K, D)
    -> logprobs (B, K, V), h (B, K, D), c (B, K, D), alpha (B, K, P).
    """

    def __init__(self, decoder: DecoderWithAttention):
        super().__init__()
        self.d = decoder

    def forward(self, features, att_proj, tokens, h, c):
        d = self.d
        b, k = tokens.shape
        emb = d.embedding(tokens)  # (B, K, M)
        att = d.attention.decoder_att(h)  # (B, K, A)
        att = d.attention.relu(att_proj.unsqueeze(1) + att.unsqueeze(2))  # (B, K, P, A)
        alpha = torch.softmax(d.attention.full_att(att).squeeze(-1), dim=-1)  # (B, K, P)
        awe = torch.matmul(alpha, features)  # (B, K, P) @ (B, P, E) -> (B, K, E): beams share features
        awe = d.sigmoid(d.f_beta(h)) * awe
        x = torch.cat([emb, awe], dim=-1).reshape(b * k, -1)  # (B*K, M+E)
        h, c = d.decode_step(x, (h.reshape(b * k, -1), c.reshape(b * k, -1)))  # (B*K, D) each
        logprobs = F.log_softmax(d.fc(h), dim=-1)  # (B*K, V)
        return logprobs.reshape(b, k, -1), h.reshape(b, k, -1), c.reshape(b, k, -1), alpha


class FusedStepGraph(nn.Module):
    """The step and one iteration of the beam search in one graph (``glimpse.nn.beam``), so that a
    GPU runtime keeps the beam state on the device and reads back (B,) live widths per step.

    StepGraph's inputs, scores (B, K) cumulative and width (B,) int64 live beams (in slots 0..width-1)
    -> next_tokens, parents (B, K) int64, next_scores (B, K), next_width (B,), ended (B, K) bool, and
    h_next, c_next (B, K, D), alpha (B, K, P) already reordered by parent: slot j holds the state after
    its parent read the word that made it. K is fixed at export (TensorRT wants a constant TopK K).
    """

    def __init__(self, decoder: DecoderWithAttention, end: int):
        super().__init__()
        self.step, self.end = StepGraph(decoder), end

    def forward(self, features, att_proj, tokens, h, c, scores, width):
        logprobs, h, c, alpha = self.step(features, att_proj, tokens, h, c)
        tokens, parents, scores, width, ended = select_beams(logprobs, scores, width, self.end)
        h, c, alpha = (x.gather(1, parents[:, :, None].expand(-1, -1, x.shape[2])) for x in (h, c, alpha))
        return tokens, parents, scores, width, ended, h, c, alpha
