"""Caption scores with the COCO caption evaluation's own scorers (pycocoevalcap), on our tokenisation:
lower-case words split on spaces, which is what the demo's captions already are."""

from __future__ import annotations

from glimpse.errors import GlimpseError


def caption_scores(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """Corpus BLEU-1..4 and CIDEr(-D as pycocoevalcap computes it) of one prediction per image."""
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
    except ImportError:
        raise GlimpseError("caption scores need pycocoevalcap (pip install 'glimpse[demo]')") from None
    res = {i: [p] for i, p in enumerate(predictions)}
    gts = {i: list(r) for i, r in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    return {**{f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)}, "CIDEr": float(cider)}
