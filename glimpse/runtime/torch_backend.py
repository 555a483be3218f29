"""The torch backend: the reference modules' inference cut behind the Session interface, CPU or CUDA.

It runs exactly the modules the ONNX graphs were exported from, with the weights the bundle keeps in
weights.pt (a plain state dict, loaded with ``weights_only=True``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from glimpse.bundle import Bundle
from glimpse.errors import BackendUnavailable
from glimpse.runtime import profiles
from glimpse.runtime.cuda_graphs import CapturedCall, GraphCache, pad, unpad
from glimpse.runtime.session import Session

HIGH = {axis: r[2] for axis, r in profiles.AXIS_RANGES.items()}  # torch has no profile: pad within the engines'


class TorchSession(Session):
    """A reference graph module on ``device``. On CUDA with ``cuda_graphs``, a set of input shapes that
    comes back is captured as a CUDA graph over static input buffers and replayed after that: one launch
    per call instead of one per kernel. ``dims`` {input or output: manifest shape (int | axis name)}, where
    given, lets inputs be padded to a few bucketed shapes (``glimpse.runtime.cuda_graphs``)."""

    def __init__(
        self,
        module,
        inputs: list[str],
        outputs: list[str],
        device: str = "cpu",
        cuda_graphs: bool = False,
        dims: dict[str, list] | None = None,
    ):
        import torch

        self.torch = torch
        self.module = module.to(device).eval()
        self.input_names, self.output_names, self.device = inputs, outputs, device
        self.dims = dims or {}
        graph = {"outputs": [{"shape": self.dims.get(n, ["?"])} for n in outputs]}  # "?": unknown, never padded
        self.axes = profiles.padded_axes(graph) if dims else ()
        self.graphs = None
        if cuda_graphs and device.startswith("cuda"):
            self.graphs = GraphCache(release=lambda call: torch.cuda.synchronize(device))
            with torch.cuda.device(device):  # the stream and pool of cuda:N, whichever device is current
                self.stream, self.pool = torch.cuda.Stream(), torch.cuda.graph_pool_handle()

    def run(self, inputs):
        return {n: self.host(t) for n, t in self.run_device(inputs).items()}

    def run_device(self, inputs):
        torch = self.torch
        args = [self._tensor(inputs[n]) for n in self.input_names]
        if self.graphs is not None:
            with torch.cuda.device(self.device):
                out = self._replayed(args)
            if out is not None:
                return out
        with torch.inference_mode():
            out = self.module(*args)
        return dict(zip(self.output_names, out if isinstance(out, tuple) else (out,)))

    def _replayed(self, args: list) -> dict | None:
        """The call replayed from the CUDA graph of its padded shapes, or None while they are not captured."""
        shapes = {n: tuple(a.shape) for n, a in zip(self.input_names, args)}
        sizes = profiles.axis_sizes(shapes, self.dims) if self.dims else {}
        padding = profiles.padded_sizes(sizes, HIGH, self.axes)
        padded = [pad(a, self.dims.get(n, ()), padding) for n, a in zip(self.input_names, args)]
        key = tuple((a.shape, a.dtype) for a in padded)
        call = self.graphs.get(
            key, lambda: CapturedCall(self.module, padded, self.output_names, self.pool, self.stream)
        )
        if call is None:
            return None
        # copies of the real rows: the next replay overwrites the graph's own outputs, and a search keeps each step's
        contiguous = self.torch.contiguous_format
        return {
            n: unpad(t, self.dims.get(n, ()), sizes).clone(memory_format=contiguous) for n, t in call(padded).items()
        }

    def host(self, array):
        return array.cpu().numpy() if isinstance(array, self.torch.Tensor) else np.asarray(array)

    def synchronize(self):
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize(self.device)

    def _tensor(self, x):
        torch = self.torch
        x = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
        return x.to(self.device, non_blocking=True)


def reference_module(model, bundle: Bundle):
    """``model`` (a family's reference module built from ``bundle.config``) with the bundle's weights, in eval
    mode."""
    import torch

    model.load_state_dict(torch.load(bundle.file_path("weights"), map_location="cpu", weights_only=True))
    return model.eval()


def torch_sessions(
    bundle: Bundle,
    names: list[str],
    modules: Callable[[Bundle], dict],
    device: str = "cpu",
    threads: int | None = None,
    cuda_graphs: bool = False,
) -> dict:
    """``modules(bundle)`` -> {graph: the family's reference module of that graph, with the bundle's weights}."""
    try:
        import torch
    except ImportError:
        raise BackendUnavailable("the torch backend needs torch (pip install 'glimpse[export]')") from None
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BackendUnavailable(f"device {device}: torch sees no CUDA device here")
        # the reference's float32, not TF32 (cuDNN convolutions default to it): the same captions as the CPU's
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    if threads:
        torch.set_num_threads(threads)
    graphs = modules(bundle)
    return {
        n: TorchSession(
            graphs[n],
            [v["name"] for v in bundle.graphs[n]["inputs"]],
            [v["name"] for v in bundle.graphs[n]["outputs"]],
            device,
            cuda_graphs,
            {v["name"]: v["shape"] for v in bundle.graphs[n]["inputs"] + bundle.graphs[n]["outputs"]},
        )
        for n in names
    }
