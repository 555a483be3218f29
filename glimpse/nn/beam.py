"""One step of beam selection as tensor operations, for a decode step that picks its own continuations
inside its graph (so a GPU runtime reads back (B, K) integers per step instead of (B, K, V) log-probs).

It restates one iteration of ``glimpse.runtime.search.beam_search`` (the tutorial's semantics):

* the candidates are every live beam's continuations, scored by cumulative log-prob; slots at or past
  an image's live ``width`` take no part (their scores are -inf);
* the ``width`` best win (an exact two-stage top-k: each beam's K best words, then the K best of the
  K * K; ONNX TopK breaks ties toward the lower index, so equal scores resolve as the host search's
  flat-index order does);
* a winner that is ``end`` finishes and leaves the beam;
* the survivors are compacted to the front in rank order, followed by the finished, then the losers.

K must not exceed V, and is fixed when the graph is exported (TensorRT wants a constant TopK K).
"""

from __future__ import annotations

import torch


def select_beams(logprobs: torch.Tensor, scores: torch.Tensor, width: torch.Tensor, end: int):
    """logprobs (B, K, V); scores (B, K) cumulative; width (B,) int64, the live beams of each image, in
    slots 0..width-1 -> (tokens (B, K) int64, parents (B, K) int64, scores (B, K), width (B,), ended (B, K)
    bool), slots ordered: live beams by rank, then the finished ones by rank, then the rest."""
    b, k, _ = logprobs.shape
    rank = torch.arange(k, device=logprobs.device)[None, :]  # (1, K)
    scores = torch.where(rank < width[:, None], scores, torch.full_like(scores, float("-inf")))
    best, words = torch.topk(logprobs, k, dim=2)  # (B, K, K): each beam's K best words
    new_scores, pick = torch.topk((scores[:, :, None] + best).reshape(b, k * k), k, dim=1)  # (B, K), best first
    parents = torch.div(pick, k, rounding_mode="floor")
    tokens = words.reshape(b, k * k).gather(1, pick)
    chosen = rank < width[:, None]  # an image with width w keeps its w best
    ended = chosen & (tokens == end)
    live = chosen & ~ended
    key = torch.where(live, 2 * k - rank, torch.where(ended, k - rank, -rank))  # distinct: a total order
    order = torch.topk(key, k, dim=1).indices  # (B, K)
    return (
        tokens.gather(1, order),
        parents.gather(1, order),
        new_scores.gather(1, order),
        live.sum(dim=1),
        ended.gather(1, order),
    )
