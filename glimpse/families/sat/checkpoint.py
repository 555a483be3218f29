"""Import Show-Attend-Tell checkpoints of the sgrvinod tutorial (and plain state dicts) and its word map."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

from glimpse.errors import CheckpointError, GlimpseError
from glimpse.export.unpickler import Inert, load_weights, safe_load, state_dict_of
from glimpse.preprocess import Preprocess
from glimpse.vocab import Vocab

SPECIALS = {"start": "<start>", "end": "<end>", "pad": "<pad>", "unk": "<unk>"}


def load_word_map(path: str | Path) -> Vocab:
    """The tutorial's WORDMAP json, a flat {word: id} with <pad>=0 and <unk>, <start>, <end> last."""
    path = Path(path)
    try:
        word_map = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a JSON word map ({e})") from None
    if not isinstance(word_map, dict) or not all(isinstance(v, int) for v in word_map.values()):
        raise CheckpointError(f"{path}: a word map must be a JSON object of word -> integer id")
    for role in ("start", "end"):
        if SPECIALS[role] not in word_map:
            raise CheckpointError(f"{path}: the word map has no {SPECIALS[role]} token")
    if sorted(word_map.values()) != list(range(len(word_map))):
        raise CheckpointError(f"{path}: word ids must be 0..{len(word_map) - 1}, each used once")
    itos = [""] * len(word_map)
    for word, i in word_map.items():
        itos[i] = word
    return Vocab(itos, {role: word_map[tok] for role, tok in SPECIALS.items() if tok in word_map})


def load_sat_weights(path: str | Path) -> tuple[dict, dict, int]:
    """(encoder state dict, decoder state dict, encoded size) from any supported checkpoint form:
    the tutorial's dict of whole pickled modules, ``{'encoder': sd, 'decoder': sd}``, or one flat
    state dict with ``encoder.`` / ``decoder.`` prefixes (``module.`` prefixes of DataParallel dropped)."""
    path = Path(path)
    ckpt = safe_load(path)
    if isinstance(ckpt, dict) and "state_dict" in ckpt and "encoder" not in ckpt:
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(ckpt).__name__}")
    if "encoder" in ckpt and "decoder" in ckpt:
        parts = {k: ckpt[k] for k in ("encoder", "decoder")}
    else:  # one flat state dict
        flat = {k.removeprefix("module."): v for k, v in ckpt.items() if isinstance(k, str)}
        parts = {
            p: {k[len(p) + 1 :]: v for k, v in flat.items() if k.startswith(p + ".")} for p in ("encoder", "decoder")
        }
        if not parts["encoder"] or not parts["decoder"]:
            raise CheckpointError(f"{path}: no 'encoder'/'decoder' entries and no encoder.*/decoder.* weights")
    encoded_size = getattr(parts["encoder"], "enc_image_size", 14) if isinstance(parts["encoder"], Inert) else 14
    try:
        sds = [
            {k.removeprefix("module."): v for k, v in state_dict_of(parts[p]).items()} for p in ("encoder", "decoder")
        ]
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return sds[0], sds[1], int(encoded_size)


def import_sat(checkpoint: str | Path, word_map: str | Path, image_size: int = 256):
    """-> (ShowAttendTell in eval mode, Vocab, Preprocess), checked against each other. ``image_size``:
    the side images were resized to in training (the tutorial's 256; checkpoints do not record it)."""
    from glimpse.families.sat.model import ShowAttendTell, infer_config

    if image_size < 32:
        raise GlimpseError(f"image size {image_size} is too small: a ResNet needs at least 32x32 pixels")
    vocab = load_word_map(word_map)
    encoder_sd, decoder_sd, encoded_size = load_sat_weights(checkpoint)
    try:
        config = infer_config(encoder_sd, decoder_sd, encoded_size=encoded_size, image_size=image_size)
    except KeyError as e:
        raise CheckpointError(f"{checkpoint}: not a Show-Attend-Tell checkpoint (no {e} weight)") from None
    except ValueError as e:
        raise CheckpointError(f"{checkpoint}: not a Show-Attend-Tell checkpoint ({e})") from None
    n_fc = decoder_sd["fc.weight"].shape[0] if "fc.weight" in decoder_sd else None
    if n_fc != len(vocab) or config.vocab_size != len(vocab):
        raise CheckpointError(
            f"{word_map}: the word map has {len(vocab)} words but the checkpoint's fc predicts {n_fc}"
            " (a word map from another training run?)"
        )
    model = ShowAttendTell(config)
    for name, sd in (("encoder", encoder_sd), ("decoder", decoder_sd)):
        load_weights(getattr(model, name), sd, f"{checkpoint}: {name} weights", "tutorial")
    return model.eval(), vocab, Preprocess(size=(config.image_size, config.image_size))


def save_tutorial_checkpoint(path: str | Path, model, **entries) -> None:
    """Save as the tutorial's train.py does: one dict holding the whole pickled encoder and decoder,
    whose classes the pickle names ``models.Encoder``, ``models.DecoderWithAttention`` and
    ``models.Attention`` (the tutorial's models.py), beside ``entries`` (epoch, bleu-4, ...)."""
    import torch

    from glimpse.families.sat import model as sat

    classes = (sat.Encoder, sat.Attention, sat.DecoderWithAttention)
    alias = types.ModuleType("models")
    for c in classes:
        setattr(alias, c.__name__, c)
    shadowed = sys.modules.get("models")
    sys.modules["models"] = alias
    try:  # pickle writes a class as (its __module__, its name); lend ours the tutorial's module name
        for c in classes:
            c.__module__ = "models"
        torch.save({**entries, "encoder": model.encoder, "decoder": model.decoder}, path)
    finally:
        for c in classes:
            c.__module__ = sat.__name__
        if shadowed is None:
            del sys.modules["models"]
        else:
            sys.modules["models"] = shadowed
