"""The Meshed-Memory Transformer's beam search (models/beam_search/beam_search.py of
aimagelab/meshed-memory-transformer) for a batch of images, over a step function on numpy arrays:

    step(tokens (B, k) int64, t, state {name: (B, k, ...)}) -> logprobs (B, k, V), state

with k = 1 at the first step (every beam would hold the same start) and K after. Its rules, which differ
from the SAT tutorial's (glimpse.runtime.search):

* the width is fixed: K beams per image at every step, finished or not;
* a beam that emitted ``<eos>`` carries on with token 0 at an unchanged score: its candidate 0 keeps the
  score and its others score -999 (so scores are exact while they stay above -999, as upstream);
* candidates are ranked by a full sort, descending, ties to the lower index (upstream's unstable
  ``torch.sort`` leaves ties to the kernel); the winner has the best raw summed log-prob;
* ``max_length`` steps (20 in the public test script). The search stops once every beam of every image has
  finished, which changes nothing: each later step would append token 0 to every beam in place.

A hypothesis's tokens run up to and including its first ``<eos>``.
"""

from __future__ import annotations

import numpy as np

from glimpse.runtime.search import Hypothesis, SearchResult, gather_beams, top_k

CARRIED = -999.0  # upstream's score for a finished beam's candidates other than token 0


def beam_search(
    step, state: dict, batch: int, bos: int, eos: int, beam_size: int = 5, max_length: int = 20, out_size: int = 1
) -> list[SearchResult]:
    k = beam_size
    tokens = np.full((batch, 1), bos, np.int64)
    scores = np.zeros((batch, 1), np.float32)  # summed log-probs
    live = np.ones((batch, 1), bool)  # not finished (upstream's seq_mask)
    seqs = np.zeros((batch, 1, 0), np.int64)
    steps = 0
    while steps < max_length:
        logprobs, state = step(tokens, steps, state)  # (B, k, V)
        steps += 1
        v = logprobs.shape[-1]
        candidates = scores[:, :, None] + logprobs  # (B, k, V)
        if steps > 1:
            live &= tokens != eos
            carried = np.full_like(candidates, CARRIED)
            carried[:, :, 0] = scores
            candidates = np.where(live[:, :, None], candidates, carried)
        flat = candidates.reshape(batch, -1)
        order = top_k(flat, k)  # (B, K): best first, ties to the lower index
        scores = np.take_along_axis(flat, order, 1)
        parents, tokens = order // v, order % v
        state = {n: gather_beams(s, parents) for n, s in state.items()}
        live = gather_beams(live, parents)
        seqs = np.concatenate([gather_beams(seqs, parents), tokens[:, :, None]], axis=2)  # (B, K, steps)
        if not (live & (tokens != eos)).any():
            break

    results = []
    for b in range(batch):
        ranked = np.argsort(-scores[b], kind="stable")[:out_size]
        nbest = [_hypothesis(seqs[b, j], scores[b, j], eos) for j in ranked]
        results.append(SearchResult(nbest[0], nbest, steps))
    return results


def _hypothesis(tokens: np.ndarray, score, eos: int) -> Hypothesis:
    ends = np.flatnonzero(tokens == eos)
    if len(ends):
        return Hypothesis(tokens[: ends[0] + 1].tolist(), float(score), True)
    return Hypothesis(tokens.tolist(), float(score), False)
