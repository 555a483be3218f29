"""The base every family's pipeline stands on: load a bundle, check its family, open its graphs.

    pipe = CaptionPipeline("sat-bundle", backend="onnxruntime", device="cpu", threads=2, precision="fp32")
    pipe.sessions["encoder"].run({"image": pixels})

A family's pipeline names the families it runs, the graphs it opens and, for the torch backend, how its
reference modules are built from the bundle; what it does with the sessions is its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from glimpse.bundle import Bundle
from glimpse.errors import BundleError, GlimpseError
from glimpse.runtime.session import OnnxRuntimeSession, Session

BACKENDS = ("onnxruntime", "torch", "tensorrt")
# How glimpse bench and glimpse demo name a pipeline they time: contender -> (backend, precision, CUDA graphs)
CONTENDERS = {
    "torch": ("torch", "fp32", False),
    "torch-graphs": ("torch", "fp32", True),
    "onnxruntime": ("onnxruntime", "fp32", False),
    "onnxruntime-fp16": ("onnxruntime", "fp16", False),
    "onnxruntime-int8": ("onnxruntime", "int8", False),
    "tensorrt": ("tensorrt", "fp32", True),
    "tensorrt-fp16": ("tensorrt", "fp16", True),
}
PHASES = ("preprocess", "encoder", "init", "decode")  # where a caption's time goes, as contenders report it


def open_sessions(
    bundle: Bundle,
    names: list[str],
    backend: str,
    device: str,
    threads: int | None,
    precision: str = "fp32",
    cuda_graphs: bool = False,
    torch_modules: Callable[[Bundle], dict] | None = None,
    arena: bool = True,
) -> dict[str, Session]:
    """The graphs ``names`` of ``bundle`` on ``backend``. ``torch_modules(bundle)`` -> {graph: reference
    module} is the family's, for the torch backend. ``arena``: ONNX Runtime's CPU memory arena (off for a
    long-running server, whose memory must come back)."""
    if backend == "onnxruntime":
        path = bundle.cpu_graph_path if device == "cpu" else bundle.graph_path  # int8: its CPU variant on the CPU
        return {n: OnnxRuntimeSession(path(n, precision), device, threads, arena) for n in names}
    if backend == "tensorrt":
        from glimpse.runtime.tensorrt import tensorrt_sessions

        return tensorrt_sessions(bundle, names, precision, device, cuda_graphs)  # refuses 'cpu' in one line
    if precision != "fp32":
        raise GlimpseError(f"the {backend} backend runs fp32 only; {precision} graphs run on onnxruntime or tensorrt")
    if backend == "torch":
        from glimpse.runtime.torch_backend import torch_sessions

        if torch_modules is None:
            raise GlimpseError(f"the torch backend does not run family '{bundle.family}'")
        return torch_sessions(bundle, names, torch_modules, device, threads, cuda_graphs)
    raise GlimpseError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")


class Pipeline:
    families: tuple[str, ...] = ()  # the bundle families this pipeline runs
    graphs: tuple[str, ...] = ()  # the graphs it opens, those of them the bundle has
    what = "a model of this kind"  # named when a bundle of another family is given

    def __init__(
        self,
        bundle: str | Path | Bundle,
        backend: str = "onnxruntime",
        device: str = "cpu",
        threads: int | None = None,
        precision: str = "fp32",
        cuda_graphs: bool = True,
        arena: bool = True,
    ):
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle(bundle)
        if self.bundle.family not in self.families:
            raise BundleError(f"{self.bundle.path}: a '{self.bundle.family}' bundle, not {self.what}")
        self.vocab = self.bundle.vocab
        names = [n for n in self.graphs if n in self.bundle.graphs]
        self.sessions = open_sessions(
            self.bundle, names, backend, device, threads, precision, cuda_graphs, self.torch_modules, arena
        )

    @staticmethod
    def torch_modules(bundle: Bundle) -> dict:
        """{graph: reference module with the bundle's weights}, for the torch backend."""
        raise NotImplementedError


@dataclass
class Caption:
    image: str
    caption: str
    words: list[str]
    tokens: list[int]  # <start> ... <end>, as the tutorial's caption_image_beam_search returns them
    score: float  # summed log-prob of the generated tokens
    finished: bool  # False when no hypothesis reached <end> within max_length (best live one returned)
    alphas: np.ndarray | None = field(default=None, repr=False)  # (generated tokens, S, S)
    nbest: list[tuple[str, float]] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in ("image", "caption", "words", "tokens", "score", "finished")}
        if len(self.nbest) > 1:
            out["nbest"] = [{"caption": c, "score": s} for c, s in self.nbest]
        return out
