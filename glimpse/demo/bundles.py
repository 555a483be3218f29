"""The packaged demo checkpoints and the bundles exported from them, each once and reused while its
checkpoint is unchanged: what glimpse demo, glimpse bench --model demo and glimpse eval share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from glimpse.bundle import Bundle, is_bundle, sha256_of
from glimpse.demo import scenes
from glimpse.demo.train_sat import CHECKPOINT, IMAGE_SIZE, WORD_MAP
from glimpse.errors import GlimpseError

PACKAGED = Path(__file__).parent / "checkpoints"


def cached_bundle(out: Path, source: dict, export: Callable[[dict], Path], log: Callable[[str], None]) -> Bundle:
    """The bundle at ``out`` if it was exported from the files whose sha256s ``source`` names (its
    manifest's source holds them), else ``export(source)``'s: each demo bundle is exported once and
    reused while its checkpoints are unchanged."""
    if is_bundle(out) and source.items() <= Bundle(out).manifest["source"].items():
        log(f"using the bundle exported before: {out}")
        return Bundle(out)
    return Bundle(export(source))


def val_pixels(preprocess, count: int = 4):
    """Real scenes for an export's check, besides its noise images: (count, 3, H, W)."""
    return np.stack([preprocess(s.image(IMAGE_SIZE)) for s in scenes.scenes("val", count)])


def sat_bundle(checkpoints: Path, out: Path, log: Callable[[str], None]) -> Bundle:
    """The bundle of ``checkpoints``' sat model at ``out``."""
    from glimpse.families.sat.checkpoint import import_sat
    from glimpse.families.sat.export import FUSED_BEAM, export_sat

    checkpoint, word_map = checkpoints / CHECKPOINT, checkpoints / WORD_MAP
    if not checkpoint.is_file():
        raise GlimpseError(f"{checkpoint}: no demo checkpoint (make one with: glimpse demo train --out {checkpoints})")

    def export(source: dict) -> Path:
        log(f"importing {checkpoint} and exporting it to {out}")
        model, vocab, preprocess = import_sat(checkpoint, word_map, image_size=IMAGE_SIZE)
        source = {"checkpoint": checkpoint.name, "word_map": word_map.name, **source}
        return export_sat(
            model, vocab, preprocess, out, images=val_pixels(preprocess), force=True, source=source, log=log
        )

    return cached_bundle(out, {"sha256": sha256_of(checkpoint), "fused_beam": FUSED_BEAM}, export, log)
