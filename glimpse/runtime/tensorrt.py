"""TensorRT: engines built from a bundle's graphs, and the ``tensorrt`` backend that runs them.

Written to TensorRT 11's API, which TensorRT 10 shares on this path: strongly typed networks only, so
the precision is the graph's own (``<graph>.fp16.onnx``, ``<graph>.int8.onnx`` with Q/DQ) and no
precision flag is set. Parsing and building go through Polygraphy's loaders (NVIDIA keeps them in step
with TensorRT). Engines are kept in the bundle, keyed by what makes a plan valid:

    engines/sm<compute capability>-trt<TensorRT version>/<graph>.<precision>.<graph sha256[:16]>.plan

with one timing cache per directory, so a rebuild (another precision, a changed graph) reuses timings.
Each graph gets one optimisation profile from ``glimpse.runtime.profiles`` (image and beam axes). A session runs
its plan with ``execute_async_v3`` on its own stream over torch CUDA buffers, and captures a CUDA graph
per input shape where capture succeeds.

TensorRT's libraries are not on PyPI (only stubs that fetch from NVIDIA's index) and building needs a
GPU: ``unavailable()`` says in one line what is missing, and nothing here is imported before that.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from glimpse.bundle import Bundle
from glimpse.errors import BackendUnavailable, BundleError
from glimpse.runtime.profiles import profile
from glimpse.runtime.session import Session

INSTALL = "pip install tensorrt polygraphy --extra-index-url https://pypi.nvidia.com"


def unavailable() -> str | None:
    """Why TensorRT cannot run here, or None. Checks for a GPU before touching TensorRT: without one,
    its runtime returns a broken object that crashes the process when used."""
    try:
        import torch
    except ImportError:
        return "the tensorrt backend keeps its buffers in torch CUDA tensors: torch is not installed"
    if not torch.cuda.is_available():
        return "TensorRT needs an NVIDIA GPU, and torch sees no CUDA device here"
    try:
        import polygraphy  # noqa: F401
        import tensorrt  # noqa: F401
    except ImportError as e:
        return f"TensorRT is not installed ({e.name} missing; its libraries come from NVIDIA's index: {INSTALL})"
    return None


def require() -> None:
    reason = unavailable()
    if reason:
        raise BackendUnavailable(reason)


def engine_path(bundle: Bundle, name: str, precision: str) -> Path:
    """Where the plan of graph ``name`` at ``precision`` lives for this GPU and TensorRT version."""
    import tensorrt as trt
    import torch

    bundle.graph_path(name, precision)  # a missing graph or precision is named here
    entry = bundle.graphs[name] if precision == "fp32" else bundle.graphs[name]["precisions"][precision]
    major, minor = torch.cuda.get_device_capability()
    directory = bundle.path / "engines" / f"sm{major}{minor}-trt{trt.__version__}"
    return directory / f"{name}.{precision}.{entry['sha256'][:16]}.plan"


def build(bundle: Bundle, precision: str = "fp32", log: Callable[[str], None] = print) -> list[Path]:
    """An engine for every graph of ``bundle`` at ``precision`` (those already built are kept)."""
    require()
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath, Profile

    plans = []
    for name, graph in bundle.graphs.items():
        onnx_path = bundle.graph_path(name, precision)  # also checks the file's sha256
        plan = engine_path(bundle, name, precision)
        plans.append(plan)
        if plan.is_file():
            log(f"engine {plan.name} is built already")
            continue
        plan.parent.mkdir(parents=True, exist_ok=True)
        shapes = Profile()
        for tensor, (low, opt, high) in profile(graph["inputs"]).items():
            shapes.add(tensor, min=low, opt=opt, max=high)
        timing_cache = plan.parent / "timing.cache"
        known = str(timing_cache) if timing_cache.is_file() else None
        config = CreateConfig(profiles=[shapes], load_timing_cache=known)
        network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=True)
        serialized = EngineBytesFromNetwork(network, config=config, save_timing_cache=str(timing_cache))()
        tmp = plan.with_name(f".{plan.name}.partial")
        tmp.write_bytes(bytes(serialized))
        os.replace(tmp, plan)  # whole or absent
        log(f"built  {plan.relative_to(bundle.path)}  {plan.stat().st_size / 1e6:.1f} MB")
    return plans


class TensorRTSession(Session):
    """A plan run with ``execute_async_v3`` on this session's stream, over torch CUDA tensors."""

    def __init__(self, plan: Path, device: str = "cuda", cuda_graphs: bool = True):
        require()
        import tensorrt as trt
        import torch
        from polygraphy.backend.trt import EngineFromPath

        self.torch, self.device = torch, device
        self.engine = EngineFromPath(str(plan))()
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(device)  # TensorRT synchronises more on the default stream
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        dtypes = {
            trt.float32: torch.float32,
            trt.float16: torch.float16,
            trt.int64: torch.int64,
            trt.int32: torch.int32,
            trt.bool: torch.bool,
        }
        self.dtypes = {n: dtypes[self.engine.get_tensor_dtype(n)] for n in names}
        self.calls: dict | None = {} if cuda_graphs else None

    def run(self, inputs):
        return {n: self.host(t) for n, t in self.run_device(inputs).items()}

    def run_device(self, inputs):
        torch = self.torch
        args = [self._tensor(inputs[n], n) for n in self.input_names]
        current = torch.cuda.current_stream()
        key = tuple(a.shape for a in args)
        if self.calls is not None and key not in self.calls:
            from glimpse.runtime.cuda_graphs import CapturedCall

            try:
                self.calls[key] = CapturedCall(self.enqueue, args, self.output_names)
            except RuntimeError:  # an engine TensorRT made with uncapturable work: run it uncaptured
                self.calls[key] = None
        call = self.calls.get(key) if self.calls is not None else None
        if call is not None:
            return call(args)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            out = dict(zip(self.output_names, self.enqueue(*args)))
        current.wait_stream(self.stream)
        for t in out.values():
            t.record_stream(current)  # made on this stream, used on the caller's
        return out

    def enqueue(self, *args) -> tuple:
        """Bind ``args`` and fresh outputs, then enqueue the plan on the current stream."""
        torch, context = self.torch, self.context
        for name, a in zip(self.input_names, args):
            context.set_input_shape(name, tuple(a.shape))
            context.set_tensor_address(name, a.data_ptr())
        outputs = []
        for name in self.output_names:
            out = torch.empty(tuple(context.get_tensor_shape(name)), dtype=self.dtypes[name], device=self.device)
            context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        if not context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError("TensorRT could not enqueue the plan")
        return tuple(outputs)

    def host(self, array):
        return array.cpu().numpy() if isinstance(array, self.torch.Tensor) else np.asarray(array)

    def synchronize(self):
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize(self.device)

    def _tensor(self, x, name: str):
        torch = self.torch
        x = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
        return x.to(self.device, self.dtypes[name]).contiguous()


def tensorrt_sessions(bundle: Bundle, names: list[str], precision: str, device: str, cuda_graphs: bool) -> dict:
    require()
    sessions = {}
    for name in names:
        plan = engine_path(bundle, name, precision)
        if not plan.is_file():
            raise BundleError(
                f"{bundle.path}: no {precision} engine of '{name}' for this GPU and TensorRT"
                f" (build it with: glimpse build {bundle.path} --precision {precision})"
            )
        sessions[name] = TensorRTSession(plan, device, cuda_graphs)
    return sessions
