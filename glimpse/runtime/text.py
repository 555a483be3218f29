"""Text in: words to token ids the way a bundle's model read them in training, and padded batches."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from glimpse.errors import GlimpseError
from glimpse.vocab import Vocab


@dataclass
class Read:
    ids: list[int]
    words: list[str]  # the words read (after truncation)
    unknown: list[str]  # of those, the words the model does not know (read as id 0)
    truncated: bool  # the text was longer than the model's limit


def read(text: str, tokenize: Callable[[str], list[str]], vocab: Vocab, limit: int, what: str = "question") -> Read:
    """A question or sentence -> its token ids (0 for unknown words); an empty one is refused, a
    too-long one cut to ``limit`` words with a warning."""
    words = tokenize(text) if isinstance(text, str) else []
    if not words:
        raise GlimpseError(f"empty {what} {text!r}: a {what} needs at least one word")
    truncated = len(words) > limit
    if truncated:
        warnings.warn(
            f"{what} {text!r} has {len(words)} words; the model reads at most {limit}: the rest is cut off",
            stacklevel=3,
        )
        words = words[:limit]
    ids = [vocab.stoi.get(w, 0) for w in words]
    return Read(ids, words, [w for w, i in zip(words, ids) if i == 0], truncated)


def pad(texts: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Token id lists -> tokens (N, T) int64 zero-padded to the longest, lengths (N,) int64."""
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    tokens = np.zeros((len(texts), lengths.max()), dtype=np.int64)
    for n, t in enumerate(texts):
        tokens[n, : len(t)] = t
    return tokens, lengths
