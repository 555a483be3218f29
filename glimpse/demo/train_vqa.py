"""Train the demo VQA models (saaa, san, rdan, naive) on the scenes' questions and save them as
Cyanogenoid/pytorch-vqa's train.py saves its checkpoints, so ``glimpse export saaa|san|rdan|naive``
imports them like any other.

As pytorch-vqa trains: the CNN is frozen and its grids are computed once (pytorch-vqa's
preprocess-images.py stores them in HDF5), the question model and head learn with Adam, and the
checkpoint is ``{'name', 'tracker', 'config', 'weights', 'eval', 'vocab'}`` with DataParallel's
``module.`` prefix on the weights. Where it differs, and why:

* the CNN is the demo captioner's ResNet-10, trained on the scenes' captions (no ImageNet ResNet can be
  downloaded); ``cnn_state_dict`` gives it torchvision's names, for ``--cnn``;
* images are 128 x 128 uncropped (central fraction 1): the scenes' shapes reach their edges;
* one answer per question (the scenes' answers are certain), so plain cross-entropy instead of
  pytorch-vqa's soft targets over ten annotators' answers; no dropout, as fresh scenes are plentiful.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from glimpse import families
from glimpse.demo import scenes
from glimpse.demo.train_sat import IMAGE_SIZE, warmup_cosine
from glimpse.preprocess import Preprocess

FAMILIES = tuple(families.names("vqa"))
CNN = "cnn_shapes.pth"  # the captioner's ResNet as a torchvision state dict (glimpse demo writes it)


def checkpoint_name(family: str) -> str:
    return f"{family}_shapes.pth"


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 100  # steps of linear warm-up, then cosine decay to zero
    train_scenes: int = 6000  # about 49,000 questions
    val_scenes: int = 500
    val_every: int = 500
    seed: int = 0


def model_config(family: str, backbone: str, vision_features: int):
    """Small heads over the captioner's 512 x 4 x 4 grid."""
    from glimpse.families.vqa.naive import NaiveConfig
    from glimpse.families.vqa.rdan import RDANConfig
    from glimpse.families.vqa.saaa import SAAAConfig
    from glimpse.families.vqa.san import SANConfig

    common = {"backbone": backbone, "caffe": False, "image_size": IMAGE_SIZE, "vision_features": vision_features}
    common |= {"tokens": len(scenes.question_words()) + 1, "answers": len(scenes.ANSWERS), "embedding_features": 64}
    if family == "saaa":
        return SAAAConfig(**common, lstm_features=256, mid_features=128, classifier_features=256)
    if family == "san":
        return SANConfig(**common, features=256, attention_features=128)
    if family == "naive":  # 600k weights, as san: what attention buys is measured at equal size
        return NaiveConfig(**common, lstm_features=256, fused_features=256, classifier_features=256)
    return RDANConfig(**common, features=256)


def vocab() -> dict:
    """pytorch-vqa's vocab.json: question words from 1 (0: unknown and padding), answers from 0."""
    words, answers = scenes.question_words(), scenes.ANSWERS
    return {"question": {w: i + 1 for i, w in enumerate(words)}, "answer": {a: i for i, a in enumerate(answers)}}


def preprocess() -> Preprocess:
    """What ``import_vqa`` makes of image_size 128 and central fraction 1: a no-op resize and crop."""
    return Preprocess(size=(IMAGE_SIZE, IMAGE_SIZE), resize="shorter", crop=(IMAGE_SIZE, IMAGE_SIZE))


def cnn_state_dict(checkpoints: Path) -> dict:
    """The demo captioner's ResNet (the tutorial's ``encoder.resnet`` Sequential) under torchvision's
    names, in float32: what a VQA checkpoint's ``--cnn`` expects."""
    from glimpse.demo.train_sat import CHECKPOINT
    from glimpse.families.sat.checkpoint import load_sat_weights

    encoder, _, _ = load_sat_weights(checkpoints / CHECKPOINT)
    names = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
    out = {}
    for key, value in encoder.items():
        _, index, rest = key.split(".", 2)  # resnet.<index>.<rest>
        out[f"{names[index]}.{rest}"] = value.float() if value.is_floating_point() else value
    return out


def encode(texts: list[str], table: dict[str, int], tokenize=None) -> tuple[torch.Tensor, torch.Tensor]:
    """-> tokens (N, T) int64 zero-padded, lengths (N,), by ``tokenize`` (default: the VQA tokeniser,
    which drops the '?')."""
    from glimpse.families.vqa.checkpoint import tokenize as question_words

    ids = [[table.get(w, 0) for w in (tokenize or question_words)(q)] for q in texts]
    lengths = torch.tensor([len(i) for i in ids])
    tokens = torch.zeros(len(ids), int(lengths.max()), dtype=torch.int64)
    for row, i in zip(tokens, ids):
        row[: len(i)] = torch.tensor(i)
    return tokens, lengths


@torch.no_grad()
def scene_grids(cnn, split: str, count: int) -> tuple[torch.Tensor, list]:
    """The frozen CNN's grids (S, C, h, w) of ``count`` scenes of ``split``, and the scenes."""
    from tqdm import tqdm

    prep, grids, all_scenes = preprocess(), [], scenes.scenes(split, count)
    for start in tqdm(range(0, count, 100), desc=f"{split} grids", unit="x100 scenes", dynamic_ncols=True):
        batch = all_scenes[start : start + 100]
        grids.append(cnn(torch.from_numpy(np.stack([prep(s.image(IMAGE_SIZE)) for s in batch]))))
    return torch.cat(grids), all_scenes


