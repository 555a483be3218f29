"""The demo's M2 captioner: the packaged checkpoint (trained on the 4x4 grid cells of the demo
captioner's ResNet as its regions) imported and exported like the released model, then run on the
held-out test scenes with ONNX Runtime, scored, and checked token for token against the public beam
search on the reference modules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from glimpse.bundle import Bundle, sha256_of
from glimpse.demo.bundles import PACKAGED, cached_bundle
from glimpse.demo.train_m2 import CHECKPOINT, VOCAB, model_config
from glimpse.errors import GlimpseError

BEAM = 5  # the public test script's


def m2_bundle(checkpoints: Path, out: Path, log: Callable[[str], None]) -> Bundle:
    from glimpse.families.m2.checkpoint import import_m2
    from glimpse.families.m2.export import export_m2

    checkpoint, vocab = checkpoints / CHECKPOINT, checkpoints / VOCAB
    if not checkpoint.is_file():
        raise GlimpseError(f"{checkpoint}: no demo M2 checkpoint (make one with: glimpse demo train --models m2)")

    def export(source: dict) -> Path:
        log(f"importing {checkpoint} and exporting it to {out}")
        model, words = import_m2(checkpoint, vocab, regions=model_config().regions)
        source = {"checkpoint": checkpoint.name, "vocab": vocab.name, **source}
        return export_m2(model, words, out, force=True, source=source, log=log)

    return cached_bundle(out, {"sha256": sha256_of(checkpoint)}, export, log)


def scene_regions(split: str, count: int, checkpoints: Path = PACKAGED) -> tuple[np.ndarray, list]:
    """(count, 16, 512) float32: the regions of ``split``'s first ``count`` scenes as a demo M2 reads
    them (the grid cells of ``checkpoints``' captioner), and the scenes."""
    from glimpse.demo import train_m2
    from glimpse.demo.train_vqa import frozen_cnn

    regions, chosen = train_m2.scene_regions(frozen_cnn(checkpoints)[0], split, count)
    return regions.numpy(), chosen


def run(out: Path, checkpoints: Path, count: int, threads: int | None, log: Callable[[str], None]) -> dict:
    """Caption ``count`` test scenes from their regions; scores and agreement with the reference."""
    import torch

    from glimpse.demo import scenes
    from glimpse.demo.metrics import caption_scores
    from glimpse.families.m2.checkpoint import import_m2
    from glimpse.families.m2.pipeline import M2Pipeline
    from glimpse.families.m2.reference import beam_search

    bundle = m2_bundle(checkpoints, out / "m2-bundle", log)
    regions, test = scene_regions("test", count, checkpoints)
    log(f"captioning {count} test scenes from their grid regions with M2 on ONNX Runtime (CPU), beam {BEAM}")
    caps = M2Pipeline(bundle, threads=threads)(list(regions), beam_size=BEAM, batch_size=50)
    model, words = import_m2(checkpoints / CHECKPOINT, checkpoints / VOCAB, regions=model_config().regions)
    with torch.no_grad():
        want, _, _ = beam_search(
            model, torch.from_numpy(regions), 20, words.special["start"], words.special["end"], BEAM
        )
    end = words.special["end"]
    same = sum(
        c.tokens == row[: row.index(end) + 1 if end in row else None] for c, row in zip(caps, want[:, 0].tolist())
    )
    scores = caption_scores([c.caption for c in caps], [s.captions for s in test])
    print(f"\nM2 on {count} test scenes (beam {BEAM}): " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    print(f"  {scenes.pretty(caps[0].caption)}  (test scene 0)")
    print(f"  tokens equal to the public beam search on the reference modules: {same}/{count}")
    return {**scores, "identical_to_reference": same}
