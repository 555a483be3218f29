"""What glimpse knows of one model family, in one place: ``Family``.

Each family folder defines its ``Family`` (in its ``__init__.py``, which imports nothing heavy: torch and
the family's modules are imported when a method runs), and ``glimpse.families`` registers it. The CLI,
serve, quantize, eval, check and bench read the registry; none of them names a family.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from glimpse.errors import GlimpseError


class Family:
    name: str  # in the CLI (glimpse export NAME), the bundle's manifest and the HTTP API's model list
    task: str  # caption | vqa | match: the command and the HTTP route that serve it
    title: str  # one line: the paper and the public implementation whose checkpoints it imports
    description: str  # what `glimpse export NAME` writes (its --help)
    example: str  # a `glimpse export NAME ...` command line
    reads: str = "images"  # what its encoder reads: images, or (m2) detection regions
    demo_beam: int = 3  # captioners: the beam glimpse demo and glimpse eval decode with
    compiled_reference: bool = False  # captioners: ``reference`` takes compiled=True (torch.compile)

    def add_import_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The arguments that name the checkpoint files and the facts they do not hold."""
        raise NotImplementedError

    def export(self, args: argparse.Namespace, images: Callable, log: Callable[[str], None]) -> Path:
        """Import the checkpoint ``args`` names and write its bundle to ``args.out``, each graph checked
        against the reference modules, also on ``images(preprocess)``: the user's real images (``--images``)
        preprocessed as the model reads them, (N, 3, H, W), or None."""
        raise NotImplementedError

    def pipeline(self, bundle, **options):
        """A pipeline over ``bundle``; ``options``: backend, device, threads, precision, cuda_graphs."""
        raise NotImplementedError

    def calibrate(self, pipe, inputs: np.ndarray, texts: list[str], beam: int, offset: int) -> None:
        """Run ``pipe`` over calibration ``inputs`` (what the encoder reads; the chunk that starts at input
        ``offset``) as serving would, so that its sessions see real inputs: captioners decode them at
        ``beam``; VQA and matching models read ``texts`` (questions or sentences) with them."""
        raise NotImplementedError

    def contender(self, name: str, bundle, device: str, threads: int | None, compile: bool) -> Callable:
        """For glimpse bench and the demo, a captioner of images timed: ``name`` ("reference", the public
        implementation's own loop; "reference-compiled", the same with its modules under torch.compile; or one
        of ``glimpse.runtime.pipeline.CONTENDERS``, glimpse's pipeline on a backend and precision) over
        ``bundle`` -> caption(images, beam, batch) -> seconds per phase (``PHASES``, summed over the images),
        decode steps and, where the contender knows them, "tokens": per image <start> ... <end>, or None where
        no hypothesis finished."""
        import time

        from glimpse.runtime.pipeline import CONTENDERS, PHASES

        if self.task != "caption" or self.reads != "images":
            raise GlimpseError(f"glimpse bench times captioners of images, not {self.name} (benchmarks/ has its own)")
        if name == "reference":
            return self.reference(bundle, device, threads)
        if name == "reference-compiled":
            if not self.compiled_reference:
                raise GlimpseError(f"glimpse bench has no compiled reference loop for {self.name} bundles")
            return self.reference(bundle, device, threads, compiled=True)
        if name not in CONTENDERS:
            choices = ", ".join(("reference", "reference-compiled", *CONTENDERS))
            raise GlimpseError(f"unknown contender '{name}' (choose from {choices})")
        backend, precision, cuda_graphs = CONTENDERS[name]
        pipe = self.pipeline(
            bundle, backend=backend, device=device, threads=threads, precision=precision, cuda_graphs=cuda_graphs
        )
        if compile and name == "torch":
            import torch

            for session in pipe.sessions.values():
                session.module = torch.compile(session.module, dynamic=True)

        start = bundle.vocab.special["start"]

        def caption(images, beam, batch):
            total = dict.fromkeys(PHASES, 0.0) | {"steps": 0, "tokens": []}
            for i in range(0, len(images), batch):
                t = time.perf_counter()
                pixels = np.stack([bundle.preprocess(im) for im in images[i : i + batch]])
                total["preprocess"] += time.perf_counter() - t
                timings: dict = {}
                found = pipe.decode(pixels, beam, timings=timings)
                for k, v in timings.items():
                    total[k] += v
                total["tokens"] += [[start, *r.best.tokens] if r.best.finished else None for r in found]
            return total

        return caption

    def reference(self, bundle, device: str, threads: int | None, compiled: bool = False) -> Callable:
        """The public implementation's own captioning loop on the reference modules, timed as ``contender``;
        ``compiled`` (where ``compiled_reference``): its modules under torch.compile."""
        raise GlimpseError(f"glimpse bench has no reference loop for {self.name} bundles")

    def __repr__(self) -> str:
        return f"<family {self.name}: {self.title}>"


def add_cnn_arguments(parser, caffe: bool) -> None:
    """The CNN whose grid the model reads, and how images were fed to it: not in the checkpoint."""
    parser.add_argument("--cnn", required=True, help="the ResNet state dict the image features came from")
    parser.add_argument(
        "--caffe",
        action=argparse.BooleanOptionalAction,
        default=None if caffe else False,
        help="the CNN is the Caffe-ported ResNet (stride in the first 1x1 convolution, ceil-mode max-pool);"
        f" default: {'yes, as pytorch-vqa used' if caffe else 'no'}",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        help="center crop the features were computed at (default: the checkpoint's config, else 448)",
    )
    parser.add_argument(
        "--central-fraction",
        type=float,
        help="images are resized to image-size / this, then center-cropped (default: the checkpoint's config,"
        " else 0.875, pytorch-vqa's)",
    )
