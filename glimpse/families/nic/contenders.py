"""The reference contender of ``glimpse bench``: sample.py's captioning on the tutorial's modules (one image at a
time, eager PyTorch, 20 greedy steps with no early stop), timed as glimpse's pipelines are
(``glimpse.families.base.Family.contender``). sample.py has greedy search only: the beam asked is not used."""

from __future__ import annotations

import time

from glimpse.bundle import Bundle
from glimpse.runtime.pipeline import PHASES


def reference(bundle: Bundle, device: str, threads: int | None):
    import torch

    from glimpse.families.nic.model import NICConfig, ShowAndTell
    from glimpse.runtime.session import cpu_threads

    torch.set_num_threads(threads or cpu_threads())
    model = ShowAndTell(NICConfig(**bundle.config))
    model.load_state_dict(torch.load(bundle.file_path("weights"), map_location="cpu", weights_only=True))
    model.eval().to(device)

    @torch.no_grad()
    def caption(images, beam, batch):
        total = dict.fromkeys(PHASES, 0.0) | {"steps": 0}
        for image in images:
            t0 = time.perf_counter()
            pixels = torch.from_numpy(bundle.preprocess(image)).to(device)[None]
            t1 = time.perf_counter()
            feature = model.encoder(pixels)
            t2 = time.perf_counter()
            model.decoder.sample(feature)
            t3 = time.perf_counter()
            phases = {
                "preprocess": t1 - t0,
                "encoder": t2 - t1,
                "decode": t3 - t2,
                "steps": model.decoder.max_seg_length,
            }
            for k, v in phases.items():
                total[k] += v
        return total

    return caption
