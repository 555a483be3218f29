"""The demo's VQA half: the packaged saaa, san, rdan and naive checkpoints (pytorch-vqa's layout, heads
over the demo captioner's ResNet) imported and exported like any VQA checkpoint, then asked every
question of the held-out test scenes with ONNX Runtime, scored per kind of question and cross-checked
against the torch backend. Every VQA family whose checkpoint is packaged takes part."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from glimpse.bundle import Bundle, sha256_of
from glimpse.demo import scenes
from glimpse.demo.bundles import cached_bundle, val_pixels
from glimpse.demo.train_vqa import CNN, FAMILIES, checkpoint_name, cnn_state_dict

KINDS = ("count", "colour", "size", "shape", "exists", "position")


def cnn_file(checkpoints: Path, out: Path) -> Path:
    """The captioner's ResNet as the torchvision state dict ``--cnn`` takes, written once into ``out``."""
    import torch

    path = out / CNN
    if not path.is_file():
        torch.save(cnn_state_dict(checkpoints), path)
    return path


def sources(checkpoints: Path, checkpoint: Path) -> dict:
    """What a VQA or matching demo bundle is made from: its checkpoint and the captioner whose CNN it reads."""
    from glimpse.demo.train_sat import CHECKPOINT

    return {"sha256": sha256_of(checkpoint), "cnn_sha256": sha256_of(checkpoints / CHECKPOINT)}


def vqa_bundle(family: str, checkpoints: Path, out: Path, log: Callable[[str], None]) -> Bundle:
    """The bundle of ``family``'s demo checkpoint at ``out/<family>-bundle``."""
    from glimpse.families.vqa.checkpoint import import_vqa
    from glimpse.families.vqa.export import export_vqa

    checkpoint, bundle = checkpoints / checkpoint_name(family), out / f"{family}-bundle"

    def export(source: dict) -> Path:
        cnn = cnn_file(checkpoints, out)
        log(f"importing {checkpoint} and exporting it to {bundle}")
        model, questions, answers, preprocess = import_vqa(family, checkpoint, cnn, caffe=False)
        options = {"images": val_pixels(preprocess), "force": True, "log": log}
        source = {"checkpoint": checkpoint.name, "cnn": cnn.name, **source}
        return export_vqa(model, family, questions, answers, preprocess, bundle, source=source, **options)

    return cached_bundle(bundle, sources(checkpoints, checkpoint), export, log)


def test_questions(count: int) -> tuple[list, list[str], list[str]]:
    """Every question of the first ``count`` test scenes: (image, question) pairs, where one scene's
    questions share its image object (so a pipeline encodes it once), their answers and kinds."""
    pairs, truth = [], []
    for s in scenes.scenes("test", count):
        image = s.image(128)
        for q, a in s.questions:
            pairs.append((image, q))
            truth.append(a)
    return pairs, truth, [scenes.question_kind(q) for _, q in pairs]


def accuracy(predicted: list[str], truth: list[str], kinds: list[str]) -> dict:
    """Top-1 accuracy overall ("all") and per kind of question."""
    right, total = Counter(), Counter(kinds)
    for p, t, k in zip(predicted, truth, kinds):
        right[k] += p == t
    return {"all": sum(right.values()) / len(truth), **{k: right[k] / total[k] for k in KINDS if total[k]}}


def run(out: Path, checkpoints: Path, count: int, threads: int | None, log: Callable[[str], None]) -> dict:
    """Answer every question of ``count`` test scenes with each family's demo model; print the
    accuracy table and the torch backend's agreement. -> {family: figures}."""
    from glimpse.families.vqa.pipeline import VQAPipeline

    families = [f for f in FAMILIES if (checkpoints / checkpoint_name(f)).is_file()]
    if not families:
        log(f"no demo VQA checkpoints in {checkpoints} (make them with: glimpse demo train --out {checkpoints})")
        return {}
    pairs, truth, kinds = test_questions(count)
    figures = {}
    for family in families:
        bundle = vqa_bundle(family, checkpoints, out, log)
        log(f"answering {len(pairs)} questions of {count} test scenes with {family} on ONNX Runtime (CPU)")
        onnx = [a.answer for a in VQAPipeline(bundle, threads=threads)(pairs, top_k=1, batch_size=256)]
        eager = [
            a.answer for a in VQAPipeline(bundle, backend="torch", threads=threads)(pairs, top_k=1, batch_size=256)
        ]
        figures[family] = {**accuracy(onnx, truth, kinds), "identical_to_torch": sum(map(str.__eq__, onnx, eager))}
    print(f"\nVQA on {count} test scenes, {len(pairs)} questions (top-1 accuracy, ONNX Runtime):")
    print(f"{'family':<8}" + "".join(f"{k:>9}" for k in ("all", *KINDS)) + "   answers = torch backend's")
    for family, f in figures.items():
        cells = "".join(f"{f[k]:>9.3f}" if k in f else f"{'-':>9}" for k in ("all", *KINDS))
        print(f"{family:<8}{cells}   {f['identical_to_torch']}/{len(pairs)}")
    return {"questions": len(pairs), "families": figures}
