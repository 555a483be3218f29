"""Train the demo Show-Attend-Tell captioner on generated scenes and save it in the tutorial's layout.

As the tutorial's train.py trains: teacher forcing, cross-entropy plus the doubly stochastic attention
penalty (alpha_c = 1), Adam, gradients clipped at 5, and the checkpoint with the best validation
BLEU-4 kept as ``BEST_checkpoint_*.pth.tar`` beside a ``WORDMAP_*.json``, so that ``glimpse export sat``
imports it like any tutorial checkpoint. Where it differs, and why:

* the ResNet learns from scratch (no ImageNet weights can be downloaded), so all of it trains;
* every step draws fresh training scenes and one of each scene's five captions: there are no epochs
  to overfit, so no dropout;
* the decoder is unrolled with the inference cut's StepGraph at one beam: the same arithmetic as the
  tutorial's sorted-batch loop, with padded steps masked out of the loss;
* weights are saved in float16 (half the size in the repository; the export checks the graphs against
  the imported model, rounded weights included).
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
from glimpse.families.sat.model import SATConfig, ShowAttendTell, StepGraph
from glimpse.preprocess import Preprocess

CHECKPOINT = "BEST_checkpoint_shapes.pth.tar"
WORD_MAP = "WORDMAP_shapes.json"
IMAGE_SIZE = 128  # 4x4 ResNet features; pass --image-size 128 to glimpse export sat


@dataclass
class TrainConfig:
    steps: int = 1500
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100  # steps of linear warm-up, then cosine decay to zero
    alpha_c: float = 1.0  # weight of the doubly stochastic attention penalty, the tutorial's
    grad_clip: float = 5.0
    val_every: int = 250
    val_scenes: int = 200
    seed: int = 0


def model_config(vocab_size: int) -> SATConfig:
    """A small captioner: ResNet(BasicBlock, [1, 1, 1, 1]) on 128x128 images, a 4x4 attention grid."""
    return SATConfig(
        "resnet10", 4, IMAGE_SIZE, 512, attention_dim=128, embed_dim=64, decoder_dim=256, vocab_size=vocab_size
    )


def word_map() -> dict[str, int]:
    """As the tutorial's create_input_files lays it out: words 1..N, then <unk>, <start>, <end>; <pad> 0."""
    wm = {w: i + 1 for i, w in enumerate(scenes.caption_words())}
    for token in ("<unk>", "<start>", "<end>"):
        wm[token] = len(wm) + 1
    wm["<pad>"] = 0
    return wm


def encode_captions(captions: list[str], wm: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """-> tokens (B, T) int64 as <start> words <end> <pad>..., lengths (B,) counting <start> and <end>."""
    ids = [[wm["<start>"], *(wm[w] for w in c.split()), wm["<end>"]] for c in captions]
    lengths = torch.tensor([len(i) for i in ids])
    tokens = torch.zeros(len(ids), int(lengths.max()), dtype=torch.int64)
    for row, i in zip(tokens, ids):
        row[: len(i)] = torch.tensor(i)
    return tokens, lengths


def loss(model: ShowAttendTell, images: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor, alpha_c: float):
    """Teacher-forced cross-entropy per predicted word + alpha_c * mean((1 - sum_t alpha_t)^2)."""
    dec = model.decoder
    features = model.encoder(images).flatten(1, 2)  # (B, S, S, E) -> (B, P, E)
    att_proj = dec.attention.encoder_att(features)  # (B, P, A)
    h, c = (x.unsqueeze(1) for x in dec.init_hidden_state(features))  # (B, 1, D)
    step = StepGraph(dec)
    nll, attention = 0.0, torch.zeros(features.shape[:2])  # (B, P): attention summed over the steps
    for t in range(tokens.shape[1] - 1):
        logprobs, h, c, alpha = step(features, att_proj, tokens[:, t : t + 1], h, c)  # (B, 1, V), (B, 1, P)
        live = (t + 1 < lengths).float()  # (B,): this step predicts a word or <end>
        nll = nll + (F.nll_loss(logprobs[:, 0], tokens[:, t + 1], reduction="none") * live).sum()
        attention = attention + alpha[:, 0] * live[:, None]
    words = (lengths - 1).sum()
    return nll / words + alpha_c * ((1 - attention) ** 2).mean()


def warmup_cosine(optimizer, warmup: int, steps: int):
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``steps``."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / steps)))
    )


