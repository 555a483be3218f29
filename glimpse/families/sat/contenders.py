"""The reference contender of ``glimpse bench`` and ``glimpse demo``: the tutorial's caption.py loop on the
reference modules (one image at a time, eager PyTorch), timed as glimpse's pipelines are
(``glimpse.families.base.Family.contender``)."""

from __future__ import annotations

import time

from glimpse.bundle import Bundle
from glimpse.runtime.pipeline import PHASES


def reference(bundle: Bundle, device: str, threads: int | None):
    """caption.py's loop on the tutorial's modules: caption(images, beam, batch) -> seconds per phase
    (summed over the images) and decode steps; one image at a time, as caption.py has no batching."""
    import torch

    from glimpse.families.sat.model import SATConfig, ShowAttendTell
    from glimpse.families.sat.reference import caption_image_beam_search
    from glimpse.runtime.session import cpu_threads

    torch.set_num_threads(threads or cpu_threads())
    model = ShowAttendTell(SATConfig(**bundle.config))
    model.load_state_dict(torch.load(bundle.file_path("weights"), map_location="cpu", weights_only=True))
    model.eval().to(device)
    preprocess, (start, end) = bundle.preprocess, (bundle.vocab.special["start"], bundle.vocab.special["end"])

    def caption(images, beam, batch):
        total = dict.fromkeys(PHASES, 0.0) | {"steps": 0}
        for image in images:
            t = time.perf_counter()
            pixels = torch.from_numpy(preprocess(image)).to(device)
            total["preprocess"] += time.perf_counter() - t
            timings: dict = {}
            caption_image_beam_search(model, pixels, beam, start, end, timings)
            for k, v in timings.items():
                total[k] += v
        return total

    return caption
