"""Train the demo m-DAN matching model on the scenes' captions and save it in glimpse's m-DAN checkpoint
layout (``{'weights', 'vocab', 'config', 'tracker'}``), so ``glimpse export mdan`` imports it like any other.

As the paper trains: the CNN frozen (here the demo captioner's ResNet-10, as for the VQA models), K = 2,
and the bidirectional max-margin ranking loss. Where it differs, and why: the negatives are the other
pairs of the batch (the paper samples quadruplets), Adam instead of SGD, and d = 256; each step draws
one of a scene's five captions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from glimpse.demo import scenes
from glimpse.demo.matching import CHECKPOINT, recall, test_pairs
from glimpse.demo.train_sat import IMAGE_SIZE, warmup_cosine
from glimpse.demo.train_vqa import encode, frozen_cnn, scene_grids


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 64  # scenes, each with one of its captions; the rest of the batch are negatives
    lr: float = 1e-3
    warmup: int = 100
    margin: float = 100.0  # the paper's
    train_scenes: int = 6000
    val_scenes: int = 500
    val_every: int = 500
    seed: int = 0


def model_config(backbone: str, vision_features: int):
    from glimpse.families.mdan.model import MDANConfig

    return MDANConfig(
        backbone=backbone,
        image_size=IMAGE_SIZE,
        tokens=len(scenes.caption_words()) + 1,
        embedding_features=64,
        vision_features=vision_features,
        features=256,
    )


def vocab() -> dict[str, int]:
    """Caption words from 1; 0 is unknown and padding."""
    return {w: i + 1 for i, w in enumerate(scenes.caption_words())}


def train(
    out: str | Path, checkpoints: Path, config: TrainConfig | None = None, log: Callable[[str], None] = print
) -> Path:
    """Train on the grids of ``checkpoints``' captioner; keep the best validation mean R@1 as
    ``out/mdan_shapes.pth``."""
    from tqdm import tqdm

    from glimpse.families.mdan.checkpoint import tokenize
    from glimpse.families.mdan.model import MDAN, ranking_loss

    config = config or TrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    cnn, backbone = frozen_cnn(checkpoints)
    table = vocab()
    grids, train_scenes = scene_grids(cnn, "train", config.train_scenes)
    val_grids, _ = scene_grids(cnn, "val", config.val_scenes)
    _, sentences, relevant = test_pairs(config.val_scenes, split="val", images=False)
    val_tokens = encode(sentences, table, tokenize)

    model = MDAN(model_config(backbone, grids.shape[1]))
    del model.cnn  # the grids are precomputed; the checkpoint holds the rest
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = warmup_cosine(optimizer, config.warmup, config.steps)
    tracker = {"train_loss": [], "val_recall": []}
    best, best_state, started = -1.0, None, time.perf_counter()
    bar = tqdm(range(config.steps), desc="train mdan", unit="step", dynamic_ncols=True)
    for step in bar:
        rows = torch.randperm(len(train_scenes), generator=generator)[: config.batch_size]
        pick = torch.randint(5, (len(rows),), generator=generator)
        captions = [train_scenes[r].captions[p] for r, p in zip(rows.tolist(), pick.tolist())]
        zv = model.image_embed(grids[rows])[0]
        zu = model.text_embed(*encode(captions, table, tokenize))[0]
        value = ranking_loss(zv, zu, config.margin)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        schedule.step()
        tracker["train_loss"].append(value.item())
        bar.set_postfix(loss=f"{value.item():.2f}")
        if (step + 1) % config.val_every == 0 or step + 1 == config.steps:
            with torch.no_grad():
                scores = (model.image_embed(val_grids)[0] @ model.text_embed(*val_tokens)[0].T).numpy()
            r = recall(scores, relevant)
            tracker["val_recall"].append(r)
            mean_r1 = (r["image-to-text R@1"] + r["text-to-image R@1"]) / 2
            minutes = (time.perf_counter() - started) / 60
            bar.write(f"mdan step {step + 1}: loss {value.item():.2f}, val mean R@1 {mean_r1:.3f}, {minutes:.1f} min")
            if mean_r1 > best:
                best, best_state = mean_r1, {k: v.clone() for k, v in model.state_dict().items()}
    path = out / CHECKPOINT
    saved = {"image_size": IMAGE_SIZE, "central_fraction": 1.0, "backbone": backbone, **asdict(config)}
    torch.save({"weights": best_state, "vocab": table, "config": saved, "tracker": tracker}, path)
    log(f"mdan: best val mean R@1 {best:.3f}; wrote {path}")
    return path
