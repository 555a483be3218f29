"""The search over a fused step (``fused_beam_search``: selection inside the step, back-pointers on the
host) against the host beam search, on the hand-written tables and random trees of test_search (from
search_tables): the same hypotheses, scores, order and step counts, also where the fused step has more
slots than beams."""

import numpy as np
import pytest
import torch
from search_tables import END, START, A, B, C, RandomTree, start_state, table_step

from glimpse.nn.beam import select_beams
from glimpse.runtime.search import beam_search, fused_beam_search, gather_beams


def float32(step):
    """A step with float32 log-probs, a model's precision (both searches then sum in float32)."""

    def run(tokens, state, images=None):
        lp, state, alpha = step(tokens, state, images)
        return lp.astype(np.float32), state, alpha

    return run


def fused(step, key, end):
    """A glimpse-form step (tokens, {key: state}) -> logprobs, made a fused step with select_beams; the
    state travels as ``h`` (``c`` rides along unused)."""

    def run(feeds):
        logprobs, state, _ = step(feeds["tokens"], {key: feeds["h"]}, np.arange(len(feeds["tokens"])))
        as_torch = (torch.from_numpy(x) for x in (logprobs, feeds["scores"], feeds["width"]))
        tokens, parents, scores, width, ended = (t.numpy() for t in select_beams(*as_torch, end))
        return {
            "next_tokens": tokens,
            "parents": parents,
            "next_scores": scores,
            "next_width": width,
            "ended": ended,
            "h_next": gather_beams(state[key], parents),
            "c_next": feeds["c"],
            "alpha": np.zeros(tokens.shape + (1,)),
        }

    return run


def search_both(step, state, batch, start, end, beam, slots=None, **options):
    """(host beam_search results, fused_beam_search results over ``slots`` >= beam slots)."""
    key, first = next(iter(state.items()))  # first (B, 1): one start state per image
    k = slots or beam
    scores = np.full((batch, k), -np.inf, np.float32)
    scores[:, 0] = 0.0
    feeds = {
        "tokens": np.full((batch, k), start, np.int64),
        "h": np.repeat(first, k, axis=1),
        "c": np.zeros((batch, k)),
        "scores": scores,
        "width": np.full(batch, beam, np.int64),
    }
    host = beam_search(float32(step), state, batch, start, end, beam, **options)
    return host, fused_beam_search(fused(float32(step), key, end), feeds, batch, **options)


def same(host, fused_results):
    view = lambda h: (h.tokens, h.score, h.finished)  # noqa: E731
    for x, y in zip(host, fused_results, strict=True):
        assert view(y.best) == view(x.best)
        assert [view(h) for h in y.nbest] == [view(h) for h in x.nbest]
        assert y.steps == x.steps


LEAVES = {(): {B: 0.5, END: 0.4, A: 0.1}, (B,): {A: 0.9, C: 0.1}, (B, A): {END: 0.8, C: 0.2}}
FIRST = {(): {A: 0.6, B: 0.3, C: 0.1}, (A,): {END: 1.0}, (B,): {END: 1.0}, (C,): {END: 1.0}}
NEVER = {p: {A: 0.7, B: 0.3} for p in [(), (A,), (A, A), (A, A, A)]}


@pytest.mark.parametrize(
    "tables, beam, options",
    [
        (LEAVES, 2, {"nbest": 2}),  # a finished hypothesis leaves, the beam shrinks
        (LEAVES, 2, {"length_penalty": 1.0}),
        (FIRST, 3, {"nbest": 3}),  # step 1 expands one beam
        (NEVER, 2, {"max_length": 4}),  # nothing finishes: the best live one
        ({}, 2, {}),  # nothing preferred, 51 steps
    ],
)
@pytest.mark.parametrize("slots", [None, 4])
def test_hand_written_tables(tables, beam, options, slots):
    host, fused_results = search_both(table_step(tables), start_state(), 1, START, END, beam, slots, **options)
    same(host, fused_results)


@pytest.mark.parametrize("beam", [1, 3, 5])
def test_random_trees_batched(beam):
    trees = [RandomTree(seed, end_bias=bias) for seed in range(8) for bias in (0.0, 3.0)]
    t0 = trees[0]

    def batched(tokens, state, images):
        outs = [trees[i].step(tokens[j : j + 1], {"node": state["node"][j : j + 1]}) for j, i in enumerate(images)]
        return np.concatenate([o[0] for o in outs]), {"node": np.concatenate([o[1]["node"] for o in outs])}, None

    state = {"node": np.zeros((len(trees), 1), np.int64)}
    host, fused_results = search_both(batched, state, len(trees), t0.start, t0.end, beam, slots=5, nbest=beam)
    assert len({len(r.best.tokens) for r in host}) > 3  # hypotheses end at varied depths
    same(host, fused_results)
