"""CUDA graphs: a call captured once over static buffers, then replayed; a bounded cache of them; and the
padding that lets a few captured shapes serve every batch.

A decode step is dozens of small kernels; replaying them as one graph turns dozens of launches (and
the Python between them) into one. A graph pins its buffers' addresses and shapes, so each set of input
shapes needs a capture of its own. A search meets many: its batch shrinks as images finish and its
live beams shrink as hypotheses end, up to B x K shapes. So inputs are padded along the axes where every
slice is computed on its own (``glimpse.runtime.profiles.PADDED_AXES``) to a power of two (1, 2, 4, ...),
a shape is captured only when it comes back (one-off shapes run uncaptured), and a cache keeps the most
recently used graphs only (each capture synchronises the device and holds buffers). Graphs of one session
share one memory pool and one stream: they never run at once and none reads another's buffers (torch's
"Graph memory management" notes, as clarified in pytorch/pytorch#166975).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

MAX_GRAPHS = 32  # per session: the unfused step at batch 16, beam 5 meets 5 x 4 bucketed shapes
CAPTURE_AFTER = 2  # calls of one shape before it is captured


class GraphCache:
    """Captured calls by key (the padded input shapes): at most ``size``, the least recently used dropped
    first (``release(call)`` runs before it goes), and a key captured at its ``after``-th call only: until
    then ``get`` returns None and the caller runs the call uncaptured."""

    def __init__(self, size: int = MAX_GRAPHS, after: int = CAPTURE_AFTER, release: Callable = lambda call: None):
        self.size, self.after, self.release = size, after, release
        self.calls: OrderedDict = OrderedDict()
        self.seen: dict = {}  # key -> calls so far, for keys not captured yet

    def get(self, key: Hashable, capture: Callable):
        """The call captured for ``key``, made by ``capture()`` when it is due (its errors propagate and
        nothing is kept), or None."""
        if key in self.calls:
            self.calls.move_to_end(key)
            return self.calls[key]
        if len(self.seen) > 4 * self.size:  # many one-off shapes: forget them rather than grow
            self.seen.clear()
        self.seen[key] = self.seen.get(key, 0) + 1
        if self.seen[key] < self.after:
            return None
        call = capture()
        del self.seen[key]
        self.calls[key] = call
        if len(self.calls) > self.size:
            self.release(self.calls.popitem(last=False)[1])
        return call

    def __len__(self) -> int:
        return len(self.calls)

    def keys(self) -> list:
        return list(self.calls)


def pad(x, dims: list, sizes: dict[str, int]):
    """Tensor ``x`` whose axes are named by ``dims`` (manifest shape: int | axis name), grown along each
    axis named in ``sizes`` to that size by repeating its last slice: real values, so the padding holds
    no NaN and no all-masked row."""
    import torch

    for axis, d in enumerate(dims):
        extra = sizes.get(d, 0) - x.shape[axis] if isinstance(d, str) else 0
        if extra > 0:
            last = x.narrow(axis, x.shape[axis] - 1, 1)
            x = torch.cat([x, last.expand(*(extra if i == axis else -1 for i in range(x.dim())))], axis)
    return x


def unpad(x, dims: list, sizes: dict[str, int]):
    """``x`` cut back to ``sizes`` {axis name: the real size} along the axes ``dims`` names (a view)."""
    for axis, d in enumerate(dims):
        if isinstance(d, str) and d in sizes and x.shape[axis] > sizes[d]:
            x = x.narrow(axis, 0, sizes[d])
    return x


class CapturedCall:
    """``fn(*args)`` (CUDA tensors in, a tuple of CUDA tensors out) captured over static copies of
    ``args``, in the session's memory ``pool`` and on its ``stream``. A call copies its arguments into
    them, replays the graph and returns the static outputs by name: the next replay overwrites them, so
    the caller copies what it keeps. Raises RuntimeError where the work cannot be captured."""

    def __init__(self, fn, args: list, names: list[str], pool=None, stream=None):
        import torch

        self.inputs = [a.clone() for a in args]
        side = stream or torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside the capture: library handles, lazy allocations, tactics
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # torch's default capture mode ('global'), as its docs advise for work that allocates through torch
        with torch.inference_mode(), torch.cuda.graph(self.graph, pool=pool, stream=stream):
            out = fn(*self.inputs)
        self.outputs = dict(zip(names, out if isinstance(out, tuple) else (out,)))

    def __call__(self, args: list) -> dict:
        for static, a in zip(self.inputs, args):
            static.copy_(a)
        self.graph.replay()
        return self.outputs