def training_batch(step: int, size: int, wm: dict, preprocess: Preprocess, rng: np.random.Generator):
    batch = scenes.scenes("train", size, start=step * size)
    images = torch.from_numpy(np.stack([preprocess(s.image(IMAGE_SIZE)) for s in batch]))
    captions = [s.captions[rng.integers(len(s.captions))] for s in batch]
    return (images, *encode_captions(captions, wm))


@torch.no_grad()
def validate(model: ShowAttendTell, wm: dict, preprocess: Preprocess, count: int) -> float:
    """BLEU-4 of greedy captions of ``count`` validation scenes."""
    from glimpse.demo.metrics import caption_scores
    from glimpse.families.sat.pipeline import CaptionPipeline
    from glimpse.vocab import Vocab

    itos = sorted(wm, key=wm.get)
    vocab = Vocab(itos, {r: wm[f"<{r}>"] for r in ("start", "end", "pad", "unk")})
    val = scenes.scenes("val", count)
    pipe = CaptionPipeline.from_model(model.eval(), vocab, preprocess)
    captions = pipe([s.image(IMAGE_SIZE) for s in val], beam_size=1, batch_size=50)
    model.train()
    return caption_scores([c.caption for c in captions], [s.captions for s in val])["BLEU-4"]


def train(out: str | Path, config: TrainConfig | None = None, log: Callable[[str], None] = print) -> Path:
    """Train, validate every ``val_every`` steps, and keep the best as ``out/BEST_checkpoint_shapes.pth.tar``."""
    config = config or TrainConfig()
    from tqdm import tqdm

    from glimpse.families.sat.checkpoint import save_tutorial_checkpoint

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    wm = word_map()
    (out / WORD_MAP).write_text(json.dumps(wm))
    model = ShowAttendTell(model_config(len(wm))).train()
    preprocess = Preprocess(size=(IMAGE_SIZE, IMAGE_SIZE))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = warmup_cosine(optimizer, config.warmup, config.steps)
    best, started = -1.0, time.perf_counter()
    bar = tqdm(range(config.steps), desc="train sat", unit="step", dynamic_ncols=True)
    for step in bar:
        value = loss(model, *training_batch(step, config.batch_size, wm, preprocess, rng), config.alpha_c)
        optimizer.zero_grad()
        value.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), config.grad_clip)  # the tutorial clips values
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{value.item():.3f}")
        if (step + 1) % config.val_every == 0 or step + 1 == config.steps:
            bleu = validate(model, wm, preprocess, config.val_scenes)
            minutes = (time.perf_counter() - started) / 60
            bar.write(f"step {step + 1}: loss {value.item():.3f}, val BLEU-4 {bleu:.3f} (greedy), {minutes:.1f} min")
            if bleu > best:
                best = bleu
                half = copy.deepcopy(model).eval().half()
                entries = {"epoch": step + 1, "epochs_since_improvement": 0, "bleu-4": bleu}
                # the tutorial also stores both optimizers' states: None here, to keep the file small
                optimizers = {"encoder_optimizer": None, "decoder_optimizer": None}
                save_tutorial_checkpoint(out / CHECKPOINT, half, **entries, **optimizers, train_config=asdict(config))
    log(f"best val BLEU-4 {best:.3f}; wrote {out / CHECKPOINT} and {out / WORD_MAP}")
    return out / CHECKPOINT
