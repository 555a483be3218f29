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


class OnnxRuntimeSession(Session):
    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None, arena: bool = True):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("onnxruntime is not installed (pip install onnxruntime)") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or cpu_threads()
        opts.inter_op_num_threads = 1  # one graph at a time: the decode loop is sequential
        opts.log_severity_level = 3
        # ONNX Runtime's CPU arena keeps every block it ever took and grows by doubling regions: fastest
        # for a short run; a server's memory would only ever step up (docs/serving.md, Soak).
        opts.enable_cpu_mem_arena = arena
        # Every session has its own thread pool, and a pool spins on its cores after each run. A
        # pipeline alternates sessions (encoder, init, step, step, ...), so a spinning pool would steal
        # the cores from the next session's: 2.2x slower captions at batch 1 on 2 cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
