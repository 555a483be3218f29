"""CaptionPipeline: a sat bundle, a backend, images in, captions out.

    pipe = CaptionPipeline("sat-bundle")                      # ONNX Runtime on the CPU
    [cap] = pipe(["photo.jpg"], beam_size=5)
    cap.caption, cap.tokens, cap.score, cap.alphas            # alphas: (words, S, S) attention maps

Per batch of images: preprocess -> encoder -> init (once per image) -> search over the step graph.
On a GPU (backend torch or tensorrt, device cuda) the search runs over the fused step instead: beam
state stays on the device, each step is one replayed CUDA graph, and a step reads back (B,) widths;
on a CPU too at beam size K, where in-graph selection is cheaper than the host's.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from glimpse.bundle import Bundle
from glimpse.errors import GlimpseError
from glimpse.images import as_image, image_name
from glimpse.runtime import search
from glimpse.runtime.pipeline import Caption, Pipeline

MAX_LENGTH = 51  # tokens generated at most by default: the tutorial's caption.py


class CaptionPipeline(Pipeline):
    families, graphs, what = ("sat",), ("encoder", "init", "step", "step_fused"), "a captioner"

    def __init__(self, bundle: str | Path | Bundle, *args, **options):
        super().__init__(bundle, *args, **options)
        self.preprocess = self.bundle.preprocess
        self.grid = self.bundle.config["encoded_size"]

    @staticmethod
    def torch_modules(bundle: Bundle) -> dict:
        from glimpse.families.sat.model import SATConfig, ShowAttendTell
        from glimpse.runtime.torch_backend import reference_module

        model = reference_module(ShowAttendTell(SATConfig(**bundle.config)), bundle)
        return model.graphs(end=bundle.manifest["special_tokens"]["end"])

    @property
    def fused_beam(self) -> int:
        """The fused step's K, the largest beam it serves (0 without one)."""
        if "step_fused" not in self.sessions:
            return 0
        tokens = next(v for v in self.bundle.graphs["step_fused"]["inputs"] if v["name"] == "tokens")
        return tokens["shape"][1]  # (batch, K)

    @classmethod
    def from_model(cls, model, vocab, preprocess) -> CaptionPipeline:
        """Over an in-memory ShowAttendTell on the torch backend, without a bundle (validation in training)."""
        from glimpse.families.sat.model import GRAPH_IO
        from glimpse.runtime.torch_backend import TorchSession

        self = cls.__new__(cls)
        self.bundle, self.vocab, self.preprocess, self.grid = None, vocab, preprocess, model.config.encoded_size
        self.sessions = {n: TorchSession(g, *GRAPH_IO[n]) for n, g in model.graphs().items()}
        return self

    def __call__(
        self,
        images,
        beam_size: int = 5,
        max_length: int | None = None,
        length_penalty: float = 0.0,
        nbest: int = 1,
        sampling: dict | None = None,
        batch_size: int = 8,
        fused: bool | None = None,
    ) -> list[Caption]:
        """Caption images (paths, PIL images or HxWx3 uint8 arrays). ``sampling`` (temperature, top_k,
        top_p, seed) replaces beam search by sampling; ``max_length``: most tokens generated (default 51, the
        tutorial's). ``fused``: search over the fused step (the same captions; None: where the bundle has
        one with K = ``beam_size`` slots, or more on a GPU)."""
        o = search.SearchOptions(beam_size, max_length, length_penalty, nbest, sampling)
        max_length = o.checked(len(self.vocab), MAX_LENGTH).max_length
        images = list(images)
        out = []
        for i in range(0, len(images), batch_size):
            chunk = images[i : i + batch_size]
            pixels = np.stack([self.preprocess(as_image(im)) for im in chunk])
            results = self.decode(pixels, beam_size, max_length, length_penalty, nbest, sampling, fused=fused)
            out += [self._caption(image_name(im, i + j), r) for j, (im, r) in enumerate(zip(chunk, results))]
        return out

    def decode(
        self,
        pixels: np.ndarray,
        beam_size=5,
        max_length=51,
        length_penalty=0.0,
        nbest=1,
        sampling=None,
        timings=None,
        fused: bool | None = None,
    ) -> list[search.SearchResult]:
        """Preprocessed images (B, 3, H, W) -> one search result per image. ``timings``, a dict, receives
        the seconds spent in the encoder, init and decode phases and the number of decode steps."""
        if fused is None:  # on a CPU, K slots for fewer beams cost more than the host selection it saves
            on_gpu = self.sessions["step"].device != "cpu"
            fused = sampling is None and (beam_size == self.fused_beam or on_gpu and beam_size < self.fused_beam)
        elif fused and not (sampling is None and beam_size <= self.fused_beam):
            raise GlimpseError(
                f"the fused step runs beam search with up to {self.fused_beam} beams"
                f" ({'sampling asked' if sampling else f'beam size {beam_size}'}); export with --fused-beam"
            )
        wait = self.sessions["encoder"].synchronize if timings is not None else lambda: None  # time device work
        t0 = time.perf_counter()
        # encoder and init outputs stay on the sessions' device: the step reads them at every step
        features = self.sessions["encoder"].run_device({"image": pixels})["features"]  # (B, P, E)
        wait()
        t1 = time.perf_counter()
        init = self.sessions["init"].run_device({"features": features})  # att_proj (B, P, A), h, c (B, D)
        wait()
        t2 = time.perf_counter()
        start, end = self.vocab.special["start"], self.vocab.special["end"]
        if fused:
            results = self._fused_search(features, init, beam_size, max_length, length_penalty, nbest)
        else:
            step_graph = self.sessions["step"]
            current = {"rows": len(pixels), "features": features, "att_proj": init["att_proj"]}

            def step(tokens, state, rows):
                if len(rows) != current["rows"]:  # images left the batch: gather theirs, once per change
                    current.update(rows=len(rows), features=features[rows], att_proj=init["att_proj"][rows])
                feeds = {"features": current["features"], "att_proj": current["att_proj"], "tokens": tokens, **state}
                out = {n: step_graph.host(x) for n, x in step_graph.run_device(feeds).items()}
                return out["logprobs"], {"h": out["h_next"], "c": out["c_next"]}, out["alpha"]

            host = self.sessions["init"].host
            state = {"h": host(init["h"])[:, None], "c": host(init["c"])[:, None]}  # (B, 1, D): one start beam
            options = (beam_size, max_length, length_penalty, nbest, sampling)
            results = search.run(step, state, len(pixels), start, end, *options)
        if timings is not None:
            steps = max(r.steps for r in results)
            timings.update(encoder=t1 - t0, init=t2 - t1, decode=time.perf_counter() - t2, steps=steps)
        return results

    def _fused_search(self, features, init, beam_size, max_length, length_penalty, nbest):
        """Beam search over the fused step: K slots, of which the first ``beam_size`` start live."""
        session, k, b = self.sessions["step_fused"], self.fused_beam, len(features)
        scores = np.full((b, k), -np.inf, np.float32)
        scores[:, 0] = 0.0  # step 1 expands beam 0 only
        feeds = {
            "features": features,
            "att_proj": init["att_proj"],
            "tokens": np.full((b, k), self.vocab.special["start"], np.int64),
            "h": _beams(init["h"], k),
            "c": _beams(init["c"], k),
            "scores": scores,
            "width": np.full(b, beam_size, np.int64),
        }
        return search.fused_beam_search(session.run_device, feeds, b, max_length, length_penalty, nbest, session.host)

    def _caption(self, name: str, r: search.SearchResult) -> Caption:
        start = self.vocab.special["start"]
        words = self.vocab.decode(r.best.tokens)
        alphas = None if r.best.alphas is None else r.best.alphas.reshape(-1, self.grid, self.grid)
        return Caption(
            name,
            " ".join(words),
            words,
            [start] + r.best.tokens,
            r.best.score,
            r.best.finished,
            alphas,
            [(" ".join(self.vocab.decode(h.tokens)), h.score) for h in r.nbest],
        )


def _beams(x, k: int):
    """(B, D) -> (B, K, D): K copies of each image's start state, numpy or a device tensor."""
    return np.repeat(x[:, None], k, axis=1) if isinstance(x, np.ndarray) else x[:, None].repeat(1, k, 1)
