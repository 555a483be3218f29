"""TensorRT: engines built from a bundle's graphs, and the ``tensorrt`` backend that runs them.

Written to TensorRT 11's API, which TensorRT 10 (10.1 on) shares on this path: strongly typed networks
only, so the precision is the graph's own (``<graph>.fp16.onnx``, ``<graph>.int8.onnx`` with Q/DQ) and no
precision flag is set. Parsing and building go through Polygraphy's loaders (NVIDIA keeps them in step
with TensorRT), at profiling verbosity LAYER_NAMES_ONLY (TensorRT's own default; Polygraphy's is DETAILED,
whose per-layer NVTX detail costs at enqueue). Engines are kept in the bundle, keyed by what makes a plan
valid (TensorRT warns that a plan used on another device model may fail, even at the same compute
capability):

    engines/sm<compute capability>-<device name>-trt<TensorRT version>/<graph>.<precision>.<sha256[:16]>.plan

with one timing cache per directory, so a rebuild (another precision, a changed graph) reuses timings.
Each graph gets one optimisation profile from ``glimpse.runtime.profiles`` (image and beam axes).

A session runs its plan on cuda:N (made current around every TensorRT call, since TensorRT binds an
engine and its contexts to the current device) with ``execute_async_v3`` on its own stream, over torch
CUDA buffers. With CUDA graphs, each captured shape has an execution context of its own, as TensorRT
asks (NVIDIA/TensorRT#3798, trtexec's sampleInference): a graph replayed after its context ran another
shape may compute wrong results without an error. The contexts share one block of device memory
(``ExecutionContextAllocationStrategy.USER_MANAGED``), which is safe because they run one at a time, on
the session's stream. Shapes are set and buffers bound before the capture, the plan is enqueued once
outside it, and only ``execute_async_v3`` is captured, thread-locally, as trtexec does.

TensorRT's libraries are not on PyPI (only stubs that fetch from NVIDIA's index) and building needs a
GPU: ``unavailable()`` says in one line what is missing, and nothing here is imported before that.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from glimpse.bundle import Bundle
from glimpse.errors import BackendUnavailable, BundleError, GlimpseError
from glimpse.runtime import profiles
from glimpse.runtime.cuda_graphs import GraphCache, pad, unpad
from glimpse.runtime.session import Session

INSTALL = "pip install tensorrt polygraphy --extra-index-url https://pypi.nvidia.com"
# TensorRT DataType name -> torch dtype name. FP8, INT4, FP4 and E8M0 have no torch tensor to bind here.
TORCH_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}


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


# ---- pure rules (tested without a GPU) ---------------------------------------------------------------


def device_index(device: str) -> int | None:
    """``cuda`` -> None (the current device), ``cuda:N`` -> N; anything else (``cpu``) is refused: TensorRT
    runs on an NVIDIA GPU only."""
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise GlimpseError(f"the tensorrt backend runs on an NVIDIA GPU: --device cuda or cuda:N, not '{device}'")
    return int(index) if index else None


def engine_dir(root: Path, capability: tuple[int, int], device_name: str, version: str) -> Path:
    """The engine cache of one GPU model and TensorRT version in bundle ``root``."""
    slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-")
    return root / "engines" / f"sm{capability[0]}{capability[1]}-{slug}-trt{version}"


def plan_name(name: str, precision: str, sha256: str) -> str:
    return f"{name}.{precision}.{sha256[:16]}.plan"


def torch_dtype(graph: str, tensor: str, trt_type: str) -> str:
    """The torch dtype name for TensorRT DataType ``trt_type`` (its name), or a one-line error."""
    if trt_type not in TORCH_DTYPES:
        raise BundleError(f"{graph}: tensor '{tensor}' is {trt_type}, which the tensorrt backend cannot bind")
    return TORCH_DTYPES[trt_type]


def output_shape(graph: str, name: str, shape: tuple) -> tuple[int, ...]:
    """The shape of output ``name`` once the input shapes are set; a data-dependent one (-1: TensorRT
    knows it only after running) is refused: outputs are allocated before the plan runs."""
    if any(d < 0 for d in shape):
        raise GlimpseError(
            f"{graph}: output '{name}' has a data-dependent shape {tuple(shape)}, which the tensorrt backend"
            " cannot allocate before running (run this graph on onnxruntime)"
        )
    return tuple(shape)


def one_line(error: Exception) -> str:
    return " ".join(str(error).split())


# ---- building ----------------------------------------------------------------------------------------


def engine_path(bundle: Bundle, name: str, precision: str, device: str = "cuda") -> Path:
    """Where the plan of graph ``name`` at ``precision`` lives for ``device``'s GPU model and this TensorRT."""
    import tensorrt as trt
    import torch

    bundle.graph_path(name, precision)  # a missing graph or precision is named here
    entry = bundle.graphs[name] if precision == "fp32" else bundle.graphs[name]["precisions"][precision]
    index = cuda_device(device)
    directory = engine_dir(
        bundle.path, torch.cuda.get_device_capability(index), torch.cuda.get_device_name(index), trt.__version__
    )
    return directory / plan_name(name, precision, entry["sha256"])


