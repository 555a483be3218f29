"""Train the demo Meshed-Memory Transformer on generated scenes and save it in the public layout, so that
``glimpse export m2`` imports it like the released model.

The scenes have no detector, so an image's "regions" are the 4x4 cells of the demo captioner's frozen
ResNet-10 grid (16 regions of 512 features), read once per scene. As the public train.py's
cross-entropy stage trains: teacher forcing over ``<bos> words <eos>``, padded positions out of the loss,
Adam with warm-up. Where it differs, and why: a smaller model (width 128, 16 memory slots) for a
30-word language; no SCST stage (its CIDEr reward would need the scenes' references at every step, and
cross-entropy already reaches the captions); the vocabulary is saved as JSON (``itos``), which
``glimpse export m2 --vocab`` reads besides vocab.pkl; weights in float16, half the size in the repository.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from glimpse.demo import scenes
from glimpse.demo.train_sat import warmup_cosine

CHECKPOINT = "m2_shapes.pth"
VOCAB = "m2_vocab.json"
SPECIALS = ["<unk>", "<pad>", "<bos>", "<eos>"]  # the public vocab.pkl's first four


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 200
    train_scenes: int = 6000
    val_scenes: int = 200
    val_every: int = 500
    seed: int = 0


def itos() -> list[str]:
    return SPECIALS + scenes.caption_words()


def model_config():
    from glimpse.families.m2.model import M2Config

    return M2Config(vocab_size=len(itos()), d_model=128, heads=8, d_ff=512, memory=16, d_in=512, regions=16)


def scene_regions(cnn, split: str, count: int) -> tuple[torch.Tensor, list]:
    """(count, 16, 512) regions: the cells of each scene's 4x4 grid, and the scenes."""
    from glimpse.demo.train_vqa import scene_grids

    grids, batch = scene_grids(cnn, split, count)  # (S, C, 4, 4)
    return grids.flatten(2).transpose(1, 2).contiguous(), batch


def encode(captions: list[str], words: list[str]) -> torch.Tensor:
    """-> (B, T) int64: <bos> words <eos>, then <pad>."""
    stoi = {w: i for i, w in enumerate(words)}
    ids = [[stoi["<bos>"], *(stoi[w] for w in c.split()), stoi["<eos>"]] for c in captions]
    tokens = torch.full((len(ids), max(map(len, ids))), stoi["<pad>"])
    for row, i in zip(tokens, ids):
        row[: len(i)] = torch.tensor(i)
    return tokens


@torch.no_grad()
def validate(model, regions: torch.Tensor, references: list[list[str]], words: list[str]) -> float:
    """BLEU-4 of greedy captions (M2's search at beam 1, 20 steps)."""
    from glimpse.demo.metrics import caption_scores
    from glimpse.families.m2.reference import beam_search

    model.eval()
    eos = words.index("<eos>")
    tokens, _, _ = beam_search(model, regions, 20, words.index("<bos>"), eos, 1)
    captions = []
    for row in tokens[:, 0].tolist():
        row = row[: row.index(eos)] if eos in row else row
        captions.append(" ".join(words[i] for i in row))
    model.train()
    return caption_scores(captions, references)["BLEU-4"]


def train(
    out: str | Path, checkpoints: Path, config: TrainConfig | None = None, log: Callable[[str], None] = print
) -> Path:
    """Train on the regions of ``checkpoints``' captioner; keep the best validation BLEU-4 as
    ``out/m2_shapes.pth`` beside ``out/m2_vocab.json``."""
    from tqdm import tqdm

    from glimpse.demo.train_vqa import frozen_cnn
    from glimpse.families.m2.model import M2

    config = config or TrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    words = itos()
    (out / VOCAB).write_text(json.dumps(words))
    cnn, _ = frozen_cnn(checkpoints)
    regions, train_scenes = scene_regions(cnn, "train", config.train_scenes)
    val_regions, val_scenes = scene_regions(cnn, "val", config.val_scenes)
    model = M2(model_config()).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = warmup_cosine(optimizer, config.warmup, config.steps)
    pad = words.index("<pad>")
    best, started = -1.0, time.perf_counter()
    bar = tqdm(range(config.steps), desc="train m2", unit="step", dynamic_ncols=True)
    for step in bar:
        index = rng.integers(0, len(train_scenes), config.batch_size)
        tokens = encode([train_scenes[i].captions[rng.integers(5)] for i in index], words)  # (B, T)
        levels, mask = model.encoder(regions[index])
        logprobs = model.decoder(tokens[:, :-1], levels, mask)  # (B, T-1, V): each position predicts the next
        value = F.nll_loss(logprobs.flatten(0, 1), tokens[:, 1:].flatten(), ignore_index=pad)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{value.item():.3f}")
        if (step + 1) % config.val_every == 0 or step + 1 == config.steps:
            bleu = validate(model, val_regions, [s.captions for s in val_scenes], words)
            minutes = (time.perf_counter() - started) / 60
            bar.write(f"step {step + 1}: loss {value.item():.3f}, val BLEU-4 {bleu:.3f} (greedy), {minutes:.1f} min")
            if bleu > best:
                best = bleu
                half = copy.deepcopy(model).half().state_dict()
                saved = {"epoch": step + 1, "val_bleu4": bleu, "state_dict": half, "train_config": asdict(config)}
                torch.save(saved, out / CHECKPOINT)
    log(f"best val BLEU-4 {best:.3f}; wrote {out / CHECKPOINT} and {out / VOCAB}")
    return out / CHECKPOINT
