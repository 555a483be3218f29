"""How far a graph's outputs are from the reference's: the figures, the one the export check holds against
``--tolerance``, and its default (docs/export-check.md)."""

from __future__ import annotations

import numpy as np

# Float32 arithmetic reordered (other convolution algorithms, fused operators) moves a deep network's outputs:
# Caffe ResNet-152 at 448 with BatchNorm statistics of a photograph, 2.2e-3 (its worst element against the
# spread; 2.2e-4 by the max_rel <= 1e-4 rule this replaced, which refused it). The mistakes an export makes
# (a transposed weight, batch statistics in BatchNorm, LSTM gates in another order) move outputs by 0.1 to
# 10 (tests/export/test_error_metric.py). The default sits between.
TOLERANCE = 1e-2
METRIC = (
    "per output, the larger of max |onnx - torch| / std(torch) and |onnx - torch| / |torch| (L2 norms);"
    " ONNX Runtime CPU"
)


def errors(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per output, how far ``got`` is from ``want``:

    max_over_std  max |got - want| / std(want): the worst element against the output's spread (so that
                  neither values near zero nor a large offset, as log-probabilities have, skew it)
    rel_l2        |got - want| / |want| over the whole output (L2 norms)
    max_abs       max |got - want|
    max_rel       max |got - want| / max |want|

    The export check judges the first two (``error``); the last two are kept for reading."""
    out = {}
    for name, w in want.items():
        w = np.asarray(w, np.float64)
        if not w.size:
            out[name] = dict.fromkeys(FIGURES, 0.0)
            continue
        d = np.abs(np.asarray(got[name], np.float64) - w)
        out[name] = {
            "max_over_std": float(d.max() / max(float(w.std()) or float(np.abs(w).max()), 1e-30)),
            "rel_l2": float(np.linalg.norm(d) / max(float(np.linalg.norm(w)), 1e-30)),
            "max_abs": float(d.max()),
            "max_rel": float(d.max() / max(float(np.abs(w).max()), 1e-30)),
        }
    return out


FIGURES = ("max_over_std", "rel_l2", "max_abs", "max_rel")


def error(row: dict[str, float]) -> float:
    """The figure the export check holds against ``--tolerance``: the larger of an output's worst element
    against its spread and its relative L2 error (NaN if either is)."""
    return float(np.maximum(row["max_over_std"], row["rel_l2"]))


def merge_errors(a: dict, b: dict) -> dict:
    """The worse of two error tables, output by output (NaN, the worst, wins: np.maximum keeps it)."""
    return {k: {m: float(np.maximum(a.get(k, {}).get(m, 0.0), v[m])) for m in v} for k, v in b.items()}


def checked_error(row: dict[str, float]) -> float:
    """``error`` of a manifest's row; ``max_rel`` for a bundle written before ``error`` existed."""
    return error(row) if "rel_l2" in row else row["max_rel"]
