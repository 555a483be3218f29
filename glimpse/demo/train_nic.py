"""Train the demo's Show and Tell captioner on the generated scenes as yunjey/pytorch-tutorial's train.py
trains: the ResNet frozen (here the demo captioner's, ``glimpse demo train --models sat`` first), the
encoder's linear + BatchNorm1d and the decoder learned by teacher-forced cross-entropy over the packed
captions, the image the LSTM's first input. Saved as train.py and build_vocab.py save: two state dicts and
a pickled Vocabulary, so ``glimpse export nic`` imports them like any released checkpoint.

The packaged files hold what was trained: the decoder, the encoder's linear and BatchNorm (``nic_head``)
and the vocabulary; ``encoder_file`` joins the head to the captioner's ResNet into the full encoder state
dict train.py writes.
"""

from __future__ import annotations

import pickle
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from glimpse.demo import scenes
from glimpse.demo.train_sat import warmup_cosine
from glimpse.preprocess import Preprocess

DECODER, HEAD, VOCAB = "nic_decoder_shapes.ckpt", "nic_head_shapes.ckpt", "nic_vocab_shapes.pkl"
SPECIALS = ("<pad>", "<start>", "<end>", "<unk>")  # build_vocab.py's first four ids


@dataclass
class TrainConfig:
    steps: int = 5000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 100
    train_scenes: int = 6000
    val_scenes: int = 500
    val_every: int = 500
    seed: int = 0


class Vocabulary:
    """build_vocab.py's class, attribute for attribute; pickled under its module name ``build_vocab``."""

    def __init__(self, words: list[str]):
        self.word2idx = {w: i for i, w in enumerate(words)}
        self.idx2word = dict(enumerate(words))
        self.idx = len(words)


def vocabulary() -> Vocabulary:
    return Vocabulary([*SPECIALS, *scenes.caption_words()])


def save_vocab(vocab: Vocabulary, path: Path) -> None:
    """pickle.dump as a script that imported build_vocab does: the pickle names build_vocab.Vocabulary."""
    module = types.ModuleType("build_vocab")
    module.Vocabulary, own = Vocabulary, Vocabulary.__module__
    shadowed = sys.modules.get("build_vocab")
    sys.modules["build_vocab"], Vocabulary.__module__ = module, "build_vocab"
    try:
        with open(path, "wb") as f:
            pickle.dump(vocab, f)
    finally:
        Vocabulary.__module__ = own
        if shadowed is None:
            del sys.modules["build_vocab"]
        else:
            sys.modules["build_vocab"] = shadowed


def model_config(backbone: str, vocab_size: int):
    from glimpse.families.nic.model import NICConfig

    return NICConfig(backbone=backbone, embed_size=128, hidden_size=256, vocab_size=vocab_size, num_layers=1)


@torch.no_grad()
def pooled(resnet, split: str, count: int) -> tuple[torch.Tensor, list]:
    """The frozen ResNet's pooled vectors (S, C) of ``count`` scenes rendered at 224 and preprocessed as
    sample.py does, and the scenes."""
    from tqdm import tqdm

    prep, chosen, out = Preprocess(size=(224, 224), interpolation="lanczos"), scenes.scenes(split, count), []
    for start in tqdm(range(0, count, 100), desc=f"{split} vectors", unit="x100 scenes", dynamic_ncols=True):
        batch = chosen[start : start + 100]
        pixels = torch.from_numpy(np.stack([prep(s.image(224)) for s in batch]))
        out.append(resnet(pixels).flatten(1))  # (100, C)
    return torch.cat(out), chosen


def encode(captions: list[str], vocab: Vocabulary) -> tuple[torch.Tensor, torch.Tensor]:
    """-> tokens (B, T) as <start> words <end> <pad>..., lengths (B,), as data_loader.py's collate_fn."""
    ids = [[1, *(vocab.word2idx.get(w, 3) for w in c.split()), 2] for c in captions]
    lengths = torch.tensor([len(i) for i in ids])
    tokens = torch.zeros(len(ids), int(lengths.max()), dtype=torch.int64)
    for row, i in zip(tokens, ids):
        row[: len(i)] = torch.tensor(i)
    return tokens, lengths


