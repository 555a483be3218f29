"""The reference contenders of ``glimpse bench`` and ``glimpse demo``: the tutorial's caption.py loop on the
reference modules (one image at a time), eager or with its modules under torch.compile, timed as glimpse's
pipelines are (``glimpse.families.base.Family.contender``)."""

from __future__ import annotations

import time

from glimpse.bundle import Bundle
from glimpse.errors import GlimpseError
from glimpse.runtime.pipeline import PHASES


def reference(bundle: Bundle, device: str, threads: int | None, compiled: bool = False):
    """caption.py's loop on the tutorial's modules: caption(images, beam, batch) -> seconds per phase
    (summed over the images), decode steps and each image's tokens; one image at a time, as caption.py has
    no batching. ``compiled``: the encoder and the decode step under torch.compile (inductor), what a user
    of the tutorial would try first; the first calls at each beam width compile."""
    import torch

    from glimpse.families.sat.model import SATConfig, ShowAttendTell, reference_step
    from glimpse.families.sat.reference import caption_image_beam_search
    from glimpse.runtime.session import cpu_threads

    torch.set_num_threads(threads or cpu_threads())
    model = ShowAttendTell(SATConfig(**bundle.config))
    model.load_state_dict(torch.load(bundle.file_path("weights"), map_location="cpu", weights_only=True))
    model.eval().to(device)
    step = reference_step
    if compiled:
        model.encoder = torch.compile(model.encoder, backend="inductor")  # one image at a time: one shape
        # one graph for the whole step; the beams still alive vary, so their number is symbolic from the start
        step = torch.compile(reference_step, backend="inductor", dynamic=True)
        compile_step(step, model, bundle, device)
    preprocess, (start, end) = bundle.preprocess, (bundle.vocab.special["start"], bundle.vocab.special["end"])

    def caption(images, beam, batch):
        total = dict.fromkeys(PHASES, 0.0) | {"steps": 0, "tokens": []}
        for image in images:
            t = time.perf_counter()
            pixels = torch.from_numpy(preprocess(image)).to(device)
            total["preprocess"] += time.perf_counter() - t
            timings: dict = {}
            found = caption_image_beam_search(model, pixels, beam, start, end, timings, step)
            for k, v in timings.items():
                total[k] += v
            total["tokens"].append(found[0] if found else None)
        return total

    return caption


def compile_step(step, model, bundle: Bundle, device: str) -> None:
    """Compile ``step`` now for every kind of call caption.py makes, so that no timed caption compiles: one
    beam or several (torch.compile specializes a size of 1), on the state as the first step gets it (one row
    expanded to the beams, stride 0) and as later steps do (the surviving beams gathered). Each compiled
    variant's outputs are checked against the eager step's: a compiler's error must not pass for a speed-up."""
    import torch

    from glimpse.families.sat.model import reference_step

    with torch.no_grad():
        encoder_out = model.encoder(torch.zeros(1, 3, *bundle.preprocess.output_size, device=device)).flatten(1, 2)
        state = torch.stack(model.decoder.init_hidden_state(encoder_out), 1)  # (1, 2, D), as beam_search keeps it
        for k in (1, 2):
            words = torch.zeros(k, dtype=torch.int64, device=device)
            expanded = state.expand(k, -1, -1)
            for hc in (expanded, expanded[torch.arange(k, device=device)]):
                args = (model.decoder, encoder_out.expand(k, -1, -1), words, *hc.unbind(1))
                for name, got, want in zip(("logprobs", "h", "c", "alpha"), step(*args), reference_step(*args)):
                    error = (got - want).abs().max().item()
                    if not error <= 1e-4 * max(1.0, want.abs().max().item()):
                        raise GlimpseError(
                            f"torch.compile's decode step differs from the eager one: {name} by {error:.3g}"
                        )
