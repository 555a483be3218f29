"""The ResNet trunks under every family: torchvision's, and the Caffe-ported ResNet-152 that
Cyanogenoid/pytorch-vqa's features (and the VQA checkpoints trained on them) come from.

The Caffe port keeps torchvision's parameter names but differs in arithmetic: a downsampling
bottleneck strides in its first 1x1 convolution instead of the 3x3 one, and the stem's max-pool has no
padding and rounds up. Torchvision weights load into either without complaint and give different
features, so which one a checkpoint belongs to is a choice the user states, never a guess.
"""

from __future__ import annotations

import math
from pathlib import Path

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from glimpse.errors import CheckpointError, GlimpseError
from glimpse.preprocess import Preprocess

# Blocks per stage and block kind of each ResNet; used to read the depth from weights.
# resnet10 is ResNet(BasicBlock, [1, 1, 1, 1]), the small backbone of glimpse's demo models.
RESNETS = {
    "resnet10": ((1, 1, 1, 1), "basic"),
    "resnet18": ((2, 2, 2, 2), "basic"),
    "resnet34": ((3, 4, 6, 3), "basic"),
    "resnet50": ((3, 4, 6, 3), "bottleneck"),
    "resnet101": ((3, 4, 23, 3), "bottleneck"),
    "resnet152": ((3, 8, 36, 3), "bottleneck"),
}


def resnet(backbone: str, caffe: bool = False) -> ResNet:
    """A ResNet of ``backbone``'s depth, torchvision's or (``caffe``) with the Caffe port's strides."""
    layers, kind = RESNETS[backbone]
    net = ResNet(BasicBlock if kind == "basic" else Bottleneck, list(layers))
    if caffe:
        if kind != "bottleneck":
            raise ValueError("the Caffe ResNets are bottleneck networks (resnet50/101/152)")
        net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
        for stage in (net.layer2, net.layer3, net.layer4):
            first = stage[0]
            first.conv1.stride, first.conv2.stride = first.conv2.stride, (1, 1)
    return net


def infer_backbone(state_dict: dict, prefix: str = "") -> str:
    """The ResNet depth from torchvision-named keys under ``prefix`` (``layer1`` .. ``layer4``)."""
    blocks = tuple(
        len({k[len(prefix) :].split(".")[1] for k in state_dict if k.startswith(f"{prefix}layer{s}.")})
        for s in (1, 2, 3, 4)
    )
    kind = "bottleneck" if f"{prefix}layer1.0.conv3.weight" in state_dict else "basic"
    for name, spec in RESNETS.items():
        if spec == (blocks, kind):
            return name
    raise ValueError(f"not the weights of a ResNet ({kind} blocks per stage {blocks})")


def feature_side(n: int, caffe: bool = False) -> int:
    """Side of the last feature map for an n x n input (448 -> 14): the stem's 7x7/2 convolution and
    3x3/2 max-pool, then three stride-2 stages."""
    n = (n + 2 * 3 - 7) // 2 + 1
    n = math.ceil((n - 3) / 2) + 1 if caffe else (n + 2 * 1 - 3) // 2 + 1
    for _ in range(3):
        n = (n - 1) // 2 + 1
    return n


class Trunk(nn.Module):
    """image (B, 3, H, W) -> grid (B, C, h, w): a ResNet up to the output of layer4 (after its last
    ReLU, where pytorch-vqa's forward hook reads it), torchvision's names, so a state dict of the
    whole classifier loads once its ``fc`` is dropped."""

    def __init__(self, backbone: str, caffe: bool = False):
        super().__init__()
        net = resnet(backbone, caffe)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, image):
        x = self.maxpool(self.relu(self.bn1(self.conv1(image))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def load_cnn(path: str | Path) -> dict:
    """A ResNet's state dict (``fc`` and ``module.`` dropped), plain or under 'state_dict'/'model'."""
    from glimpse.export.unpickler import safe_load

    path = Path(path)
    sd = safe_load(path)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or "conv1.weight" not in {str(k).removeprefix("module.") for k in sd}:
        raise CheckpointError(f"{path}: not the state dict of a ResNet (no conv1.weight)")
    return {k.removeprefix("module."): v for k, v in sd.items() if not k.removeprefix("module.").startswith("fc.")}


def image_preprocess(image_size: int | None, central_fraction: float | None, trained: dict) -> tuple[Preprocess, int]:
    """pytorch-vqa's get_transform: shorter side to image_size / central_fraction, then a center crop
    of image_size; both default to the checkpoint's training config, else 448 and 0.875."""
    image_size = int(image_size or trained.get("image_size", 448))
    central_fraction = float(central_fraction or trained.get("central_fraction", 0.875))
    if image_size < 32:
        raise GlimpseError(f"image size {image_size} is too small: a ResNet needs at least 32x32 pixels")
    if not 0 < central_fraction <= 1:
        raise GlimpseError(f"central fraction {central_fraction} must be in (0, 1]")
    side = round(image_size / central_fraction)
    return Preprocess(size=(side, side), resize="shorter", crop=(image_size, image_size)), image_size
