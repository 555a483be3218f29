"""Captioning contenders timed alike, by ``glimpse bench`` and ``glimpse demo``: the tutorial's caption.py
loop on the reference modules (one image at a time, eager PyTorch) and glimpse's pipeline on each backend
and precision. Each is a function caption(images, beam, batch) -> seconds per phase, summed over the
images, and the decode steps."""

from __future__ import annotations

import time

import numpy as np

from glimpse.bundle import Bundle
from glimpse.errors import GlimpseError
from glimpse.runtime.pipeline import CONTENDERS, PHASES


def contender(name: str, bundle: Bundle, device: str, threads: int | None, compile: bool):
    """-> caption(images, beam, batch) -> seconds per phase (summed over the images) and decode steps."""
    from glimpse.families.sat.pipeline import CaptionPipeline

    preprocess = bundle.preprocess
    if name == "reference":
        import torch

        from glimpse.families.sat.model import SATConfig, ShowAttendTell
        from glimpse.families.sat.reference import caption_image_beam_search
        from glimpse.runtime.session import cpu_threads

        torch.set_num_threads(threads or cpu_threads())
        model = ShowAttendTell(SATConfig(**bundle.config))
        model.load_state_dict(torch.load(bundle.file_path("weights"), map_location="cpu", weights_only=True))
        model.eval().to(device)
        start, end = bundle.vocab.special["start"], bundle.vocab.special["end"]

        def caption(images, beam, batch):
            total = dict.fromkeys(PHASES, 0.0) | {"steps": 0}
            for image in images:  # one at a time: caption.py has no batching
                t = time.perf_counter()
                pixels = torch.from_numpy(preprocess(image)).to(device)
                total["preprocess"] += time.perf_counter() - t
                timings: dict = {}
                caption_image_beam_search(model, pixels, beam, start, end, timings)
                for k, v in timings.items():
                    total[k] += v
            return total

        return caption

    if name not in CONTENDERS:
        raise GlimpseError(f"unknown contender '{name}' (choose from reference, {', '.join(CONTENDERS)})")
    backend, precision, cuda_graphs = CONTENDERS[name]
    pipe = CaptionPipeline(bundle, backend, device, threads, precision, cuda_graphs)
    if compile and name == "torch":
        import torch

        for session in pipe.sessions.values():
            session.module = torch.compile(session.module, dynamic=True)

    def caption(images, beam, batch):
        total = dict.fromkeys(PHASES, 0.0) | {"steps": 0}
        for i in range(0, len(images), batch):
            t = time.perf_counter()
            pixels = np.stack([preprocess(im) for im in images[i : i + batch]])
            total["preprocess"] += time.perf_counter() - t
            timings: dict = {}
            pipe.decode(pixels, beam, timings=timings)
            for k, v in timings.items():
                total[k] += v
        return total

    return caption
