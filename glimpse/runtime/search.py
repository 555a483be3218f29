"""Decoding over a step function: beam search with the SAT tutorial's semantics, greedy, sampling.

Everything is numpy over fixed-shape arrays with B images and K beam slots:

    step(tokens (R, K) int64, state {name: (R, K, ...)}, images (R,))
        -> logprobs (R, K, V), state, alpha (R, K, P) | None

where ``images`` says which of the B images the R rows are: an image whose beams have all finished
leaves the batch, so a batch costs the sum of its captions' lengths, not B times the longest.

The beam search restates caption.py's ``caption_image_beam_search`` for a batch:

* scores are cumulative sums of log-probs; at the first step only beam 0 is expanded (all beams
  hold the same start state); later the top ``width`` of the live beams' width x V candidates win;
* a winner that is ``<end>`` leaves the beam with its raw score and the live width shrinks by one;
* decoding stops when no beam is live or after ``max_length`` steps (51: the tutorial breaks after
  the step that follows step 50);
* the result is the finished hypothesis with the best score (raw sum unless ``length_penalty``);
  where none finished, the best live one (the tutorial crashes there: ``max()`` of an empty list).

Live beams are kept compacted in slots 0..width-1 in rank order, so the step runs on
``max(width)`` slots only and batching never changes a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from glimpse.errors import GlimpseError


@dataclass(frozen=True)
class SearchOptions:
    """How a captioner decodes. Each option has this one name in the Python API (the captioning pipelines'
    keywords), the CLI (--beam-size, --max-length, --length-penalty, --nbest) and the HTTP API (the form
    fields of /v1/caption)."""

    beam_size: int = 5
    max_length: int | None = None  # most tokens generated; None: the family's default
    length_penalty: float = 0.0  # rank by score / length**P; 0: the raw sum, as the public code ranks
    nbest: int = 1  # the N best captions, best first
    sampling: dict | None = None  # temperature, top_k, top_p, seed: sampling instead of beam search

    def checked(self, vocab_size: int, default_length: int, longest: int | None = None) -> SearchOptions:
        """These options with ``max_length`` filled in (``default_length``), once the beam size and length
        are known to fit a vocabulary of ``vocab_size`` and (where the model has one) a ``longest`` length."""
        if not 1 <= self.beam_size <= vocab_size:
            raise GlimpseError(
                f"beam size must be between 1 and the vocabulary size {vocab_size}, not {self.beam_size}"
            )
        max_length = default_length if self.max_length is None else self.max_length
        if max_length < 1:
            raise GlimpseError(f"max length must be at least 1, not {max_length}")
        if longest is not None and max_length > longest:
            raise GlimpseError(f"max length must be between 1 and {longest} (the position table)")
        return replace(self, max_length=max_length)


@dataclass
class Hypothesis:
    tokens: list[int]  # generated tokens, with <end> if it finished (start token not included)
    score: float  # sum of log-probs of ``tokens``
    finished: bool
    alphas: np.ndarray | None = None  # (len(tokens), P) attention of each generated token

    def ranked(self, length_penalty: float) -> float:
        return ranked(self.score, len(self.tokens), length_penalty)


def ranked(score: float, length: int, length_penalty: float) -> float:
    """What hypotheses are ordered by: the raw score, or with ``length_penalty`` P, score / length**P."""
    return score / (length**length_penalty) if length_penalty else score


@dataclass
class SearchResult:
    best: Hypothesis
    nbest: list[Hypothesis] = field(default_factory=list)
    steps: int = 0


def gather_beams(x: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """x (B, K, ...) reordered along K by parents (B, K') -> (B, K', ...)."""
    return x[np.arange(len(x))[:, None], parents]  # fancy indexing: a fraction of take_along_axis's overhead


def top_k(x: np.ndarray, k: int) -> np.ndarray:
    """x (B, N) -> indices (B, k) of the k largest per row, best first, ties to the lower index: exactly the
    first k of a stable descending argsort, at the cost of a partition (a sort of M2's 5 x 10,201 candidates
    was 4.5 ms a row, most of its step on the host)."""
    n = x.shape[1]
    if k >= n:
        return np.argsort(-x, axis=1, kind="stable")[:, :k]
    kth = np.partition(x, n - k, axis=1)[:, n - k]  # (B,): the k-th largest value of each row
    out = np.empty((len(x), k), np.int64)
    for b, row in enumerate(x):
        chosen = np.flatnonzero(row >= kth[b])  # every value above the k-th, and all its ties, index order
        out[b] = chosen[np.argsort(-row[chosen], kind="stable")[:k]]
    return out


def top_candidates(scores: np.ndarray, logprobs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best k continuations per image over all live beams.

    scores (B, K) cumulative (-inf for slots not to expand), logprobs (B, K, V)
    -> new scores (B, k), parents (B, k), tokens (B, k); best first, ties to the lower flat index.
    """
    b, kk, v = logprobs.shape
    if k < v:  # a beam's k best words are its only candidates: select within beams first, on float32
        words = np.argpartition(logprobs, v - k, axis=2)[..., v - k :]  # (B, K, k), unordered
        lp = np.take_along_axis(logprobs, words, axis=2)
    else:
        words, lp = np.broadcast_to(np.arange(v), logprobs.shape), logprobs
    cand = (scores[:, :, None] + lp).reshape(b, -1)  # (B, K*k) cumulative
    flat = (np.arange(kk)[None, :, None] * v + words).reshape(b, -1)  # their indices in K x V
    order = np.lexsort((flat, -cand), axis=1)[:, :k]  # by value descending, then index
    idx = np.take_along_axis(flat, order, axis=1)
    return np.take_along_axis(cand, order, axis=1), idx // v, idx % v