def cuda_device(device: str) -> int:
    """The index of CUDA device ``device`` (``cuda``: the current one), checked to exist."""
    import torch

    index = device_index(device)
    index = torch.cuda.current_device() if index is None else index
    if index >= torch.cuda.device_count():
        raise BackendUnavailable(f"device {device}: torch sees {torch.cuda.device_count()} CUDA device(s) here")
    return index


def build(bundle: Bundle, precision: str = "fp32", log: Callable[[str], None] = print, device: str = "cuda") -> list:
    """An engine for every graph of ``bundle`` at ``precision`` on ``device`` (those already built are kept)."""
    require()
    import tensorrt as trt
    import torch
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath, Profile
    from polygraphy.exception import PolygraphyException

    plans = []
    with torch.cuda.device(cuda_device(device)):  # TensorRT builds for the current device
        for name, graph in bundle.graphs.items():
            onnx_path = bundle.graph_path(name, precision)  # also checks the file's sha256
            plan = engine_path(bundle, name, precision, device)
            plans.append(plan)
            if plan.is_file():
                log(f"engine {plan.name} is built already")
                continue
            plan.parent.mkdir(parents=True, exist_ok=True)
            shapes = Profile()
            for tensor, (low, opt, high) in profiles.profile(graph["inputs"]).items():
                shapes.add(tensor, min=low, opt=opt, max=high)
            timing_cache = plan.parent / "timing.cache"
            config = CreateConfig(
                profiles=[shapes],
                load_timing_cache=str(timing_cache) if timing_cache.is_file() else None,
                profiling_verbosity=trt.ProfilingVerbosity.LAYER_NAMES_ONLY,
            )
            network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=True)
            try:
                serialized = EngineBytesFromNetwork(network, config=config, save_timing_cache=str(timing_cache))()
            except PolygraphyException as e:  # an unparsable graph, a failed build: TensorRT's log says more
                raise BundleError(f"{onnx_path}: TensorRT could not build an engine ({one_line(e)})") from None
            tmp = plan.with_name(f".{plan.name}.partial")
            tmp.write_bytes(bytes(serialized))
            os.replace(tmp, plan)  # whole or absent
            log(f"built  {plan.relative_to(bundle.path)}  {plan.stat().st_size / 1e6:.1f} MB")
    return plans


# ---- running -----------------------------------------------------------------------------------------


