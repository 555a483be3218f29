"""VQA checkpoints written the way pytorch-vqa's train.py writes them (random weights, settled
BatchNorm), with the separate CNN state dict their features came from."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from glimpse.families.sat.model import settle_batchnorm
from glimpse.families.vqa.model import VQAModel


def vocab(n_words: int, n_answers: int) -> dict:
    """pytorch-vqa's vocab.json: question ids from 1 (0 is unknown), answer ids from 0."""
    words = ["what", "colour", "is", "the", "bus", "how", "many"] + [f"word{i}" for i in range(n_words - 7)]
    return {"question": {w: i + 1 for i, w in enumerate(words)}, "answer": {f"ans{i}": i for i in range(n_answers)}}


def photo_crops(photo: Path, size: int, n: int = 16, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size): random crops of a photograph (half to all of each side, every other one
    mirrored), resized and normalised as ImageNet's: images to take real BatchNorm statistics from."""
    rng = np.random.default_rng(seed)
    image = Image.open(photo).convert("RGB")
    w, h = image.size
    crops = []
    for i in range(n):
        cw, ch = (int(side * rng.uniform(0.5, 1.0)) for side in (w, h))
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        crop = image.crop((x, y, x + cw, y + ch)).resize((size, size), Image.BILINEAR)
        if i % 2:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        crops.append((np.asarray(crop, np.float32) / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225])
    return torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32))


def write(
    out: Path, model: VQAModel, family: str, n_words: int, seed: int = 0, photo: Path | None = None
) -> tuple[Path, Path]:
    """-> (checkpoint, cnn weights). ``model``'s config must have tokens = n_words + 1. ``photo``: the
    CNN's BatchNorm statistics from crops of it (real statistics), and torchvision's initial scale (1)
    on every residual branch, which lets float32 noise grow more than a trained network's small one."""
    torch.manual_seed(seed)
    size = model.config.image_size
    if photo is None:
        settle_batchnorm(model.cnn, image_size=size)
    else:
        settle_batchnorm(model.cnn, residual_gamma=1.0, images=photo_crops(photo, size))
    out.mkdir(parents=True, exist_ok=True)
    head = model.net if family == "saaa" else model
    weights = nn.DataParallel(head).state_dict()  # 'module.' prefixed, as train.py saves it
    if family != "saaa":
        weights = type(weights)((k, v) for k, v in weights.items() if not k.startswith("module.cnn."))
    results = {
        "name": "2017-08-04_00.55.19",
        "tracker": {"train_loss": [[torch.tensor(1.5), torch.tensor(1.2)]], "val_acc": [[0.41, 0.43]]},
        "config": {"image_size": model.config.image_size, "batch_size": 128, "initial_lr": 1e-3},
        "weights": weights,
        "eval": {
            "answers": [torch.tensor([1, 2])],
            "accuracies": [torch.tensor([0.3, 1.0])],
            "idx": [torch.tensor([0, 1])],
        },
        "vocab": vocab(n_words, model.config.answers),
    }
    checkpoint, cnn = out / f"{family}.pth", out / "resnet.pth"
    torch.save(results, checkpoint)
    torch.save({**model.cnn.state_dict(), "fc.weight": torch.zeros(10, 2), "fc.bias": torch.zeros(10)}, cnn)
    return checkpoint, cnn


def write_mdan(out: Path, model, n_words: int, seed: int = 0) -> tuple[Path, Path]:
    """An m-DAN checkpoint in glimpse's layout ({'weights' less cnn.*, 'vocab', 'config'}) and its CNN's
    state dict. ``model``'s config must have tokens = n_words + 1."""
    torch.manual_seed(seed)
    settle_batchnorm(model.cnn, image_size=model.config.image_size)
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v for k, v in model.state_dict().items() if not k.startswith("cnn.")}
    words = ["a", "red", "circle", "dog", "on", "the", "beach", "two", "."] + [f"word{i}" for i in range(n_words - 9)]
    config = {"image_size": model.config.image_size, "central_fraction": 0.875}
    checkpoint, cnn = out / "mdan.pth", out / "resnet.pth"
    torch.save({"weights": weights, "vocab": {w: i + 1 for i, w in enumerate(words)}, "config": config}, checkpoint)
    torch.save(model.cnn.state_dict(), cnn)
    return checkpoint, cnn