def beam_search(
    step,
    state: dict[str, np.ndarray],
    batch: int,
    start: int,
    end: int,
    beam_size: int = 5,
    max_length: int = 51,
    length_penalty: float = 0.0,
    nbest: int = 1,
) -> list[SearchResult]:
    """Tutorial-semantics beam search for ``batch`` images; ``state`` arrays are (B, 1 or K, ...).

    The arrays below hold one row per image still decoding (R <= B); ``images`` (R,) names them."""
    k = beam_size
    state = {n: np.repeat(s, k, axis=1) if s.shape[1] == 1 else s for n, s in state.items()}  # (R, K, ...)
    images = np.arange(batch)
    tokens = np.full((batch, k), start, np.int64)
    scores = np.full((batch, k), -np.inf)
    scores[:, 0] = 0.0  # step 1 expands beam 0 only
    width = np.full(batch, k)  # live beams per image
    seqs = np.zeros((batch, k, 0), np.int64)
    alphas: np.ndarray | None = None
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    steps = 0
    while steps < max_length and len(images):
        steps += 1
        w = int(width.max())  # live beams sit in slots 0..width-1: run the step on w slots only
        logprobs, new_state, alpha = step(tokens[:, :w], {n: s[:, :w] for n, s in state.items()}, images)
        scores = scores.astype(logprobs.dtype, copy=False)  # sums in the model's precision, as the tutorial's
        new_scores, parents, words = top_candidates(scores[:, :w], logprobs, w)
        rank = np.arange(w)[None, :]
        chosen = rank < width[:, None]  # an image with width j keeps its j best
        ended = chosen & (words == end)
        live = chosen & ~ended

        seqs = np.concatenate([gather_beams(seqs, parents), words[:, :, None]], axis=2)  # (R, w, t)
        if alpha is not None:
            a = gather_beams(alpha, parents)[:, :, None]  # (R, w, 1, P)
            alphas = a if alphas is None else np.concatenate([gather_beams(alphas[:, :w], parents), a], axis=2)
        for r, j in zip(*np.nonzero(ended)):
            finished[images[r]].append(
                Hypothesis(seqs[r, j].tolist(), float(new_scores[r, j]), True, None if alphas is None else alphas[r, j])
            )

        # compact the live beams to the front, in rank order, and drop the images with none left
        keep = np.argsort(~live, axis=1, kind="stable")  # (R, w): live slots first
        width = live.sum(axis=1)
        scores = np.full((len(images), k), -np.inf, new_scores.dtype)
        scores[:, :w] = np.where(gather_beams(live, keep), gather_beams(new_scores, keep), -np.inf)
        tokens[:, :w] = gather_beams(words, keep)
        src = gather_beams(parents, keep)  # state rows of the kept beams' parents
        state = {n: _set_front(s, gather_beams(new_state[n], src)) for n, s in state.items()}
        seqs = gather_beams(seqs, keep)
        if alphas is not None:
            alphas = gather_beams(alphas, keep)
        if not width.all():
            rows = width > 0
            images, width, scores, tokens, seqs = images[rows], width[rows], scores[rows], tokens[rows], seqs[rows]
            state = {n: s[rows] for n, s in state.items()}
            alphas = None if alphas is None else alphas[rows]

    results = []
    for b in range(batch):
        pool = sorted(finished[b], key=lambda h: -h.ranked(length_penalty))
        if not pool:  # nothing finished (max_length reached): fall back to the live beams
            (r,) = np.nonzero(images == b)[0]
            pool = [
                Hypothesis(seqs[r, j].tolist(), float(scores[r, j]), False, None if alphas is None else alphas[r, j])
                for j in range(seqs.shape[1])
                if np.isfinite(scores[r, j])
            ]
            pool.sort(key=lambda h: -h.ranked(length_penalty))
        results.append(SearchResult(pool[0], pool[:nbest], steps))
    return results


