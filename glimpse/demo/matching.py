"""The demo's matching half: the packaged m-DAN checkpoint (heads over the demo captioner's ResNet)
imported and exported like any m-DAN checkpoint, then scored by retrieval on the held-out test scenes.

Retrieval protocol: the scenes' images against all of their captions (five per scene). Generated
scenes can share a description ("a small red circle" fits every scene of that one shape), so a
sentence counts as relevant to every image among whose five captions it is, not only to the scene it
was written for. R@K is the share of queries with a relevant item among the first K.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from glimpse.bundle import Bundle
from glimpse.demo import scenes
from glimpse.demo.bundles import cached_bundle, val_pixels
from glimpse.demo.vqa import cnn_file, sources

KS = (1, 5, 10)

CHECKPOINT = "mdan_shapes.pth"  # written by glimpse demo train (train_mdan.py)


def test_pairs(count: int, split: str = "test", images: bool = True) -> tuple[list, list[str], np.ndarray]:
    """-> images of ``count`` scenes (None unless ``images``), their captions (5 per scene, scene-major),
    and relevant (count, 5 * count) bool: caption j describes image i."""
    batch = scenes.scenes(split, count)
    sentences = [c for s in batch for c in s.captions]
    relevant = np.array([[c in set(s.captions) for c in sentences] for s in batch])
    return [s.image(128) for s in batch] if images else None, sentences, relevant


def recall(scores: np.ndarray, relevant: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """scores and relevant (images, sentences) -> R@K image-to-text and text-to-image."""
    out = {}
    for name, s, r in (("image-to-text", scores, relevant), ("text-to-image", scores.T, relevant.T)):
        order = np.argsort(-s, axis=1, kind="stable")  # best first
        first = np.take_along_axis(r, order, axis=1).argmax(axis=1)  # rank of the first relevant item
        for k in ks:
            out[f"{name} R@{k}"] = float((first < k).mean())
    return out


def mdan_bundle(checkpoints: Path, out: Path, log: Callable[[str], None]) -> Bundle:
    """The demo m-DAN's bundle at ``out/mdan-bundle``."""
    from glimpse.families.mdan.checkpoint import import_mdan
    from glimpse.families.mdan.export import export_mdan

    checkpoint, bundle = checkpoints / CHECKPOINT, out / "mdan-bundle"

    def export(source: dict) -> Path:
        cnn = cnn_file(checkpoints, out)
        log(f"importing {checkpoint} and exporting it to {bundle}")
        model, vocab, preprocess = import_mdan(checkpoint, cnn)
        options = {"images": val_pixels(preprocess), "force": True, "log": log}
        return export_mdan(
            model,
            vocab,
            preprocess,
            bundle,
            source={"checkpoint": checkpoint.name, "cnn": cnn.name, **source},
            **options,
        )

    return cached_bundle(bundle, sources(checkpoints, checkpoint), export, log)


def run(out: Path, checkpoints: Path, count: int, threads: int | None, log: Callable[[str], None]) -> dict:
    """Retrieval on ``count`` test scenes with ONNX Runtime and the torch backend; print R@K."""
    from glimpse.families.mdan.pipeline import MatchPipeline

    if not (checkpoints / CHECKPOINT).is_file():
        log(f"no demo m-DAN checkpoint in {checkpoints} (make one with: glimpse demo train --out {checkpoints})")
        return {}
    bundle = mdan_bundle(checkpoints, out, log)
    images, sentences, relevant = test_pairs(count)
    log(f"embedding {count} test scenes and their {len(sentences)} captions with m-DAN on ONNX Runtime (CPU)")
    figures = {}
    for backend in ("onnxruntime", "torch"):
        pipe = MatchPipeline(bundle, backend=backend, threads=threads)
        figures[backend] = recall(pipe.scores(images, sentences), relevant)
    print(f"\nimage-text matching (m-DAN) on {count} test scenes and their {len(sentences)} captions:")
    for direction in ("image-to-text", "text-to-image"):
        cells = "  ".join(f"R@{k} {figures['onnxruntime'][f'{direction} R@{k}']:.3f}" for k in KS)
        print(f"  {direction:<14} {cells}")
    same = figures["onnxruntime"] == figures["torch"]
    print(f"  torch backend: {'the same recalls' if same else 'DIFFERENT recalls: ' + str(figures['torch'])}")
    return {"scenes": count, "sentences": len(sentences), **figures["onnxruntime"], "torch_agrees": same}
