"""NICPipeline: a Show and Tell bundle, a backend, images in, captions out.

    pipe = NICPipeline("nic-bundle")                           # ONNX Runtime on the CPU
    [cap] = pipe(["photo.jpg"], beam_size=1)                   # greedy: sample.py's ids, cut after <end>
    cap.caption, cap.tokens, cap.score

Per batch of images: preprocess -> encoder -> init (the image's LSTM step, once per image: the first token's
distribution and the state after it) -> search over the step graph. Greedy (beam 1) is sample.py's loop;
wider beams follow the sat tutorial's beam search (``glimpse.runtime.search``), as does sampling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from glimpse.bundle import Bundle
from glimpse.images import as_image, image_name
from glimpse.runtime import search
from glimpse.runtime.pipeline import Caption, Pipeline

MAX_LENGTH = 20  # tokens generated at most by default: DecoderRNN.sample's max_seg_length


class NICPipeline(Pipeline):
    families, graphs, what = ("nic",), ("encoder", "init", "step"), "a captioner"

    def __init__(self, bundle: str | Path | Bundle, *args, **options):
        super().__init__(bundle, *args, **options)
        self.preprocess = self.bundle.preprocess

    @staticmethod
    def torch_modules(bundle: Bundle) -> dict:
        from glimpse.families.nic.model import NICConfig, ShowAndTell
        from glimpse.runtime.torch_backend import reference_module

        return reference_module(ShowAndTell(NICConfig(**bundle.config)), bundle).graphs()

    def __call__(
        self,
        images,
        beam_size: int = 5,
        max_length: int | None = None,
        length_penalty: float = 0.0,
        nbest: int = 1,
        sampling: dict | None = None,
        batch_size: int = 8,
    ) -> list[Caption]:
        """Caption images (paths, PIL images or HxWx3 uint8 arrays) with at most ``max_length`` tokens
        (default 20, sample.py's), the first being the <start> the image predicts. ``sampling`` (temperature,
        top_k, top_p, seed) replaces beam search by sampling."""
        options = search.SearchOptions(beam_size, max_length, length_penalty, nbest, sampling)
        options = options.checked(len(self.vocab), MAX_LENGTH)
        images, out = list(images), []
        for i in range(0, len(images), batch_size):
            chunk = images[i : i + batch_size]
            pixels = np.stack([self.preprocess(as_image(im)) for im in chunk])
            o = options
            results = self.decode(pixels, o.beam_size, o.max_length, o.length_penalty, o.nbest, o.sampling)
            out += [self._caption(image_name(im, i + j), r) for j, (im, r) in enumerate(zip(chunk, results))]
        return out

    def decode(
        self,
        pixels: np.ndarray,
        beam_size: int = 5,
        max_length: int = MAX_LENGTH,
        length_penalty: float = 0.0,
        nbest: int = 1,
        sampling: dict | None = None,
        timings: dict | None = None,
    ) -> list[search.SearchResult]:
        """Preprocessed images (B, 3, H, W) -> one search result per image; ``timings`` receives the seconds
        of the encoder, init and decode phases and the decode steps."""
        import time

        t0 = time.perf_counter()
        features = self.sessions["encoder"].run({"image": pixels})["features"]  # (B, E)
        t1 = time.perf_counter()
        init = self.sessions["init"].run({"features": features})  # logprobs (B, V), h, c (B, L, H)
        t2 = time.perf_counter()
        step_graph, first = self.sessions["step"], [init["logprobs"]]

        def step(tokens, state, rows):  # tokens (R, K); state h, c (R, K, L, H)
            if first:  # the image's step already ran in init: its distribution answers the first call
                logprobs = first.pop()[rows][:, None]  # (R, 1, V): every beam holds the image's state
                return np.repeat(logprobs, tokens.shape[1], axis=1), state, None
            out = step_graph.run({"tokens": tokens, **state})
            return out["logprobs"], {"h": out["h_next"], "c": out["c_next"]}, None

        state = {"h": init["h"][:, None], "c": init["c"][:, None]}  # (B, 1, L, H): one start beam
        start, end = self.vocab.special["start"], self.vocab.special["end"]  # start is fed, then ignored
        options = (beam_size, max_length, length_penalty, nbest, sampling)
        results = search.run(step, state, len(pixels), start, end, *options)
        if timings is not None:
            steps = max(r.steps for r in results)
            timings.update(encoder=t1 - t0, init=t2 - t1, decode=time.perf_counter() - t2, steps=steps)
        return results

    def _caption(self, name: str, r: search.SearchResult) -> Caption:
        words = self.vocab.decode(r.best.tokens)
        nbest = [(" ".join(self.vocab.decode(h.tokens)), h.score) for h in r.nbest]
        return Caption(name, " ".join(words), words, r.best.tokens, r.best.score, r.best.finished, None, nbest)
