"""The ranges of the named dynamic axes, from which TensorRT optimisation profiles are made (every
dynamic axis of an exported graph must be named here: ``glimpse check`` enforces it), and the shape
rules a GPU session lives by: which sizes it captures CUDA graphs for, and which it refuses."""

from __future__ import annotations

from glimpse.errors import GlimpseError

# axis: (min, opt, max). opt is the size the engine is tuned for: one image served at beam 5.
AXIS_RANGES = {
    "batch": (1, 1, 64),  # images in one call
    "beam": (1, 5, 16),  # live beams per image
    "words": (1, 12, 32),  # words of a question (VQA questions run to 23)
    "positions": (1, 20, 54),  # an m2 step's self-attention cache: the decode length (20 in M2's test script)
}
# Axes along which every graph computes each slice on its own (an image; a beam of the unfused steps:
# the fused step's K slots are a fixed size, not this axis), so extra slices padded on change nothing
# in the real ones. "words" and "positions" are masked by lengths, not independent: never padded.
PADDED_AXES = ("batch", "beam")
# What a user changes when a size is out of an engine's profile.
KNOBS = {"batch": "a smaller batch size", "beam": "a smaller beam size", "words": "a shorter question"}


def profile(inputs: list[dict]) -> dict[str, tuple[tuple, tuple, tuple]]:
    """{input name: (min, opt, max) shapes} for a graph's manifest inputs ({name, shape: [int | axis]})."""
    return {
        value["name"]: tuple(
            tuple(AXIS_RANGES[d][i] if isinstance(d, str) else d for d in value["shape"]) for i in range(3)
        )
        for value in inputs
    }


def bucket(size: int, high: int) -> int:
    """The size captured for ``size`` rows: the next power of two, at most ``high`` (1, 2, 4, ... 64).
    A decode step is launch-bound at these sizes, so padded rows cost little, and a search whose
    batch shrinks image by image meets log2(B) sizes instead of B."""
    return max(size, min(1 << (size - 1).bit_length(), high))


def axis_sizes(shapes: dict[str, tuple], dims: dict[str, list]) -> dict[str, int]:
    """{axis name: its size} in the inputs' ``shapes`` {input: shape}, whose manifest ``dims`` {input:
    [int | axis name]} name the dynamic axes."""
    return {d: n for name, shape in shapes.items() for d, n in zip(dims[name], shape) if isinstance(d, str)}


def padded_axes(graph: dict) -> tuple[str, ...]:
    """The PADDED_AXES a graph (its manifest entry) may be padded along: none where an output has a
    dynamic axis the manifest does not name (one the exporter derived), whose padding could not be cut
    off again."""
    outputs = [d for value in graph["outputs"] for d in value["shape"] if isinstance(d, str)]
    return PADDED_AXES if all(d in AXIS_RANGES for d in outputs) else ()


def padded_sizes(sizes: dict[str, int], high: dict[str, int], axes=PADDED_AXES) -> dict[str, int]:
    """{axis: bucketed size} for the ``axes`` among ``sizes``; ``high`` {axis: the profile's max}."""
    return {a: bucket(n, high.get(a, n)) for a, n in sizes.items() if a in axes}


def profile_error(graph: str, name: str, shape: tuple, dims: list, low: tuple, high: tuple) -> str | None:
    """One line naming the first axis of input ``name`` (manifest ``dims``) whose size is outside the
    engine's profile [``low``, ``high``], or None. TensorRT itself only returns False from
    set_input_shape, which would surface later as a failed enqueue."""
    for axis, (d, n, lo, hi) in enumerate(zip(dims, shape, low, high)):
        if not lo <= n <= hi:
            what = f"{d} {n}" if isinstance(d, str) else f"size {n} of axis {axis} of '{name}'"
            knob = f": choose {KNOBS[d]}" if d in KNOBS else ""
            return f"{graph}: {what} is outside the TensorRT engine's profile ({lo} to {hi}){knob}"
    return None


def check_in_profile(graph: str, shapes: dict[str, tuple], dims: dict[str, list], bounds: dict) -> None:
    """Raise GlimpseError, in one line, where an input's shape is outside ``bounds`` {input: (min, max)}."""
    for name, shape in shapes.items():
        if len(shape) != len(bounds[name][0]):
            raise GlimpseError(
                f"{graph}: input '{name}' has {len(shape)} axes, the engine takes {len(bounds[name][0])}"
            )
        error = profile_error(graph, name, tuple(shape), dims[name], *bounds[name])
        if error:
            raise GlimpseError(error)
