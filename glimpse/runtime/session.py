"""One interface for every backend: named arrays in, named arrays out.

    session = open_session("encoder.onnx", backend="onnxruntime")
    features = session.run({"image": batch})["features"]

Backends import their packages lazily, so serving with ONNX Runtime needs neither torch nor TensorRT.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from glimpse.errors import BackendUnavailable


class Session:
    """A graph ready to run. ``run`` takes and returns dicts of numpy arrays keyed by I/O name."""

    device = "cpu"

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def run_device(self, inputs: dict) -> dict:
        """``run`` for loops that feed outputs back in: inputs may be numpy arrays or this session's
        device arrays, outputs stay on the device (``host`` brings one back). numpy for CPU backends."""
        return self.run(inputs)

    def host(self, array) -> np.ndarray:
        return np.asarray(array)

    def synchronize(self) -> None:
        """Wait for the work queued on the device (for timing); CPU backends finish in ``run``."""


def cpu_threads() -> int:
    """Cores this process may use (cgroup/affinity aware), which ONNX Runtime's default ignores."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_shared_pool: list[int] = []  # the threads of the process-wide pool, once share_threads made it


def share_threads(threads: int | None = None) -> None:
    """Run every ONNX Runtime session this process opens from now on on one pool of ``threads`` threads (default:
    the cores), which spins between runs; a second call changes nothing.

    A pipeline alternates sessions (encoder, init, step, step, ...). Pools of their own would each spin on the
    cores after a run and steal them from the next session's (2.2x slower captions on 2 cores), so they sleep,
    and waking them costs each of a step's operators tens of microseconds: a beam-5 int8 step of the
    tutorial-size model takes 1.17 ms so, 0.72 ms on the shared pool, and its captions 102 ms against 78.
    After this call ONNX Runtime refuses any session a pool of its own (onnxruntime.quantization's calibration
    makes one), so only a process that just runs pipelines calls it: the ``glimpse`` program for its pipeline
    commands, the bench's contenders. A server's replicas share the cores with each other and keep sleeping
    pools. The pool spins about 30 ms after a run, on one core."""
    if _shared_pool:
        return
    from onnxruntime.capi import _pybind_state  # where onnxruntime's Python API has the global pools

    make_pool = getattr(_pybind_state, "set_global_thread_pool_sizes", None)
    if make_pool is None:  # an onnxruntime older than its Python global pools: each session keeps its own
        return
    threads = threads or cpu_threads()
    make_pool(threads, 1)
    _shared_pool.append(threads)


class OnnxRuntimeSession(Session):
    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None, arena: bool = True):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("onnxruntime is not installed (pip install onnxruntime)") from None
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if _shared_pool:  # the pool's threads, whatever ``threads`` asks (see share_threads)
            opts.use_per_session_threads = False
        else:  # a pool of its own, asleep between runs so as not to steal the next session's cores
            opts.intra_op_num_threads = threads or cpu_threads()
            opts.inter_op_num_threads = 1  # one graph at a time: the decode loop is sequential
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # ONNX Runtime's CPU arena keeps every block it ever took and grows by doubling regions: fastest for a
        # short run; a server's memory would only ever step up (docs/serving.md, Soak).
        opts.enable_cpu_mem_arena = arena
        if device == "cpu":
            providers = ["CPUExecutionProvider"]
        elif "CUDAExecutionProvider" in ort.get_available_providers():
            providers = [
                ("CUDAExecutionProvider", {"device_id": int(device.partition(":")[2] or 0)}),
                "CPUExecutionProvider",
            ]
        else:
            raise BackendUnavailable(
                f"onnxruntime here has no CUDA provider for device {device} (pip install onnxruntime-gpu)"
            )
        self.device = device
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs):
        outputs = self.session.run(self.output_names, {n: inputs[n] for n in self.input_names})
        return dict(zip(self.output_names, outputs))