def loss(model, vectors: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """train.py's: DecoderRNN.forward over cat(image, embed(captions)), packed; cross-entropy on the packed
    targets (the step after the image predicts <start>)."""
    features = model.encoder.bn(model.encoder.linear(vectors))  # (B, E)
    dec = model.decoder
    inputs = torch.cat([features.unsqueeze(1), dec.embed(tokens)], 1)  # (B, 1 + T, E)
    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    hiddens, _ = dec.lstm(packed)
    targets = pack_padded_sequence(tokens, lengths, batch_first=True, enforce_sorted=False).data
    return F.cross_entropy(dec.linear(hiddens.data), targets)


@torch.no_grad()
def validate(model, vectors: torch.Tensor, chosen: list) -> float:
    """BLEU-4 of sample()'s greedy captions of the validation scenes."""
    from glimpse.demo.metrics import caption_scores

    model.eval()
    ids = model.decoder.sample(model.encoder.bn(model.encoder.linear(vectors))).tolist()
    words = vocabulary().idx2word
    captions = [" ".join(words[i] for i in (row[: row.index(2)] if 2 in row else row) if i > 3) for row in ids]
    model.train()
    return caption_scores(captions, [s.captions for s in chosen])["BLEU-4"]


def captioner_resnet(checkpoints: Path) -> dict:
    """The demo captioner's ResNet as EncoderCNN's ``resnet.*`` keys (the same Sequential indices), float32."""
    from glimpse.demo.train_sat import CHECKPOINT
    from glimpse.families.sat.checkpoint import load_sat_weights

    resnet, _, _ = load_sat_weights(checkpoints / CHECKPOINT)
    return {k: v.float() if v.is_floating_point() else v for k, v in resnet.items()}


def encoder_file(checkpoints: Path, out: Path) -> Path:
    """The full EncoderCNN state dict train.py writes (the captioner's ResNet as ``resnet.*``, the trained
    ``linear`` and ``bn``), written once into ``out``."""
    path = out / "nic_encoder_shapes.ckpt"
    if not path.is_file():
        state = captioner_resnet(checkpoints) | torch.load(checkpoints / HEAD, weights_only=True)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
    return path


def train(out: Path, checkpoints: Path, config: TrainConfig | None = None, log: Callable[[str], None] = print):
    """Train over ``checkpoints``' captioner's frozen ResNet; keep the best (val BLEU-4) in ``out``."""
    from tqdm import tqdm

    from glimpse.demo.train_vqa import cnn_state_dict
    from glimpse.families.nic.model import ShowAndTell
    from glimpse.nn.cnn import infer_backbone

    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    out.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary()
    model = ShowAndTell(model_config(infer_backbone(cnn_state_dict(checkpoints)), len(vocab.word2idx)))
    model.encoder.resnet.load_state_dict(
        {k.removeprefix("resnet."): v for k, v in captioner_resnet(checkpoints).items()}
    )
    resnet = model.encoder.resnet.eval()
    train_vectors, train_scenes = pooled(resnet, "train", config.train_scenes)
    val_vectors, val_scenes = pooled(resnet, "val", config.val_scenes)
    learned = [*model.decoder.parameters(), *model.encoder.linear.parameters(), *model.encoder.bn.parameters()]
    optimizer = torch.optim.Adam(learned, lr=config.lr)  # train.py's: the ResNet stays frozen
    schedule = warmup_cosine(optimizer, config.warmup, config.steps)
    rng = np.random.default_rng(config.seed)
    best, started = -1.0, time.perf_counter()
    model.train()
    bar = tqdm(range(config.steps), desc="train nic", unit="step", dynamic_ncols=True)
    for step in bar:
        rows = rng.integers(0, len(train_scenes), config.batch_size)
        captions = [train_scenes[r].captions[rng.integers(5)] for r in rows]
        value = loss(model, train_vectors[rows], *encode(captions, vocab))
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{value.item():.3f}")
        if (step + 1) % config.val_every == 0 or step + 1 == config.steps:
            bleu = validate(model, val_vectors, val_scenes)
            minutes = (time.perf_counter() - started) / 60
            bar.write(f"step {step + 1}: loss {value.item():.3f}, val BLEU-4 {bleu:.3f} (greedy), {minutes:.1f} min")
            if bleu > best:
                best = bleu
                torch.save(model.decoder.state_dict(), out / DECODER)
                head = {k: v for k, v in model.encoder.state_dict().items() if not k.startswith("resnet.")}
                torch.save(head, out / HEAD)
    save_vocab(vocab, out / VOCAB)
    log(f"best val BLEU-4 {best:.3f}; wrote {out / DECODER}, {out / HEAD} and {out / VOCAB}")
