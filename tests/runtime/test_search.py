"""Search rules checked on hand-written probability tables (no model), in the manner of fairseq."""

import math

import numpy as np
import pytest
import torch
from search_tables import END, START, A, B, C, RandomTree, start_state, table_step

from glimpse.families.sat.reference import beam_search as tutorial_beam_search
from glimpse.runtime.search import beam_search, greedy, sample


def test_finished_hypothesis_leaves_and_beam_shrinks():
    """Step 1: b (0.5) and <end> (0.4) win; <end> finishes at log 0.4 and the beam shrinks to 1, so
    step 2 keeps only the best continuation of b: b a (0.5*0.9 = 0.45). Step 3 ends it: 0.45*0.8=0.36.
    The winner is the best raw score among finished ones: [<end>] at 0.4 beats [b a <end>] at 0.36."""
    tables = {(): {B: 0.5, END: 0.4, A: 0.1}, (B,): {A: 0.9, C: 0.1}, (B, A): {END: 0.8, C: 0.2}}
    calls = []

    def spy(tokens, state, images):
        calls.append(tokens.shape[1])
        return table_step(tables)(tokens, state, images)

    (r,) = beam_search(spy, start_state(), 1, START, END, beam_size=2, nbest=2)
    assert calls == [2, 1, 1]  # the live width shrinks after <end> wins a slot
    assert r.best.tokens == [END] and r.best.score == pytest.approx(math.log(0.4))
    assert [h.tokens for h in r.nbest] == [[END], [B, A, END]]
    assert r.nbest[1].score == pytest.approx(math.log(0.5 * 0.9 * 0.8))


def test_length_penalty_prefers_longer():
    tables = {(): {B: 0.5, END: 0.4, A: 0.1}, (B,): {A: 0.9, C: 0.1}, (B, A): {END: 0.8, C: 0.2}}
    (r,) = beam_search(table_step(tables), start_state(), 1, START, END, beam_size=2, length_penalty=1.0)
    assert r.best.tokens == [B, A, END]  # mean log-prob -0.34 beats -0.92


def test_first_step_expands_one_beam():
    """All K beams start identical; expanding each would fill the beam with copies of one word."""
    tables = {(): {A: 0.6, B: 0.3, C: 0.1}, (A,): {END: 1.0}, (B,): {END: 1.0}, (C,): {END: 1.0}}
    (r,) = beam_search(table_step(tables), start_state(), 1, START, END, beam_size=3, nbest=3)
    assert [h.tokens for h in r.nbest] == [[A, END], [B, END], [C, END]]


def test_no_finished_hypothesis_falls_back_to_best_live():
    tables = {}  # uniform-ish: never prefers <end>
    for prefix in [(), (A,), (A, A), (A, A, A)]:
        tables[prefix] = {A: 0.7, B: 0.3}
    (r,) = beam_search(table_step(tables), start_state(), 1, START, END, beam_size=2, max_length=4)
    assert not r.best.finished and r.best.tokens == [A, A, A, A] and r.steps == 4


def test_max_steps_is_51_by_default():
    step = table_step({})  # every prefix: all tokens equally (im)probable, <end> never preferred

    def never_end(tokens, state, images):
        lp, s, _ = step(tokens, state, images)
        lp[..., END] = -50.0
        return lp, s, None

    (r,) = beam_search(never_end, start_state(), 1, START, END, beam_size=2)
    assert r.steps == 51 and len(r.best.tokens) == 51


def test_greedy_and_beam_one_agree():
    tables = {(): {A: 0.4, B: 0.35, C: 0.25}, (A,): {END: 0.3, C: 0.7}, (A, C): {END: 1.0}}
    (g,) = greedy(table_step(tables), start_state(), 1, START, END)
    assert g.best.tokens == [A, C, END]


def test_sampling_is_seeded_and_respects_top_k_and_top_p():
    tables = {(): {A: 0.5, B: 0.3, C: 0.2}}
    for p in [(A,), (B,), (C,)]:
        tables[p] = {END: 1.0}
    run = lambda **kw: [r.best.tokens[0] for r in sample(table_step(tables), start_state(64), 64, START, END, **kw)]  # noqa: E731
    assert run(seed=1) == run(seed=1)
    assert set(run(seed=2, top_k=1)) == {A}
    assert set(run(seed=3, top_p=0.7)) <= {A, B}  # 0.5 < 0.7, so B is kept; C is not
    assert set(run(seed=4, temperature=5.0)) == {A, B, C}


# ---------------------------------------------------------------------------- against the reference loop


@pytest.mark.parametrize("beam", [1, 3, 5])
def test_equals_the_tutorial_loop_single_and_batched(beam):
    trees = [RandomTree(seed, end_bias=bias) for seed in range(12) for bias in (0.0, 3.0)]
    batch_start = {"node": np.zeros((len(trees), 1), np.int64)}
    # a batch whose images are different trees: one step function dispatching per image
    rows_seen = []

    def batched(tokens, state, images):  # row j is image images[j]: finished images leave the batch
        rows_seen.append(len(images))
        outs = [trees[i].step(tokens[j : j + 1], {"node": state["node"][j : j + 1]}) for j, i in enumerate(images)]
        return np.concatenate([o[0] for o in outs]), {"node": np.concatenate([o[1]["node"] for o in outs])}, None

    t0 = trees[0]
    together = beam_search(batched, batch_start, len(trees), t0.start, t0.end, beam_size=beam)
    assert rows_seen[0] == len(trees) > rows_seen[-1] and rows_seen == sorted(rows_seen, reverse=True)
    for tree, joint in zip(trees, together):
        alone = beam_search(tree.step, {"node": np.zeros((1, 1), np.int64)}, 1, tree.start, tree.end, beam_size=beam)
        ref = tutorial_beam_search(
            tree.torch_step, torch.zeros(1, dtype=torch.int64), beam, tree.start, tree.end, tree.vocab
        )
        assert joint.best == alone[0].best
        if ref is None:
            assert not joint.best.finished
        else:
            assert [tree.start] + joint.best.tokens == ref[0]
            assert joint.best.score == pytest.approx(ref[1], abs=1e-9)


def test_top_k_is_the_first_k_of_a_stable_descending_sort():
    """Any rows, ties included (values from a handful of levels, -inf among them), any k: the same indices
    in the same order as argsort's stable descending sort, the rule M2's search needs."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    from glimpse.runtime.search import top_k

    levels = st.sampled_from([-np.inf, -999.0, -3.5, -1.0, 0.0, 2.0])
    shapes = st.tuples(st.integers(1, 4), st.integers(1, 40))
    values = levels | st.floats(-5, 5, width=32)

    @settings(max_examples=300, deadline=None)
    @given(shapes.flatmap(lambda shape: arrays(np.float32, shape, elements=values)), st.data())
    def check(x, data):
        k = data.draw(st.integers(1, x.shape[1] + 2))
        np.testing.assert_array_equal(top_k(x, k), np.argsort(-x, axis=1, kind="stable")[:, :k])

    check()
