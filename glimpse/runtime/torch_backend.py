"""The torch backend: the reference modules' inference cut behind the Session interface, CPU or CUDA.

It runs exactly the modules the ONNX graphs were exported from, with the weights the bundle keeps in
weights.pt (a plain state dict, loaded with ``weights_only=True``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from glimpse.bundle import Bundle
from glimpse.errors import BackendUnavailable
from glimpse.runtime.session import Session


class TorchSession(Session):
    """A reference graph module on ``device``. On CUDA with ``cuda_graphs``, each new set of input
    shapes is captured once as a CUDA graph over static input buffers and replayed after that: one
    launch per call instead of one per kernel."""

    def __init__(self, module, inputs: list[str], outputs: list[str], device: str = "cpu", cuda_graphs: bool = False):
        import torch

        self.torch = torch
        self.module = module.to(device).eval()
        self.input_names, self.output_names, self.device = inputs, outputs, device
        self.graphs: dict | None = {} if cuda_graphs and device.startswith("cuda") else None

    def run(self, inputs):
        return {n: self.host(t) for n, t in self.run_device(inputs).items()}

    def run_device(self, inputs):
        torch = self.torch
        args = [self._tensor(inputs[n]) for n in self.input_names]
        if self.graphs is None:
            with torch.inference_mode():
                out = self.module(*args)
            return dict(zip(self.output_names, out if isinstance(out, tuple) else (out,)))
        key = tuple((a.shape, a.dtype) for a in args)
        if key not in self.graphs:
            from glimpse.runtime.cuda_graphs import CapturedCall

            self.graphs[key] = CapturedCall(self.module, args, self.output_names)
        return self.graphs[key](args)

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
        )
        for n in names
    }
