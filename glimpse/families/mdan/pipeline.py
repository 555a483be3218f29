"""MatchPipeline: an m-DAN bundle, a backend, images and sentences in, embeddings and similarities out.

    pipe = MatchPipeline("mdan-bundle")                          # ONNX Runtime on the CPU
    pipe.scores(["a.jpg", "b.jpg"], ["a red circle", "two dogs"])  # (2, 2): S = <z_v, z_u>
    pipe.embed_images(files), pipe.embed_texts(sentences)          # (N, D), (M, D) float32

The similarity of an image and a sentence is the inner product of their embeddings, so a gallery is
embedded once (``glimpse index``) and searched with an inner-product index.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from glimpse.bundle import Bundle
from glimpse.families.mdan.checkpoint import tokenize
from glimpse.images import as_image
from glimpse.runtime.pipeline import Pipeline
from glimpse.runtime.text import Read, pad, read


class MatchPipeline(Pipeline):
    families, graphs, what = ("mdan",), ("encoder", "image_embed", "text_embed"), "an image-text matching model"

    def __init__(self, bundle: str | Path | Bundle, *args, **options):
        super().__init__(bundle, *args, **options)
        self.preprocess = self.bundle.preprocess
        config = self.bundle.config
        self.max_words = config["max_sentence_length"]
        self.dim = (config["hops"] + 1) * config["features"]  # of z_v and z_u

    @staticmethod
    def torch_modules(bundle: Bundle) -> dict:
        from glimpse.families.mdan.model import MDAN, MDANConfig
        from glimpse.runtime.torch_backend import reference_module

        return reference_module(MDAN(MDANConfig(**bundle.config)), bundle).graphs()

    def embed_images(self, images: Iterable, batch_size: int = 32) -> np.ndarray:
        """Images (paths, PIL images or HxWx3 uint8 arrays) -> z_v (N, D) float32."""
        images, out = list(images), []
        for i in range(0, len(images), batch_size):
            pixels = np.stack([self.preprocess(as_image(im)) for im in images[i : i + batch_size]])
            grid = self.sessions["encoder"].run({"image": pixels})["grid"]
            out.append(self.sessions["image_embed"].run({"grid": grid})["image_embedding"])
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def embed_texts(self, texts: Iterable[str], batch_size: int = 256) -> np.ndarray:
        """Sentences -> z_u (M, D) float32; unknown words read as id 0, long sentences cut (warned)."""
        reads, out = [self.read(t) for t in texts], []
        for i in range(0, len(reads), batch_size):
            tokens, lengths = pad([r.ids for r in reads[i : i + batch_size]])
            out.append(self.sessions["text_embed"].run({"tokens": tokens, "lengths": lengths})["text_embedding"])
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def scores(self, images: Iterable, texts: Iterable[str]) -> np.ndarray:
        """Similarities (N images, M sentences)."""
        return self.embed_images(images) @ self.embed_texts(texts).T

    def read(self, sentence: str) -> Read:
        return read(sentence, tokenize, self.vocab, self.max_words, what="sentence")
