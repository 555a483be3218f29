"""The model families: the only list of them in glimpse.

    from glimpse import families
    families.names()               # ['sat', 'saaa', 'san', 'rdan', 'naive', 'mdan', 'm2', 'nic']
    families.get("sat").title      # 'Show, Attend and Tell (sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning)'
    families.open_pipeline(bundle, backend="onnxruntime")

A family's module is imported on first use, and imports nothing heavy itself. Adding a family: one folder
and one line here (docs/adding-a-family.md).
"""

from __future__ import annotations

import importlib

from glimpse.errors import GlimpseError
from glimpse.families.base import Family

# name -> "module:attribute" of its Family, in the order the CLI lists them
REGISTRY = {
    "sat": "glimpse.families.sat.family:FAMILY",
    "saaa": "glimpse.families.vqa.family:SAAA",
    "san": "glimpse.families.vqa.family:SAN",
    "rdan": "glimpse.families.vqa.family:RDAN",
    "naive": "glimpse.families.vqa.family:NAIVE",
    "mdan": "glimpse.families.mdan.family:FAMILY",
    "m2": "glimpse.families.m2.family:FAMILY",
    "nic": "glimpse.families.nic.family:FAMILY",
}


def names(task: str | None = None) -> list[str]:
    """The families' names, or those of one task (caption, vqa, match)."""
    return [n for n in REGISTRY if task is None or get(n).task == task]


def get(name: str) -> Family:
    if name not in REGISTRY:
        raise GlimpseError(f"unknown model family '{name}' (glimpse knows {', '.join(REGISTRY)})")
    module, attribute = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def open_pipeline(bundle, **options):
    """The pipeline of ``bundle``'s family; ``options``: backend, device, threads, precision, cuda_graphs."""
    return get(bundle.family).pipeline(bundle, **options)


def recorder(bundle, texts: list[str], beam: int = 3, threads: int | None = None):
    """-> record(inputs) -> {graph: [feed, ...]}: each fp32 graph's inputs while ``bundle``'s pipeline
    serves ``inputs`` as its family does (captioners decode at ``beam``; VQA and matching models read
    ``texts``), for ``glimpse.export.precision.quantize`` to calibrate and measure on."""
    from glimpse.export.precision import recorded_feeds

    family = get(bundle.family)

    def record(inputs):
        run = lambda pipe, chunk, offset: family.calibrate(pipe, chunk, texts, beam, offset)  # noqa: E731
        return recorded_feeds(open_pipeline(bundle, threads=threads), run, inputs)

    return record


__all__ = ["Family", "REGISTRY", "get", "names", "open_pipeline", "recorder"]
