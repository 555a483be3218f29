"""The physical limits a ``glimpse bench`` run is set against, from the model and from this machine.

The model's work: the encoder's floating-point operations on one image and a decode step's at each beam
width, counted by torch's FlopCounterMode on one run of the bundle's own modules (the torch backend's), and
the bytes of weights a step reads, the initializers of step.onnx. The machine's: its float32 FLOP/s and
its memory bandwidth, measured in the same run by kernels at the contenders' thread count (the best of a few
large matmuls; the best of a few sums over an array far larger than the caches), so they are what this
machine reaches now, not a datasheet's figures. A lower bound of time: the encoder at peak FLOP/s; a step
at the slower of its FLOPs at peak and its weights at full bandwidth.
"""

from __future__ import annotations

import time

import numpy as np

MATMUL = 2048  # side of the square float32 matrices timed for FLOP/s
STREAM_MIB = 512  # the array summed for bandwidth: far beyond any cache


def machine_peaks(threads: int) -> dict:
    """Measured float32 FLOP/s (matmul) and read bandwidth (sum) at ``threads`` threads: the best of five."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(MATMUL, MATMUL), torch.randn(MATMUL, MATMUL)
    stream = torch.ones(STREAM_MIB * 2**20 // 4)
    return {
        "fp32_flops": 2 * MATMUL**3 / _best(lambda: a @ b),
        "read_bytes_per_s": stream.nbytes / _best(stream.sum),
        "how": f"measured in this run, {threads} threads: best of 5 {MATMUL}x{MATMUL} float32 matmuls (torch),"
        f" best of 5 sums over {STREAM_MIB} MiB",
    }


def _best(fn, repeats: int = 5) -> float:
    fn()  # warm-up: first-touch of pages, thread pool start
    times = []
    for _ in range(repeats):
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
    weights = sum(
        int(np.prod(t.dims)) * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        for t in step.graph.initializer
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
    flops, bandwidth = peaks["fp32_flops"], peaks["read_bytes_per_s"]
    return {
        "encoder_ms": work["encoder_flop"] / flops * 1e3,
        "step_ms": {
            beam: max(f / flops, work["step_weight_bytes"] / bandwidth) * 1e3 for beam, f in work["step_flop"].items()
        },
    }