def frozen_cnn(checkpoints: Path) -> tuple[torch.nn.Module, str]:
    """The demo captioner's ResNet as a VQA trunk in eval mode, and its depth."""
    from glimpse.nn.cnn import Trunk, infer_backbone

    cnn_sd = cnn_state_dict(checkpoints)
    backbone = infer_backbone(cnn_sd)
    cnn = Trunk(backbone).eval()
    cnn.load_state_dict(cnn_sd)
    return cnn, backbone


def question_set(cnn, split: str, count: int, table: dict, log: Callable[[str], None]) -> dict:
    """Every question of ``count`` scenes with its scene's grid: grids (S, C, h, w), and per question
    the scene row, tokens, lengths and answer id."""
    grids, asked = scene_grids(cnn, split, count)
    pairs = [(s.index, q, a) for s in asked for q, a in s.questions]  # s.index: the scene's row in grids
    tokens, lengths = encode([q for _, q, _ in pairs], table)
    log(f"{split}: {count} scenes, {len(pairs)} questions")
    return {
        "grids": grids,
        "rows": torch.tensor([row for row, _, _ in pairs]),
        "tokens": tokens,
        "lengths": lengths,
        "answers": torch.tensor([scenes.ANSWERS.index(a) for _, _, a in pairs]),
    }


def question_batch(data: dict, index: torch.Tensor) -> tuple:
    """Questions ``index`` of a question set -> grids (N, C, h, w), tokens (N, T) cut to the longest,
    lengths (N,), answer ids (N,)."""
    lengths = data["lengths"][index]
    tokens = data["tokens"][index, : int(lengths.max())]
    return data["grids"][data["rows"][index]], tokens, lengths, data["answers"][index]


@torch.no_grad()
def predict(model, data: dict, size: int = 512) -> torch.Tensor:
    """Top-1 answer ids of every question of ``data``, by the family's reference arithmetic."""
    out = []
    for i in range(0, len(data["answers"]), size):
        grid, tokens, lengths, _ = question_batch(data, torch.arange(i, min(i + size, len(data["answers"]))))
        out.append(model.reference(grid, tokens, lengths).argmax(dim=1))
    return torch.cat(out)


def train(
    out: str | Path,
    checkpoints: Path,
    families: tuple[str, ...] = FAMILIES,
    config: TrainConfig | None = None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Train each family on the grids of ``checkpoints``' captioner and write ``out/<family>_shapes.pth``."""
    from tqdm import tqdm

    from glimpse.families.vqa.checkpoint import model_class

    config = config or TrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cnn, backbone = frozen_cnn(checkpoints)
    table = vocab()
    train_set = question_set(cnn, "train", config.train_scenes, table["question"], log)
    val_set = question_set(cnn, "val", config.val_scenes, table["question"], log)
    written = []
    for family in families:
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        model = model_class(family)(model_config(family, backbone, train_set["grids"].shape[1]))
        del model.cnn  # the grids are precomputed; the checkpoint holds the head alone
        head = model.net if family == "saaa" else model
        optimizer = torch.optim.Adam(head.parameters(), lr=config.lr)
        schedule = warmup_cosine(optimizer, config.warmup, config.steps)
        tracker = {"train_loss": [], "val_acc": []}
        best, best_state, started = -1.0, None, time.perf_counter()
        bar = tqdm(range(config.steps), desc=f"train {family}", unit="step", dynamic_ncols=True)
        for step in bar:
            index = torch.randint(len(train_set["answers"]), (config.batch_size,), generator=generator)
            grid, tokens, lengths, answers = question_batch(train_set, index)
            value = F.cross_entropy(model.reference(grid, tokens, lengths), answers)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            schedule.step()
            tracker["train_loss"].append(value.item())
            bar.set_postfix(loss=f"{value.item():.3f}")
            if (step + 1) % config.val_every == 0 or step + 1 == config.steps:
                model.eval()
                predicted = predict(model, val_set)
                model.train()
                accuracy = (predicted == val_set["answers"]).float().mean().item()
                tracker["val_acc"].append(accuracy)
                minutes = (time.perf_counter() - started) / 60
                bar.write(
                    f"{family} step {step + 1}: loss {value.item():.3f}, val accuracy {accuracy:.3f}, {minutes:.1f} min"
                )
                if accuracy > best:
                    best, best_state = accuracy, {k: v.clone() for k, v in head.state_dict().items()}
                    best_eval = {"answers": predicted, "accuracies": (predicted == val_set["answers"]).float()}
        path = out / checkpoint_name(family)
        torch.save(
            {
                "name": f"{family}-shapes",
                "tracker": tracker,
                "config": {**asdict(config), "image_size": IMAGE_SIZE, "central_fraction": 1.0, "backbone": backbone},
                "weights": {f"module.{k}": v for k, v in best_state.items()},  # as DataParallel saves them
                "eval": {**best_eval, "idx": torch.arange(len(val_set["answers"]))},
                "vocab": table,
            },
            path,
        )
        log(f"{family}: best val accuracy {best:.3f}; wrote {path}")
        written.append(path)
    return written