# The fused step's outputs read at the end, one (B, K, ...) array a step (each step's outputs are kept whole).
KEPT = ("next_tokens", "parents", "next_scores", "ended", "alpha")
# The fused step's outputs that are the next step's inputs: input name -> output name.
FED_BACK = {"tokens": "next_tokens", "scores": "next_scores", "width": "next_width", "h": "h_next", "c": "c_next"}


def fused_beam_search(
    step,
    feeds: dict,
    batch: int,
    max_length: int = 51,
    length_penalty: float = 0.0,
    nbest: int = 1,
    host=np.asarray,
) -> list[SearchResult]:
    """``beam_search`` over a step that selects its own beams (``glimpse.families.sat.model.FusedStepGraph``):

        step(feeds) -> {next_tokens, parents, next_scores, ended (B, K), next_width (B,), h_next, c_next, alpha}

    ``feeds``: the first step's inputs, {features, att_proj, tokens (B, K) all <start>, h, c (B, K, D),
    scores (B, K) 0 in slot 0 and -inf elsewhere, width (B,) the beam size}. The arrays may live on a
    device: each step reads back only ``next_width`` (through ``host``, which makes a numpy array of
    one); the tokens, parents, scores, ended flags and attention of every step stay where they are
    until the end, where the hypotheses are read by following the parents back. The results equal
    ``beam_search``'s at the same beam size, finished hypotheses in the same order."""
    kept = []
    for _ in range(max_length):
        out = step(feeds)
        kept.append(out)
        width = host(out["next_width"])
        if not width.any():
            break
        feeds = {**feeds, **{n: out[o] for n, o in FED_BACK.items()}}
    table = {n: np.stack([host(k[n]) for k in kept]) for n in KEPT}  # (T, B, K, ...)
    last = len(kept) - 1
    results = []
    for b in range(batch):
        # rank by score first and follow the parents of the n best only: a caption's end was most of its host time
        pool = [(t, j, True) for t, j in np.argwhere(table["ended"][:, b]).tolist()]  # step, then rank, order
        if not pool:  # nothing finished: the live beams of the last step
            pool = [(last, j, False) for j in range(width[b]) if np.isfinite(table["next_scores"][last, b, j])]
        scores = table["next_scores"][:, b].tolist()  # (T, K) Python floats, as Hypothesis holds them
        pool.sort(key=lambda p: -ranked(scores[p[0]][p[1]], p[0] + 1, length_penalty))  # stable
        best = [_backtrack(table, t, b, j, finished) for t, j, finished in pool[:nbest]]
        results.append(SearchResult(best[0], best, len(kept)))
    return results