class TensorRTSession(Session):
    """Graph ``name``'s plan on CUDA device ``device``, over torch CUDA tensors. ``graph``: its manifest entry
    (inputs and outputs with named axes), for the profile checks and the padding of captured shapes."""

    def __init__(self, plan: Path, graph: dict, name: str, device: str = "cuda", cuda_graphs: bool = True):
        require()
        import tensorrt as trt
        import torch
        from polygraphy.backend.trt import EngineFromPath
        from polygraphy.exception import PolygraphyException

        self.torch, self.trt, self.name = torch, trt, name
        self.index = cuda_device(device)
        self.device = f"cuda:{self.index}"
        with torch.cuda.device(self.index):
            try:
                self.engine = EngineFromPath(str(plan))()
            except PolygraphyException as e:
                raise BundleError(f"{plan}: TensorRT could not load this plan ({one_line(e)}); rebuild it") from None
            self.stream = torch.cuda.Stream()  # TensorRT synchronises more on the default stream
            # one block for every context of this engine: they run one at a time, on self.stream
            self.memory = torch.empty(max(1, self.engine.device_memory_size_v2), dtype=torch.uint8, device=self.device)
            self.eager = self.context()  # runs every shape that has no graph
            self.pool = torch.cuda.graph_pool_handle()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        self.dtypes = {n: getattr(torch, torch_dtype(name, n, self.engine.get_tensor_dtype(n).name)) for n in names}
        self.dims = {v["name"]: v["shape"] for v in graph["inputs"] + graph["outputs"]}
        self.bounds = {n: self._bounds(n) for n in self.input_names}  # {input: (min shape, max shape)}
        self.high = {
            d: hi for n in self.input_names for d, hi in zip(self.dims[n], self.bounds[n][1]) if isinstance(d, str)
        }
        self.axes = profiles.padded_axes(graph)
        self.graphs = GraphCache(release=lambda call: self.stream.synchronize()) if cuda_graphs else None

    def _bounds(self, name: str) -> tuple[tuple, tuple]:
        shape = tuple(self.engine.get_tensor_shape(name))
        if all(d >= 0 for d in shape):  # a static input: its shape is its range
            return shape, shape
        low, _, high = self.engine.get_tensor_profile_shape(name, 0)
        return tuple(low), tuple(high)

    def run(self, inputs):
        return {n: self.host(t) for n, t in self.run_device(inputs).items()}

    def run_device(self, inputs):
        torch = self.torch
        args = {n: self._tensor(inputs[n], n) for n in self.input_names}
        shapes = {n: tuple(a.shape) for n, a in args.items()}
        profiles.check_in_profile(self.name, shapes, self.dims, self.bounds)  # one line, not a failed enqueue
        current = torch.cuda.current_stream(self.index)
        with torch.cuda.device(self.index), torch.cuda.stream(self.stream):
            self.stream.wait_stream(current)
            out = self._replayed(args, shapes) if self.graphs is not None else None
            if out is None:
                out = self.bind(self.eager, args)
                if not self.eager.execute_async_v3(self.stream.cuda_stream):
                    raise GlimpseError(f"{self.name}: TensorRT could not run the plan (its log says why)")
        current.wait_stream(self.stream)
        for t in out.values():
            t.record_stream(current)  # made on this stream, used on the caller's
        return out

    def _replayed(self, args: dict, shapes: dict) -> dict | None:
        """The call replayed from the CUDA graph of its padded shapes, or None where there is none (yet)."""
        sizes = profiles.axis_sizes(shapes, self.dims)
        padding = profiles.padded_sizes(sizes, self.high, self.axes)
        padded = {n: pad(a, self.dims[n], padding) for n, a in args.items()}
        try:
            call = self.graphs.get(tuple(tuple(a.shape) for a in padded.values()), lambda: CapturedEngine(self, padded))
        except RuntimeError:  # TensorRT's docs: an engine may hold work a CUDA graph cannot; run it uncaptured
            self.graphs = None
            return None
        if call is None:
            return None
        # copies of the real rows: the next replay overwrites the graph's own outputs, and a search keeps each step's
        contiguous = self.torch.contiguous_format
        return {n: unpad(t, self.dims[n], sizes).clone(memory_format=contiguous) for n, t in call(padded).items()}

    def context(self):
        """A new execution context on the session's shared device memory."""
        context = self.engine.create_execution_context(self.trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if context is None:
            raise GlimpseError(f"{self.name}: TensorRT could not create an execution context (its log says why)")
        context.set_device_memory(self.memory.data_ptr(), self.memory.numel())
        return context

    def bind(self, context, inputs: dict) -> dict:
        """Set ``inputs``' shapes and addresses on ``context``, and bind new output tensors to it -> those."""
        for name, a in inputs.items():
            self._check(context.set_input_shape(name, tuple(a.shape)), f"shape {tuple(a.shape)} for input '{name}'")
            self._check(context.set_tensor_address(name, a.data_ptr()), f"the address of input '{name}'")
        outputs = {}
        for name in self.output_names:
            shape = output_shape(self.name, name, tuple(context.get_tensor_shape(name)))
            outputs[name] = self.torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            self._check(context.set_tensor_address(name, outputs[name].data_ptr()), f"the address of output '{name}'")
        return outputs

    def _check(self, ok: bool, what: str) -> None:
        """TensorRT's setters report errors by returning False (and logging), not by raising."""
        if not ok:
            raise GlimpseError(f"{self.name}: TensorRT refused {what} (its log says why)")

    def host(self, array):
        return array.cpu().numpy() if isinstance(array, self.torch.Tensor) else np.asarray(array)

    def synchronize(self):
        self.torch.cuda.synchronize(self.device)

    def _tensor(self, x, name: str):
        torch = self.torch
        x = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
        return x.to(self.device, self.dtypes[name]).contiguous()


class CapturedEngine:
    """One set of input shapes of a session: an execution context of its own, static buffers bound to it
    once, and the CUDA graph of its enqueue. A call copies its inputs in and replays the graph -> the
    static outputs (overwritten by the next call). Raises RuntimeError where capture fails."""

    def __init__(self, session: TensorRTSession, args: dict):
        torch, stream = session.torch, session.stream
        self.context = session.context()
        self.inputs = {n: a.clone() for n, a in args.items()}
        self.outputs = session.bind(self.context, self.inputs)  # shapes and addresses: before the capture
        # enqueue once outside the capture, as trtexec does: a first enqueue may do set-up work that a
        # graph must not hold
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT could not enqueue the plan")
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=session.pool, stream=stream, capture_error_mode="thread_local"):
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT could not enqueue the plan under capture")

    def __call__(self, args: dict) -> dict:
        for name, a in args.items():
            self.inputs[name].copy_(a)
        self.graph.replay()
        return self.outputs


def tensorrt_sessions(bundle: Bundle, names: list[str], precision: str, device: str, cuda_graphs: bool) -> dict:
    device_index(device)  # 'cpu' is refused in one line, before anything is imported
    require()
    sessions = {}
    for name in names:
        plan = engine_path(bundle, name, precision, device)
        if not plan.is_file():
            raise BundleError(
                f"{bundle.path}: no {precision} engine of '{name}' for this GPU and TensorRT"
                f" (build it with: glimpse build {bundle.path} --precision {precision} --device {device})"
            )
        sessions[name] = TensorRTSession(plan, bundle.graphs[name], name, device, cuda_graphs)
    return sessions
