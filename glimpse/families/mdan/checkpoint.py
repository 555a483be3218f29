"""Import m-DAN (image-text matching) checkpoints in glimpse's canonical layout, with the separate CNN
weights the image features came from.

    checkpoint  {'weights', 'vocab'[, 'config', ...]}: ``weights`` the state dict of
                ``glimpse.families.mdan.model.MDAN`` less ``cnn.*`` (``module.`` prefixes dropped); ``vocab``
                {word: id from 1} (0 is unknown and padding); ``config`` may record the training
                ``image_size`` and ``central_fraction``, as pytorch-vqa's config does.
    cnn         a ResNet classifier's state dict (torchvision names; ``fc`` ignored).

Every dimension is read from the weights; the vocabulary is checked against them.
"""

from __future__ import annotations

import re
from pathlib import Path

from glimpse.errors import CheckpointError
from glimpse.export.unpickler import load_weights, safe_load
from glimpse.nn.cnn import image_preprocess, load_cnn
from glimpse.nn.text import UNKNOWN
from glimpse.vocab import Vocab


def tokenize(sentence: str) -> list[str]:
    """Lower-case words, and punctuation marks as words of their own ("three shapes: a ..." ->
    three, shapes, :, a, ...); a final full stop is dropped."""
    tokens = re.findall(r"[a-z0-9']+|[^\sa-z0-9']", sentence.lower())
    return tokens[:-1] if tokens[-1:] == ["."] else tokens


def import_mdan(
    checkpoint: str | Path,
    cnn: str | Path,
    caffe: bool = False,
    image_size: int | None = None,
    max_sentence_length: int = 40,
    central_fraction: float | None = None,
):
    """-> (MDAN in eval mode, word Vocab, Preprocess)."""
    from glimpse.families.mdan.model import MDAN, MDANConfig
    from glimpse.nn.cnn import infer_backbone

    ckpt = safe_load(Path(checkpoint))
    if not isinstance(ckpt, dict) or not {"weights", "vocab"} <= set(ckpt):
        found = sorted(ckpt)[:6] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{checkpoint}: not an m-DAN checkpoint (needs 'weights' and 'vocab'; found {found})")
    w = {k.removeprefix("module."): v for k, v in ckpt["weights"].items()}
    trained = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    words = ckpt["vocab"]
    if not isinstance(words, dict) or sorted(words.values()) != list(range(1, len(words) + 1)):
        raise CheckpointError(f"{checkpoint}: its vocab must map words to ids 1..N without gaps")
    itos = [UNKNOWN] + [""] * len(words)
    for word, i in words.items():
        itos[i] = str(word)
    vocab = Vocab(itos, {"unk": 0, "pad": 0})
    cnn_sd = load_cnn(cnn)
    preprocess, image_size = image_preprocess(image_size, central_fraction, trained)
    try:
        config = MDANConfig(
            backbone=infer_backbone(cnn_sd),
            caffe=caffe,
            image_size=image_size,
            tokens=w["embedding.weight"].shape[0],
            embedding_features=w["embedding.weight"].shape[1],
            vision_features=w["pool.0.weight"].shape[1],
            features=w["lstm.weight_hh_l0"].shape[1],
            hops=len({k.split(".")[1] for k in w if k.startswith("visual.")}),
            max_sentence_length=max_sentence_length,
        )
        model = MDAN(config)
    except KeyError as e:
        raise CheckpointError(f"{checkpoint}: not an m-DAN checkpoint (no {e} weight)") from None
    except ValueError as e:
        raise CheckpointError(f"{cnn}: {e}") from None
    if config.tokens != len(vocab):
        raise CheckpointError(f"{checkpoint}: its vocab has {len(vocab) - 1} words, its weights {config.tokens - 1}")
    load_weights(model, {**w, **{f"cnn.{k}": v for k, v in cnn_sd.items()}}, f"{checkpoint}: the weights", "m-DAN")
    return model.eval(), vocab, preprocess
