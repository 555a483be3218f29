"""One CUDA graph per input shape: the call captured once over static input buffers, then replayed.

A decode step is dozens of small kernels; replaying them as one graph turns dozens of launches (and
the Python between them) into one. A graph pins its buffers' addresses and shapes, so each new set of
input shapes gets its own capture (a search meets a handful: one per live beam width).
"""

from __future__ import annotations


class CapturedCall:
    """``fn(*args)`` (CUDA tensors in, a tuple of CUDA tensors out) captured over static copies of
    ``args``. A call copies its arguments into them, replays the graph and returns copies of the
    outputs, by name: the graph overwrites its own at the next replay, and a search keeps each step's.
    Raises RuntimeError where the work cannot be captured (the caller then runs it uncaptured)."""

    def __init__(self, fn, args: list, names: list[str]):
        import torch

        self.inputs = [a.clone() for a in args]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside the capture: library handles, lazy allocations, tactics
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            out = fn(*self.inputs)
        self.outputs = dict(zip(names, out if isinstance(out, tuple) else (out,)))

    def __call__(self, args: list) -> dict:
        for static, a in zip(self.inputs, args):
            static.copy_(a)
        self.graph.replay()
        return {n: t.clone() for n, t in self.outputs.items()}
