"""M2Pipeline: an m2 bundle, a backend, detection features in, captions out.

    pipe = M2Pipeline("m2-bundle")                       # ONNX Runtime on the CPU
    [cap] = pipe(["391895.npy"], beam_size=5)            # or (n, 2048) arrays, or "detections.hdf5:391895"
    cap.caption, cap.tokens, cap.score

Per batch: each image's regions zero-padded or truncated to R (50), as the public loader does ->
encoder -> init (the cross-attention keys and values, once per image) -> M2's beam search
(glimpse.families.m2.search) over the step graph, whose self-attention caches are buffers of max_len
positions written at the step's position: one shape for the whole decode.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from glimpse.bundle import Bundle
from glimpse.errors import GlimpseError
from glimpse.families.m2 import search as m2_search
from glimpse.runtime.pipeline import Caption, Pipeline
from glimpse.runtime.regions import HDF5_SUFFIXES, hdf5_images, load_regions, pad_regions  # noqa: F401
from glimpse.runtime.search import SearchOptions

MAX_LENGTH = 20  # tokens generated at most by default: the public test script's


def empty_cache(batch: int, beams: int, config: dict, positions: int) -> dict[str, np.ndarray]:
    """Self-attention caches before the first step, every slot masked: self_keys/values
    (B, K, layers, H, T, d), self_mask (B, K, T). Any T >= the steps to come gives the same results."""
    c = config
    shape = (batch, beams, c["layers"], c["heads"], positions, c["d_model"] // c["heads"])
    return {
        "self_keys": np.zeros(shape, np.float32),
        "self_values": np.zeros(shape, np.float32),
        "self_mask": np.ones((batch, beams, positions), bool),
    }


class M2Pipeline(Pipeline):
    families, graphs, what = ("m2",), ("encoder", "init", "step"), "an m2 captioner"

    def __init__(self, bundle: str | Path | Bundle, *args, **options):
        super().__init__(bundle, *args, **options)
        self.config = self.bundle.config

    @staticmethod
    def torch_modules(bundle: Bundle) -> dict:
        from glimpse.families.m2.model import M2, M2Config
        from glimpse.runtime.torch_backend import reference_module

        return reference_module(M2(M2Config(**bundle.config)), bundle).graphs()

    def __call__(
        self,
        features,
        beam_size: int = 5,
        max_length: int | None = None,
        length_penalty: float = 0.0,
        nbest: int = 1,
        collapse_repeats: bool = False,
        batch_size: int = 8,
    ) -> list[Caption]:
        """Caption images given as their detection features (see ``load_regions``), with at most
        ``max_length`` tokens (default 20, the public test script's). ``collapse_repeats``: one word for a
        run of equal words, as the public test script prints captions."""
        if length_penalty:
            raise GlimpseError("M2 ranks captions by raw summed log-prob: length_penalty must be 0")
        o = SearchOptions(beam_size, max_length, length_penalty, nbest)
        max_length = o.checked(len(self.vocab), MAX_LENGTH, self.config["max_len"]).max_length
        if not 1 <= nbest <= beam_size:
            raise GlimpseError(f"nbest must be between 1 and the beam size {beam_size}, not {nbest}")
        features = list(features)
        out = []
        for i in range(0, len(features), batch_size):
            chunk = features[i : i + batch_size]
            regions = np.stack([pad_regions(load_regions(f), self.config["regions"]) for f in chunk])
            if regions.shape[2] != self.config["d_in"]:
                raise GlimpseError(
                    f"regions have {regions.shape[2]} features each; the model reads {self.config['d_in']}"
                )
            results = self.decode(regions, beam_size, max_length, nbest)
            for j, (source, r) in enumerate(zip(chunk, results)):
                name = str(source) if isinstance(source, (str, Path)) else f"<regions {i + j}>"
                out.append(self._caption(name, r, collapse_repeats))
        return out

    def decode(self, regions: np.ndarray, beam_size: int, max_length: int, nbest: int = 1):
        """regions (B, R, d_in) float32 -> one m2_search.SearchResult per image."""
        encoded = self.sessions["encoder"].run({"regions": regions})  # levels (B, L, R, D), mask (B, 1, 1, R)
        images = self.sessions["init"].run({"levels": encoded["levels"]}) | {"mask": encoded["mask"]}
        step_graph = self.sessions["step"]

        def step(tokens, t, cache):
            out = step_graph.run({"tokens": tokens, "position": np.array([t]), **images, **cache})
            return out["logprobs"], {n: out[f"{n}_next"] for n in cache}

        cache = empty_cache(len(regions), 1, self.config, max_length)
        special = self.vocab.special
        return m2_search.beam_search(
            step, cache, len(regions), special["start"], special["end"], beam_size, max_length, nbest
        )

    def _caption(self, name: str, r, collapse_repeats: bool) -> Caption:
        def text(tokens):
            words = self.vocab.decode(tokens)
            return [w for w, _ in itertools.groupby(words)] if collapse_repeats else words

        words = text(r.best.tokens)
        nbest = [(" ".join(text(h.tokens)), h.score) for h in r.nbest]
        return Caption(name, " ".join(words), words, r.best.tokens, r.best.score, r.best.finished, None, nbest)
