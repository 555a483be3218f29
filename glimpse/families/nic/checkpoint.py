"""Import Show and Tell checkpoints of yunjey/pytorch-tutorial's image_captioning: the encoder and decoder
state dicts train.py saves apart (``encoder-5-3000.pkl`` / ``.ckpt``, ``decoder-5-3000.pkl``) and the pickled
``Vocabulary`` of build_vocab.py, all read without running code from them."""

from __future__ import annotations

import json
from pathlib import Path

from glimpse.errors import CheckpointError
from glimpse.export.unpickler import Inert, load_weights, safe_load, safe_unpickle, state_dict_of
from glimpse.preprocess import Preprocess
from glimpse.vocab import Vocab

SPECIALS = {"pad": "<pad>", "start": "<start>", "end": "<end>", "unk": "<unk>"}  # ids 0..3 in build_vocab.py


def load_vocab(path: str | Path) -> Vocab:
    """vocab.pkl (a pickled ``Vocabulary``: ``word2idx``, ``idx2word``, ``idx``), or a JSON list of words in id
    order, or a JSON ``{"word2idx": {...}}``."""
    path = Path(path)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: not a JSON vocabulary ({e})") from None
        word2idx = data.get("word2idx") if isinstance(data, dict) else {w: i for i, w in enumerate(data)}
    else:
        vocab = safe_unpickle(path, "vocabulary")
        word2idx = vocab.__dict__.get("word2idx") if isinstance(vocab, Inert) else None
    if not isinstance(word2idx, dict) or not all(isinstance(i, int) for i in word2idx.values()):
        raise CheckpointError(f"{path}: not build_vocab.py's Vocabulary (no word2idx of word -> id)")
    if sorted(word2idx.values()) != list(range(len(word2idx))):
        raise CheckpointError(f"{path}: word ids must be 0..{len(word2idx) - 1}, each used once")
    itos = [""] * len(word2idx)
    for word, i in word2idx.items():
        itos[i] = str(word)
    missing = [t for t in ("<start>", "<end>") if t not in word2idx]
    if missing:
        raise CheckpointError(f"{path}: the vocabulary has no {missing[0]} token")
    return Vocab(itos, {role: word2idx[t] for role, t in SPECIALS.items() if t in word2idx})


def load_state_dict(path: str | Path, what: str) -> dict:
    """A state dict as train.py saves it (``module.`` prefixes of DataParallel dropped)."""
    try:
        sd = state_dict_of(safe_load(path))
    except CheckpointError as e:
        raise CheckpointError(f"{path}: not the {what}'s state dict ({e})") from None
    return {k.removeprefix("module."): v for k, v in sd.items()}


def import_nic(encoder: str | Path, decoder: str | Path, vocab: str | Path):
    """-> (ShowAndTell in eval mode, Vocab, Preprocess): sample.py's 224x224 LANCZOS resize, ImageNet
    normalisation, and an RGB conversion sample.py lacks (its grey or RGBA files fail)."""
    from glimpse.families.nic.model import ShowAndTell, infer_config

    words = load_vocab(vocab)
    encoder_sd, decoder_sd = load_state_dict(encoder, "encoder"), load_state_dict(decoder, "decoder")
    try:
        config = infer_config(encoder_sd, decoder_sd)
    except KeyError as e:
        raise CheckpointError(f"{decoder}: not a Show and Tell decoder (no {e} weight)") from None
    except ValueError as e:
        raise CheckpointError(f"{encoder}: not a Show and Tell encoder ({e})") from None
    if config.vocab_size != len(words):
        raise CheckpointError(
            f"{vocab}: the vocabulary has {len(words)} words but the decoder predicts {config.vocab_size}"
            " (a vocab.pkl of another training run?)"
        )
    model = ShowAndTell(config)
    for name, path, sd in (("encoder", encoder, encoder_sd), ("decoder", decoder, decoder_sd)):
        load_weights(getattr(model, name), sd, f"{path}: {name} weights", "tutorial's")
    preprocess = Preprocess(size=(config.image_size, config.image_size), interpolation="lanczos")
    return model.eval(), words, preprocess
