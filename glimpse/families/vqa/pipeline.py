"""VQAPipeline: a VQA bundle (saaa, san, rdan, naive), a backend, (image, question) pairs in, answers out.

    pipe = VQAPipeline("saaa-bundle")                               # ONNX Runtime on the CPU
    [a] = pipe.ask("photo.jpg", ["what colour is the bus?"])
    a.answer, a.answers, a.glimpses                                 # top-k (answer, p); (G, h, w) maps

Each distinct image goes through the encoder once for all of its questions; questions are batched,
padded to the longest, and read with their lengths, so a batch answers exactly as one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from glimpse.bundle import Bundle
from glimpse.errors import GlimpseError
from glimpse.families.vqa import NAMES
from glimpse.families.vqa.checkpoint import tokenize
from glimpse.images import as_image, image_name
from glimpse.runtime.pipeline import Pipeline
from glimpse.runtime.text import Read, pad, read
from glimpse.vocab import Vocab


@dataclass
class Answer:
    image: str
    question: str
    answers: list[tuple[str, float]]  # the top k, most probable first: (answer, softmax probability)
    words: list[str]  # the words the model read (after truncation)
    unknown: list[str] = field(default_factory=list)  # of those, words it does not know (read as <unk>)
    truncated: bool = False  # the question was longer than the model's limit
    glimpses: np.ndarray | None = field(default=None, repr=False)  # (G, h, w) image attention maps

    @property
    def answer(self) -> str:
        return self.answers[0][0]

    @property
    def no_known_words(self) -> bool:
        return len(self.unknown) == len(self.words)

    def to_json(self) -> dict:
        out = {"image": self.image, "question": self.question, "answer": self.answer}
        out["answers"] = [{"answer": a, "probability": p} for a, p in self.answers]
        if self.unknown:
            out["unknown_words"] = self.unknown
        if self.truncated:
            out["truncated_to"] = len(self.words)
        return out


class VQAPipeline(Pipeline):
    families, graphs, what = NAMES, ("encoder", "question", "head"), "a VQA model"

    def __init__(self, bundle: str | Path | Bundle, *args, **options):
        super().__init__(bundle, *args, **options)
        self.answers = Vocab.load(self.bundle.path / self.bundle.manifest["answers"])
        self.preprocess = self.bundle.preprocess
        self.max_words = self.bundle.config["max_question_length"]
        self.head_inputs = [v["name"] for v in self.bundle.graphs["head"]["inputs"]]

    @staticmethod
    def torch_modules(bundle: Bundle) -> dict:
        from glimpse.families.vqa.checkpoint import model_class
        from glimpse.runtime.torch_backend import reference_module

        model = model_class(bundle.family)
        return reference_module(model(model.Config(**bundle.config)), bundle).graphs()

    def ask(self, image, questions: list[str], top_k: int = 5) -> list[Answer]:
        """Answer ``questions`` about one image (a path, PIL image or HxWx3 uint8 array)."""
        return self([(image, q) for q in questions], top_k=top_k)

    def __call__(self, pairs, top_k: int = 5, batch_size: int = 32) -> list[Answer]:
        """Answer (image, question) pairs; an image that appears in several pairs (the same path or
        the same object) is encoded once."""
        pairs = list(pairs)
        if top_k < 1:
            raise GlimpseError(f"top-k must be at least 1, not {top_k}")
        keys = [str(im) if isinstance(im, (str, Path)) else id(im) for im, _ in pairs]
        first = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        order = list(first)  # distinct images, in order of first appearance
        pixels = np.stack([self.preprocess(as_image(pairs[first[k]][0])) for k in order])
        grids = np.concatenate(
            [
                self.sessions["encoder"].run({"image": pixels[i : i + batch_size]})["grid"]
                for i in range(0, len(pixels), batch_size)
            ]
        )
        row = {k: i for i, k in enumerate(order)}
        out = []
        for i in range(0, len(pairs), batch_size):
            chunk = range(i, min(i + batch_size, len(pairs)))
            texts = [self.read(pairs[j][1]) for j in chunk]
            logits, glimpses = self.answer_batch(grids[[row[keys[j]] for j in chunk]], [r.ids for r in texts])
            probs = _softmax(logits)
            for n, j in enumerate(chunk):
                best = np.argsort(-probs[n], kind="stable")[:top_k]
                t = texts[n]
                out.append(
                    Answer(
                        image_name(pairs[j][0], first[keys[j]]),
                        pairs[j][1],
                        [(self.answers.itos[a], float(probs[n, a])) for a in best],
                        t.words,
                        t.unknown,
                        t.truncated,
                        glimpses[n],
                    )
                )
        return out

    def read(self, question: str) -> Read:
        return read(question, tokenize, self.vocab, self.max_words)

    def answer_batch(self, grids: np.ndarray, questions: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """grids (N, C, h, w) and N token lists -> logits (N, A), glimpses (N, G, h, w)."""
        tokens, lengths = pad(questions)
        encoded = self.sessions["question"].run({"tokens": tokens, "lengths": lengths})
        feed = {**encoded, "grid": grids, "lengths": lengths}
        out = self.sessions["head"].run({name: feed[name] for name in self.head_inputs})
        return out["logits"], out["glimpses"]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
