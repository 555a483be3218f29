"""Import Meshed-Memory Transformer checkpoints in the public layout (aimagelab/meshed-memory-transformer).

    checkpoint  ``meshed_memory_transformer.pth`` or a train.py save: ``{'state_dict': ..., ...}`` beside
                numpy/random RNG states and optimizer state (read through the allow-list unpickler,
                nothing in the file runs); the bare state dict is taken too.
    vocab       ``vocab.pkl``: a pickled ``data.vocab.Vocab`` (its ``stoi`` a defaultdict whose factory is
                a function of the public repository); the allow-list records it inertly and only
                ``itos`` is read. Or a JSON list of the words by id.

Every dimension but the head count (8, which no weight shape records) is read from the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from glimpse.errors import CheckpointError
from glimpse.export.unpickler import Inert, safe_load, safe_unpickle
from glimpse.vocab import Vocab

SPECIALS = {"unk": "<unk>", "pad": "<pad>", "start": "<bos>", "end": "<eos>"}


def load_vocab(path: str | Path) -> Vocab:
    """vocab.pkl -> Vocab with M2's special tokens (<unk> 0, <pad> 1, <bos> 2, <eos> 3 in the public file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".json":  # the words by id, as glimpse's demo saves them
        try:
            itos = json.loads(path.read_text())
        except ValueError as e:
            raise CheckpointError(f"{path}: not JSON ({e})") from None
    else:
        itos = _pickled_itos(path)
    if not isinstance(itos, list) or not all(isinstance(w, str) for w in itos):
        raise CheckpointError(f"{path}: not a torchtext-style Vocab (no list of strings 'itos')")
    missing = [t for t in SPECIALS.values() if t not in itos]
    if missing:
        raise CheckpointError(f"{path}: the vocabulary lacks {', '.join(missing)}")
    return Vocab(itos, {role: itos.index(token) for role, token in SPECIALS.items()})


def _pickled_itos(path: Path):
    obj = safe_unpickle(path, "vocabulary")
    return obj.__dict__.get("itos") if isinstance(obj, Inert) else None


def import_m2(checkpoint: str | Path, vocab: str | Path, heads: int = 8, regions: int = 50):
    """-> (M2 in eval mode, Vocab). ``regions``: detections per image the model reads (the public
    loader's max_detections, 50); fewer are zero-padded, more cut."""
    from glimpse.families.m2.model import M2, infer_config

    ckpt = safe_load(Path(checkpoint))
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if (
        not isinstance(state, dict)
        or "decoder.word_emb.weight" not in state
        and "module.decoder.word_emb.weight" not in state
    ):
        raise CheckpointError(f"{checkpoint}: not an M2 checkpoint (no state_dict with decoder.word_emb.weight)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    words = load_vocab(vocab)
    try:
        config = infer_config(state, heads)
    except (KeyError, IndexError) as e:
        raise CheckpointError(f"{checkpoint}: not an M2 checkpoint (missing {e})") from None
    if config.d_model % heads:
        raise CheckpointError(f"{checkpoint}: width {config.d_model} does not split into {heads} heads")
    if len(words) != config.vocab_size:
        raise CheckpointError(f"{vocab}: {len(words)} words, but the checkpoint's embedding has {config.vocab_size}")
    config.padding_idx, config.regions = words.special["pad"], regions
    model = M2(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{checkpoint}: weights do not fit the M2 modules ({str(e).splitlines()[0]})") from None
    return model.eval(), words
