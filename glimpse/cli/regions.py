"""Detection features as the commands read them, for the captioners that read regions instead of images."""

from __future__ import annotations

from pathlib import Path

from glimpse.cli.base import log
from glimpse.errors import GlimpseError


def expand_features(sources: list[str]) -> list[str]:
    """Files as given; an HDF5 file without ``:ID`` stands for every image in it."""
    from glimpse.runtime.regions import HDF5_SUFFIXES, hdf5_images

    out = []
    for source in sources:
        whole_file = Path(source).suffix in HDF5_SUFFIXES and Path(source).is_file()
        out += hdf5_images(source) if whole_file else [source]
    return out


def calibration_regions(bundle, sources: list[str] | None, size: int):
    """(N, R, d_in) regions for ``glimpse quantize``: the files given, or for a model of the demo scenes,
    their validation scenes' grid cells."""
    import numpy as np

    from glimpse.runtime.regions import load_regions, pad_regions

    c = bundle.config
    if sources:
        files = expand_features(sources)[:size]
        regions = np.stack([pad_regions(load_regions(f), c["regions"]) for f in files])
    else:
        from glimpse.demo import scenes
        from glimpse.demo.evaluate import check_demo_model
        from glimpse.demo.m2 import scene_regions

        words = {w for s in scenes.scenes("val", 8) for caption in s.captions for w in caption.split()}
        try:
            check_demo_model(bundle, words, bundle.vocab.itos)
        except GlimpseError:
            raise GlimpseError(
                f"{bundle.path}: give detection features to calibrate on: --calibration-features"
            ) from None
        log(f"calibrating on {size} generated validation scenes (--calibration-features for yours)")
        regions = np.stack([pad_regions(r, c["regions"]) for r in scene_regions("val", size)[0]])
    if regions.shape[2] != c["d_in"]:
        raise GlimpseError(f"calibration regions have {regions.shape[2]} features each; the model reads {c['d_in']}")
    return regions
