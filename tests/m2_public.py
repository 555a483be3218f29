"""Write Meshed-Memory Transformer files the way the public repository does: train.py's checkpoint
(state_dict beside RNG states, optimizer and scheduler state) and vocab.pkl, a pickled ``data.vocab.Vocab``
whose ``stoi`` is a defaultdict with a factory function of that module."""

import collections
import pickle
import random
import sys
import types
from pathlib import Path

import numpy as np
import torch

from glimpse.families.m2.model import M2, M2Config, trained_layer_norms

SPECIALS = ["<unk>", "<pad>", "<bos>", "<eos>"]


def data_vocab_module():
    """Stand-ins for the public ``data.vocab`` module, so that pickles name it as the real file does."""
    if "data.vocab" not in sys.modules:
        module = types.ModuleType("data.vocab")

        def _default_unk_index():
            return 0

        class Vocab:
            pass

        for obj in (_default_unk_index, Vocab):
            obj.__module__, obj.__qualname__ = "data.vocab", obj.__name__
            setattr(module, obj.__name__, obj)
        sys.modules["data"] = types.ModuleType("data")
        sys.modules["data.vocab"] = module
    return sys.modules["data.vocab"]


def write_vocab(path: Path, n_words: int) -> list[str]:
    itos = SPECIALS + [f"w{i}" for i in range(n_words)]
    module = data_vocab_module()
    vocab = module.Vocab()
    vocab.freqs = collections.Counter({w: 5 + i for i, w in enumerate(itos[4:])})
    vocab.itos = itos
    vocab.stoi = collections.defaultdict(module._default_unk_index, {w: i for i, w in enumerate(itos)})
    vocab.vectors = None
    path.write_bytes(pickle.dumps(vocab))
    return itos


def write_checkpoint(out_dir: Path, config: M2Config, seed: int = 0, eos_bias: float = 0.0):
    """-> (checkpoint, vocab.pkl, the model) with random weights; ``eos_bias`` shifts <eos>'s logit
    (positive: captions finish early; very negative: they never do)."""
    torch.manual_seed(seed)
    model = M2(config).eval()
    trained_layer_norms(model, seed)
    with torch.no_grad():
        # feature 0 of the decoder's output held at 1: fc's column 0 is then a logit bias
        norm = model.decoder.layers[-1].pwff.layer_norm
        norm.weight[0], norm.bias[0] = 0.0, 1.0
        model.decoder.fc.weight[SPECIALS.index("<eos>"), 0] = eos_bias
    vocab = out_dir / "vocab.pkl"
    write_vocab(vocab, config.vocab_size - len(SPECIALS))
    checkpoint = out_dir / "m2_best.pth"
    torch.save(
        {
            "torch_rng_state": torch.get_rng_state(),
            "numpy_rng_state": np.random.get_state(),
            "random_rng_state": random.getstate(),
            "epoch": 7,
            "val_loss": 2.5,
            "val_cider": 1.1,
            "state_dict": model.state_dict(),
            "optimizer": torch.optim.Adam(model.parameters()).state_dict(),
            "patience": 0,
            "best_cider": 1.1,
            "use_rl": False,
        },
        checkpoint,
    )
    return checkpoint, vocab, model


def regions(n: int, config: M2Config, seed: int = 0) -> list[np.ndarray]:
    """n images' detections (n_i, d_in), 10 to 60 of them: padded to 50 and truncated alike."""
    rng = np.random.default_rng(seed)
    return [rng.exponential(1.0, (int(rng.integers(10, 61)), config.d_in)).astype(np.float32) for _ in range(n)]
