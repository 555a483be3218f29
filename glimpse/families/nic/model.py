"""Show and Tell (Vinyals et al. 2015), as yunjey/pytorch-tutorial's image_captioning implements it.

* ``EncoderCNN``, ``DecoderRNN``: the tutorial's modules attribute for attribute, so their state_dict keys
  are its (``resnet.0.weight`` .., ``linear.*``, ``bn.*``; ``embed.*``, ``lstm.*_l0`` .., ``linear.*``)
  and its checkpoints load strictly. ``DecoderRNN.sample`` is the tutorial's greedy loop (the reference).
* ``EncoderGraph``, ``InitGraph``, ``StepGraph``: the same arithmetic cut for inference. The
  image is the LSTM's first input, not its state: ``init`` runs that first step once per image and returns
  the distribution of the first token with the state after it; beams are a dimension.

Shapes: B images, K beams, E embedding size, L LSTM layers, H hidden size, V vocabulary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from glimpse.nn.cnn import resnet


@dataclass
class NICConfig:
    backbone: str = "resnet152"
    embed_size: int = 256  # the tutorial's defaults: embed 256, hidden 512, one layer
    hidden_size: int = 512
    vocab_size: int = 9956  # read from the weights on import
    num_layers: int = 1
    image_size: int = 224  # sample.py resizes every image to 224x224

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- the tutorial's modules


class EncoderCNN(nn.Module):
    """A ResNet without its classifier (pooled to one vector), then linear and BatchNorm1d."""

    def __init__(self, embed_size: int, backbone: str = "resnet152"):
        super().__init__()
        net = resnet(backbone)
        self.resnet = nn.Sequential(*list(net.children())[:-1])  # conv1 .. layer4, avgpool
        self.linear = nn.Linear(net.fc.in_features, embed_size)
        self.bn = nn.BatchNorm1d(embed_size, momentum=0.01)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.resnet(images)  # (B, C, 1, 1)
        features = features.reshape(features.size(0), -1)  # (B, C)
        return self.bn(self.linear(features))  # (B, E)


class DecoderRNN(nn.Module):
    def __init__(self, embed_size: int, hidden_size: int, vocab_size: int, num_layers: int, max_seq_length: int = 20):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.lstm = nn.LSTM(embed_size, hidden_size, num_layers, batch_first=True)
        self.linear = nn.Linear(hidden_size, vocab_size)
        self.max_seg_length = max_seq_length  # the tutorial's spelling; not in the state dict

    def sample(self, features: torch.Tensor, states=None) -> torch.Tensor:
        """model.py's greedy loop: features (B, E) -> ids (B, 20), no early stop at <end>."""
        sampled_ids = []
        inputs = features.unsqueeze(1)  # (B, 1, E): the image is the first input
        for _ in range(self.max_seg_length):
            hiddens, states = self.lstm(inputs, states)  # (B, 1, H)
            outputs = self.linear(hiddens.squeeze(1))  # (B, V)
            _, predicted = outputs.max(1)
            sampled_ids.append(predicted)
            inputs = self.embed(predicted).unsqueeze(1)  # (B, 1, E)
        return torch.stack(sampled_ids, 1)


class ShowAndTell(nn.Module):
    """The tutorial's encoder and decoder under one roof; state_dict keys ``encoder.*`` and ``decoder.*``."""

    def __init__(self, config: NICConfig):
        super().__init__()
        self.config = config
        self.encoder = EncoderCNN(config.embed_size, config.backbone)
        self.decoder = DecoderRNN(config.embed_size, config.hidden_size, config.vocab_size, config.num_layers)

    def graphs(self) -> dict[str, nn.Module]:
        """The inference cut, in the order the runtime calls it."""
        return {"encoder": EncoderGraph(self.encoder), "init": InitGraph(self.decoder), "step": StepGraph(self.decoder)}


def infer_config(encoder_sd: dict, decoder_sd: dict) -> NICConfig:
    """Every size of the model from its weights (the tutorial stores no config)."""
    from glimpse.nn.cnn import infer_backbone

    stages = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
    named = {
        stages[k.split(".")[1]] + k[len("resnet.") + len(k.split(".")[1]) :]: v
        for k, v in encoder_sd.items()
        if k.startswith("resnet.") and k.split(".")[1] in stages
    }
    vocab_size, embed_size = decoder_sd["embed.weight"].shape
    return NICConfig(
        backbone=infer_backbone(named),
        embed_size=embed_size,
        hidden_size=decoder_sd["lstm.weight_hh_l0"].shape[1],
        vocab_size=vocab_size,
        num_layers=len([k for k in decoder_sd if k.startswith("lstm.weight_ih_l")]),
    )


GRAPH_IO = {  # graph -> (inputs, outputs)
    "encoder": (["image"], ["features"]),
    "init": (["features"], ["logprobs", "h", "c"]),
    "step": (["tokens", "h", "c"], ["logprobs", "h_next", "c_next"]),
}


# --------------------------------------------------------------------------- the inference cut


def _lstm(decoder: DecoderRNN, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    """One LSTM step for N rows: x (N, E), h and c (N, L, H) -> logprobs (N, V), h, c (N, L, H)."""
    state = (h.transpose(0, 1).contiguous(), c.transpose(0, 1).contiguous())  # (L, N, H) each
    y, (h, c) = decoder.lstm(x.unsqueeze(1), state)  # y (N, 1, H)
    logprobs = F.log_softmax(decoder.linear(y.squeeze(1)), dim=-1)  # (N, V)
    return logprobs, h.transpose(0, 1), c.transpose(0, 1)


class EncoderGraph(nn.Module):
    """image (B, 3, 224, 224) -> features (B, E): EncoderCNN, its input named as the bundle's graphs name it."""

    def __init__(self, encoder: EncoderCNN):
        super().__init__()
        self.encoder = encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)


class InitGraph(nn.Module):
    """features (B, E) -> logprobs (B, V) of the first token, h, c (B, L, H): the image's LSTM step."""

    def __init__(self, decoder: DecoderRNN):
        super().__init__()
        self.d = decoder

    def forward(self, features: torch.Tensor):
        b, layers, hidden = features.shape[0], self.d.lstm.num_layers, self.d.lstm.hidden_size
        zeros = features.new_zeros(b, layers, hidden)  # (B, L, H): the tutorial's states=None
        return _lstm(self.d, features, zeros, zeros)


class StepGraph(nn.Module):
    """tokens (B, K) int64, h (B, K, L, H), c (B, K, L, H) -> logprobs (B, K, V), h_next, c_next."""

    def __init__(self, decoder: DecoderRNN):
        super().__init__()
        self.d = decoder

    def forward(self, tokens, h, c):
        b, k = tokens.shape
        x = self.d.embed(tokens).reshape(b * k, -1)  # (B*K, E)
        logprobs, h, c = _lstm(self.d, x, h.flatten(0, 1), c.flatten(0, 1))  # rows: B*K
        return logprobs.reshape(b, k, -1), h.reshape(b, k, *h.shape[1:]), c.reshape(b, k, *c.shape[1:])
