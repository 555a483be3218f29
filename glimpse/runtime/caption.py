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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from glimpse.bundle import Bundle
from glimpse.errors import BundleError, GlimpseError
from glimpse.images import load_image, to_rgb
from glimpse.runtime import search

BACKENDS = ("onnxruntime", "torch", "tensorrt")


@dataclass
class Caption:
    image: str
    caption: str
    words: list[str]
    tokens: list[int]  # <start> ... <end>, as the tutorial's caption_image_beam_search returns them
    score: float  # summed log-prob of the generated tokens
    finished: bool  # False when no hypothesis reached <end> within max_steps (best live one returned)
    alphas: np.ndarray | None = field(default=None, repr=False)  # (generated tokens, S, S)
    nbest: list[tuple[str, float]] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in ("image", "caption", "words", "tokens", "score", "finished")}
        if len(self.nbest) > 1:
            out["nbest"] = [{"caption": c, "score": s} for c, s in self.nbest]
        return out


def open_sessions(
    bundle: Bundle,
    names: list[str],
    backend: str,
    device: str,
    threads: int | None,
    precision: str = "fp32",
    cuda_graphs: bool = False,
) -> dict:
    if backend == "onnxruntime":
        from glimpse.runtime.session import OnnxRuntimeSession

        return {n: OnnxRuntimeSession(bundle.graph_path(n, precision), device, threads) for n in names}
    if backend == "tensorrt":
        from glimpse.runtime.tensorrt import tensorrt_sessions

        return tensorrt_sessions(bundle, names, precision, device if device != "cpu" else "cuda", cuda_graphs)
    if precision != "fp32":
        raise GlimpseError(f"the {backend} backend runs fp32 only; {precision} graphs run on onnxruntime or tensorrt")
    if backend == "torch":
        from glimpse.runtime.torch_backend import torch_sessions

        return torch_sessions(bundle, names, device, threads, cuda_graphs)
    raise GlimpseError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")


class CaptionPipeline:
    def __init__(
        self,
        bundle: str | Path | Bundle,
        backend: str = "onnxruntime",
        device: str = "cpu",
        threads: int | None = None,
        precision: str = "fp32",
        cuda_graphs: bool = True,
    ):
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle(bundle)
        if self.bundle.family != "sat":
            raise BundleError(f"{self.bundle.path}: a '{self.bundle.family}' bundle, not a captioner")
        self.vocab = self.bundle.vocab
        self.preprocess = self.bundle.preprocess
        names = [n for n in ("encoder", "init", "step", "step_fused") if n in self.bundle.graphs]
        self.sessions = open_sessions(self.bundle, names, backend, device, threads, precision, cuda_graphs)
        self.grid = self.bundle.config["encoded_size"]

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
        from glimpse.models.sat import GRAPH_IO
        from glimpse.runtime.torch_backend import TorchSession

        self = cls.__new__(cls)
        self.bundle, self.vocab, self.preprocess, self.grid = None, vocab, preprocess, model.config.encoded_size
        self.sessions = {n: TorchSession(g, *GRAPH_IO[n]) for n, g in model.graphs().items()}
        return self

    def __call__(
        self,
        images,
        beam_size: int = 5,
        max_steps: int = 51,
        length_penalty: float = 0.0,
        nbest: int = 1,
        sampling: dict | None = None,
        batch_size: int = 8,
        fused: bool | None = None,
    ) -> list[Caption]:
        """Caption images (paths, PIL images or HxWx3 uint8 arrays). ``sampling`` (temperature, top_k,
        top_p, seed) replaces beam search by sampling. ``fused``: search over the fused step (the same
        captions; None: where the bundle has one with K = ``beam_size`` slots, or more on a GPU)."""
        if not 1 <= beam_size <= len(self.vocab):
            raise GlimpseError(
                f"beam size must be between 1 and the vocabulary size {len(self.vocab)}, not {beam_size}"
            )
        if max_steps < 1:
            raise GlimpseError(f"max steps must be at least 1, not {max_steps}")
        images = list(images)
        out = []
        for i in range(0, len(images), batch_size):
            chunk = images[i : i + batch_size]
            pixels = np.stack([self.preprocess(_as_image(im)) for im in chunk])
            results = self.decode(pixels, beam_size, max_steps, length_penalty, nbest, sampling, fused=fused)
            out += [self._caption(_name(im, i + j), r) for j, (im, r) in enumerate(zip(chunk, results))]
        return out

    def decode(
        self,
        pixels: np.ndarray,
        beam_size=5,
        max_steps=51,
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
            results = self._fused_search(features, init, beam_size, max_steps, length_penalty, nbest)
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
            if sampling is not None:
                results = search.sample(step, state, len(pixels), start, end, max_steps, **sampling)
            else:
                results = search.beam_search(
                    step, state, len(pixels), start, end, beam_size, max_steps, length_penalty, nbest
                )
        if timings is not None:
            steps = max(r.steps for r in results)
            timings.update(encoder=t1 - t0, init=t2 - t1, decode=time.perf_counter() - t2, steps=steps)
        return results

    def _fused_search(self, features, init, beam_size, max_steps, length_penalty, nbest):
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
        return search.fused_beam_search(session.run_device, feeds, b, max_steps, length_penalty, nbest, session.host)

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


def _as_image(image) -> Image.Image:
    if isinstance(image, (str, Path)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return to_rgb(image)
    array = np.asarray(image)
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):
        return to_rgb(Image.fromarray(array.astype(np.uint8)))
    raise GlimpseError(f"an image array must be HxW or HxWx3 uint8, not shape {array.shape}")


def _name(image, index: int) -> str:
    return str(image) if isinstance(image, (str, Path)) else f"<image {index}>"
