"""Hand-written probability tables and random trees as search steps (no model), for the search tests
(tests/runtime/test_search.py, tests/runtime/test_fused_search.py)."""

import math

import numpy as np
import torch

A, B, C, START, END = 0, 1, 2, 3, 4  # a five-word vocabulary


def table_step(tables):
    """A step whose log-probs depend on the prefix: tables maps a prefix tuple (after <start>) to a
    {token: prob} dict (unlisted tokens get a tiny probability)."""

    def step(tokens, state, images=None):
        prefix = state["prefix"]  # (B, K) object array of tuples
        new = np.empty_like(prefix)
        lp = np.full(tokens.shape + (5,), math.log(1e-9))
        for idx in np.ndindex(tokens.shape):
            p = prefix[idx] + ((int(tokens[idx]),) if tokens[idx] != START else ())
            new[idx] = p
            for tok, prob in tables.get(p, {}).items():
                lp[idx + (tok,)] = math.log(prob)
        return lp, {"prefix": new}, None

    return step


def start_state(batch=1):
    s = np.empty((batch, 1), object)
    s.fill(())
    return {"prefix": s}


class RandomTree:
    """Log-probs from a random table indexed by a hash of the prefix: a model with no structure,
    where ties never happen and <end> arrives at varied depths."""

    def __init__(self, seed, vocab=12, nodes=997, end_bias=0.0):
        rng = np.random.default_rng(seed)
        self.vocab, self.end, self.start = vocab, vocab - 1, vocab - 2
        logits = rng.normal(size=(nodes, vocab)) * 2
        logits[:, self.end] += end_bias
        self.table = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        self.next = rng.integers(0, nodes, size=(nodes, vocab))

    def step(self, tokens, state, images=None):  # glimpse's form: (B, K)
        node = self.next[state["node"], tokens]
        return self.table[node], {"node": node}, None

    def torch_step(self, words, node):  # the reference loop's form: (s,)
        node = torch.from_numpy(self.next[node.numpy(), words.numpy()])
        return torch.from_numpy(self.table[node.numpy()]), node
