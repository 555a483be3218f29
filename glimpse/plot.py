"""Attention figures in the tutorial's style: the image, then one panel per word with its map."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from glimpse.errors import GlimpseError

SIDE = 14 * 24  # the tutorial shows 336x336 panels


def attention_plot(
    image: Image.Image, words: list[str], alphas: np.ndarray, out: str | Path, first: str = "<start>"
) -> Path:
    """image: RGB; alphas: (len(words), S, S), one map per word (a caption's, <end> included, or a
    question's glimpses); the first panel, titled ``first``, shows the image alone."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GlimpseError("--attention-plot needs matplotlib (pip install 'glimpse[plot]')") from None
    image = image.resize((SIDE, SIDE), Image.LANCZOS)
    labels = [first] + words
    cols = 5
    rows = math.ceil(len(labels) / cols)
    fig = plt.figure(figsize=(cols * 2.4, rows * 2.6))
    for t, label in enumerate(labels):
        ax = fig.add_subplot(rows, cols, t + 1)
        ax.imshow(image)
        ax.set_title(label, fontsize=11)
        if t > 0:
            a = alphas[t - 1].astype(np.float32)
            a = np.asarray(Image.fromarray(a / max(float(a.max()), 1e-12)).resize((SIDE, SIDE), Image.BICUBIC))
            ax.imshow(a, alpha=0.75, cmap="Greys_r")
        ax.axis("off")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
