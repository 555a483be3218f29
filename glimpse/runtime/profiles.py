"""The ranges of the named dynamic axes, from which TensorRT optimisation profiles are made: every
dynamic axis of an exported graph must be named here (``glimpse check`` enforces it)."""

from __future__ import annotations

# axis: (min, opt, max). opt is the size the engine is tuned for: one image served at beam 5.
AXIS_RANGES = {
    "batch": (1, 1, 64),  # images in one call
    "beam": (1, 5, 16),  # live beams per image
    "words": (1, 12, 32),  # words of a question (VQA questions run to 23)
    "positions": (1, 20, 54),  # an m2 step's self-attention cache: the decode length (20 in M2's test script)
}


def profile(inputs: list[dict]) -> dict[str, tuple[tuple, tuple, tuple]]:
    """{input name: (min, opt, max) shapes} for a graph's manifest inputs ({name, shape: [int | axis]})."""
    return {
        value["name"]: tuple(
            tuple(AXIS_RANGES[d][i] if isinstance(d, str) else d for d in value["shape"]) for i in range(3)
        )
        for value in inputs
    }
