"""In-graph beam selection (glimpse.nn.beam), exported to ONNX and run on ONNX Runtime, against one
iteration of the host beam search: hand-written tables with ties, and random tables at every width."""

import numpy as np
import pytest
import torch
from torch import nn

from glimpse.export import onnx as onnx_export
from glimpse.export.check import check_graph
from glimpse.nn.beam import select_beams
from glimpse.runtime.search import gather_beams, top_candidates
from glimpse.runtime.session import OnnxRuntimeSession

END = 1
NEG = float("-inf")


class Select(nn.Module):
    def forward(self, logprobs, scores, width):
        return select_beams(logprobs, scores, width, END)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """select_beams as an ONNX graph for K = 3, dynamic batch."""
    k, v = 3, 6
    inputs = {"logprobs": torch.randn(2, k, v), "scores": torch.randn(2, k), "width": torch.tensor([3, 2])}
    graph = onnx_export.Graph(
        "select",
        Select(),
        inputs,
        ["tokens", "parents", "next_scores", "next_width", "ended"],
        {name: {0: "batch"} for name in inputs},
    )
    path = tmp_path_factory.mktemp("beam") / "select.onnx"
    onnx_export.export(graph, path)
    report = check_graph(path, "step_select")  # TensorRT's rules: sorted TopK, constant K, no loops
    assert report.ok, report.problems
    return OnnxRuntimeSession(path)


def host_step(logprobs, scores, width):
    """One iteration of beam_search's selection on the live slots: -> live (tokens, parents, scores) in
    rank order, and the finished (token, parent, score) in rank order, per image."""
    w = int(width.max())
    new_scores, parents, words = top_candidates(scores[:, :w], logprobs[:, :w], w)
    rank = np.arange(w)[None, :]
    chosen = rank < width[:, None]
    ended = chosen & (words == END)
    live = chosen & ~ended
    keep = np.argsort(~live, axis=1, kind="stable")
    out = []
    for b in range(len(width)):
        n = int(live[b].sum())
        kept = [gather_beams(x, keep)[b, :n].tolist() for x in (words, parents, new_scores)]
        done = [(int(words[b, j]), int(parents[b, j]), float(new_scores[b, j])) for j in np.nonzero(ended[b])[0]]
        out.append((*kept, done))
    return out


def graph_step(session, logprobs, scores, width):
    got = session.run({"logprobs": logprobs, "scores": scores, "width": width})
    out = []
    for b in range(len(width)):
        n = int(got["next_width"][b])
        kept = [got[name][b, :n].tolist() for name in ("tokens", "parents", "next_scores")]
        ended = np.nonzero(got["ended"][b])[0]
        done = [(int(got["tokens"][b, j]), int(got["parents"][b, j]), float(got["next_scores"][b, j])) for j in ended]
        out.append((*kept, done))
    return out


def test_hand_written_table_with_ties(session):
    # image 0, first step: only beam 0 is live (the others repeat its state); words 2 and 3 tie at
    # log 0.3, word 1 is <end>: <end> (0.4) finishes, 2 then 3 (the lower index first) stay live.
    # image 1: two live beams whose best continuations tie across beams: beam 0's wins (lower index),
    # and width 2 keeps only two winners.
    lp = np.log(
        np.array(
            [
                [[0.05, 0.4, 0.3, 0.3, 0.05, 0.0001]] * 3,
                [[0.5, 0.1, 0.1, 0.1, 0.1, 0.1], [0.5, 0.1, 0.1, 0.1, 0.1, 0.1], [0.9, 0.02, 0.02, 0.02, 0.02, 0.02]],
            ]
        )
    ).astype(np.float32)
    scores = np.array([[0.0, NEG, NEG], [-1.0, -1.0, NEG]], np.float32)
    width = np.array([3, 2])
    want = host_step(lp, scores, width)
    assert want[0][0] == [2, 3] and want[0][3] == [(END, 0, pytest.approx(np.log(0.4)))]
    assert want[1][0] == [0, 0] and want[1][1] == [0, 1]
    assert graph_step(session, lp, scores, width) == want


@pytest.mark.parametrize("seed", range(20))
def test_random_tables_at_every_width(session, seed):
    rng = np.random.default_rng(seed)
    b, k, v = 4, 3, 6
    logits = rng.standard_normal((b, k, v)) * 2
    logits[..., END] += rng.uniform(-1, 2, (b, k, 1))[..., 0]  # <end> often among the winners
    lp = (logits - np.log(np.exp(logits).sum(-1, keepdims=True))).astype(np.float32)
    width = rng.integers(1, k + 1, b)
    scores = np.where(np.arange(k) < width[:, None], -rng.uniform(0, 5, (b, k)), NEG).astype(np.float32)
    assert graph_step(session, lp, scores, width) == host_step(lp, scores, width)
