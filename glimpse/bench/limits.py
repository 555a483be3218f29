"""The physical limits a ``glimpse bench`` run is set against, from the model and from this machine.

The model's work: the encoder's floating-point operations on one image and a decode step's at each beam
width (a multiply-add counts 2), counted by torch's FlopCounterMode on one run of the bundle's own modules
(the torch backend's), and the bytes of weights a step reads: the initializers of step.onnx, less the tables
it only gathers a few rows of (the word embedding). The machine's, measured in the same run at the
contenders' thread count, so they are what this machine reaches now, not a datasheet's figures: float32
FLOP/s, the best of a large matmul and a ResNet-like 3x3 convolution; the rate it reads a buffer the size of
the step's weights, summed again and again as the steps read them (from the caches where they fit), and for
context the rate over an array far larger than the caches (memory bandwidth); glimpse bench measures them
before and after the contenders and keeps the better. A lower bound of time: the
encoder at peak FLOP/s; a step at the slower of its FLOPs at peak and its weights read once at that rate.
On a shared machine the kernels measure below the peak, and a contender can come in under the bound.
"""

from __future__ import annotations

import time

import numpy as np

MATMUL = 2048  # side of the square float32 matrices timed for FLOP/s
CONV = (256, 64)  # channels and side of the 3x3 convolution timed for FLOP/s
STREAM_MIB = 1024  # the array summed for memory bandwidth: beyond the caches of most machines


def machine_peaks(threads: int, weight_bytes: int) -> dict:
    """Measured float32 FLOP/s (matmul, convolution) and read rates (sums) at ``threads`` threads: the best of
    at least ten runs of each kernel."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    a, b = torch.randn(MATMUL, MATMUL), torch.randn(MATMUL, MATMUL)
    (c, side), conv_flop = CONV, 2 * CONV[0] ** 2 * 9 * CONV[1] ** 2
    x, w = torch.randn(1, c, side, side), torch.randn(c, c, 3, 3)
    weights, stream = torch.ones(max(weight_bytes // 4, 1)), torch.ones(STREAM_MIB * 2**20 // 4)
    with torch.inference_mode():
        flops = max(2 * MATMUL**3 / _best(lambda: a @ b), conv_flop / _best(lambda: F.conv2d(x, w, padding=1)))
    return {
        "fp32_flops": flops,
        "weights_bytes_per_s": weights.nbytes / _best(weights.sum),
        "memory_bytes_per_s": stream.nbytes / _best(stream.sum, 3),
        "how": f"measured in this run, {threads} threads: best of 10 or more {MATMUL}x{MATMUL} float32 matmuls and"
        f" 3x3 convolutions of {c} channels at {side}x{side}, whichever is faster (torch); best of 10 or more sums over"
        f" {weights.nbytes / 1e6:.1f} MB, the step's weights; best of 3 over {STREAM_MIB} MiB for memory",
    }


def _best(fn, repeats: int = 10, seconds: float = 0.5) -> float:
    """The fastest of ``repeats`` runs, or of as many as fill ``seconds``: a short kernel gets enough tries
    for some to fall in a quiet spell of a shared machine."""
    fn()  # warm-up: first-touch of pages, thread pool start
    times, start = [], time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def model_work(bundle, beams: list[int]) -> dict:
    """FLOPs of the encoder on one image and of one step at each of ``beams`` for one image; bytes of the
    step's weights."""
    import onnx
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from glimpse import families

    modules = families.get(bundle.family).pipeline(bundle, backend="torch", device="cpu", threads=1).sessions

    def flops(graph: str, beam: int) -> int:
        inputs = [_zeros(spec, beam) for spec in bundle.graphs[graph]["inputs"]]
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            modules[graph].module(*inputs)
        return counter.get_total_flops()

    step = onnx.load(str(bundle.graph_path("step")), load_external_data=False)
    gathered = {n.input[0] for n in step.graph.node if n.op_type == "Gather"}
    read = {i for n in step.graph.node if n.op_type != "Gather" for i in n.input}
    weights = sum(
        int(np.prod(t.dims)) * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        for t in step.graph.initializer
        if t.name in read or t.name not in gathered
    )
    return {
        "encoder_flop": flops("encoder", 1),
        "step_flop": {beam: flops("step", beam) for beam in beams},
        "step_weight_bytes": weights,
    }


def _zeros(spec: dict, beam: int):
    """A zero input of the graph's manifest shape at one image and ``beam`` beams (other named axes 1)."""
    import torch

    shape = [beam if d == "beam" else 1 if isinstance(d, str) else d for d in spec["shape"]]
    return torch.zeros(shape, dtype=getattr(torch, spec["dtype"]))


def limits(work: dict, peaks: dict) -> dict:
    """Lower bounds in ms: the encoder on one image, and one step at each beam."""
    flops, bandwidth = peaks["fp32_flops"], peaks["weights_bytes_per_s"]
    return {
        "encoder_ms": work["encoder_flop"] / flops * 1e3,
        "step_ms": {
            beam: max(f / flops, work["step_weight_bytes"] / bandwidth) * 1e3 for beam, f in work["step_flop"].items()
        },
    }