def _backtrack(table: dict, t: int, b: int, j: int, finished: bool) -> Hypothesis:
    """The hypothesis in slot j of image b after step t, read from the per-step table by its parents."""
    parents = table["parents"][: t + 1, b].tolist()  # (t+1, K)
    slots = [j]
    for s in range(t, 0, -1):
        slots.append(parents[s][slots[-1]])
    slots.reverse()  # slots[s]: where the hypothesis sat after step s
    steps = np.arange(t + 1)
    tokens = table["next_tokens"][steps, b, slots].tolist()
    return Hypothesis(tokens, float(table["next_scores"][t, b, j]), finished, table["alpha"][steps, b, slots])


def _set_front(full: np.ndarray, front: np.ndarray) -> np.ndarray:
    out = full.copy()
    out[:, : front.shape[1]] = front
    return out


def run(
    step, state, batch, start, end, beam_size=5, max_length=51, length_penalty=0.0, nbest=1, sampling=None
) -> list[SearchResult]:
    """The search a captioning pipeline asks for: sampling where ``sampling`` (temperature, top_k, top_p, seed)
    is given, else beam search (greedy at beam 1)."""
    if sampling is not None:
        return sample(step, state, batch, start, end, max_length, **sampling)
    return beam_search(step, state, batch, start, end, beam_size, max_length, length_penalty, nbest)


def greedy(step, state, batch, start, end, max_length=51) -> list[SearchResult]:
    """The most probable token at each step: the tutorial's beam search with one beam."""
    return beam_search(step, state, batch, start, end, beam_size=1, max_length=max_length)


def sample(
    step,
    state: dict[str, np.ndarray],
    batch: int,
    start: int,
    end: int,
    max_length: int = 51,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
) -> list[SearchResult]:
    """Ancestral sampling from softmax(logprobs / temperature), restricted to the top_k tokens and the
    smallest set whose probability reaches top_p. Scores are the model's own (untempered) log-probs."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0 (use greedy for temperature 0)")
    rng = np.random.default_rng(seed)
    state = {n: s[:, :1] for n, s in state.items()}
    tokens = np.full((batch, 1), start, np.int64)
    seqs: list[list[int]] = [[] for _ in range(batch)]
    score = np.zeros(batch)
    live = np.ones(batch, bool)
    alphas: list[list[np.ndarray]] = [[] for _ in range(batch)]
    steps = 0
    while steps < max_length and live.any():
        steps += 1
        logprobs, state, alpha = step(tokens, state, np.arange(batch))
        lp = logprobs[:, 0].astype(np.float64)  # (B, V)
        x = lp / temperature
        if top_k:
            kth = np.sort(x, axis=1)[:, -min(top_k, x.shape[1])][:, None]
            x = np.where(x < kth, -np.inf, x)
        p = np.exp(x - x.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        if top_p < 1.0:
            order = np.argsort(-p, axis=1, kind="stable")
            sorted_p = np.take_along_axis(p, order, 1)
            drop = np.cumsum(sorted_p, axis=1) - sorted_p >= top_p  # keep through the token that reaches top_p
            np.put_along_axis(p, order, np.where(drop, 0.0, sorted_p), 1)
            p /= p.sum(axis=1, keepdims=True)
        words = np.array([rng.choice(p.shape[1], p=p[b]) for b in range(batch)])
        for b in np.nonzero(live)[0]:
            seqs[b].append(int(words[b]))
            score[b] += lp[b, words[b]]
            if alpha is not None:
                alphas[b].append(alpha[b, 0])
        live &= words != end
        tokens = words[:, None].astype(np.int64)
    return [
        SearchResult(
            h := Hypothesis(
                seqs[b], float(score[b]), seqs[b][-1:] == [end], np.stack(alphas[b]) if alphas[b] else None
            ),
            [h],
            steps,
        )
        for b in range(batch)
    ]
