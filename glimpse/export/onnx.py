"""Family-agnostic ONNX export and validation: one ``Graph`` in, one checked .onnx file out."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torch.export import Dim

OPSET = 18  # parsed by TensorRT 10 and 11 and by every maintained ONNX Runtime

_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.BOOL: "bool",
}


@dataclass
class Graph:
    """A module cut for export: example inputs by name (in call order), their dynamic axes, output names."""

    name: str
    module: nn.Module
    inputs: dict[str, torch.Tensor]
    outputs: list[str]
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)  # input -> {axis: axis name}

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"


def export(graph: Graph, path: Path) -> float:
    """Export ``graph`` to ``path`` on the CPU with the torch.export-based exporter; returns seconds."""
    dims: dict[str, Dim] = {}
    shapes = {
        name: {axis: dims.setdefault(n, Dim(n)) for axis, n in graph.dynamic.get(name, {}).items()} or None
        for name in graph.inputs
    }
    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's internal deprecation chatter
        torch.onnx.export(
            graph.module.eval(),
            tuple(graph.inputs.values()),
            str(path),
            input_names=list(graph.inputs),
            output_names=graph.outputs,
            dynamic_shapes=shapes,
            opset_version=OPSET,
            external_data=False,
            dynamo=True,
            verbose=False,
        )
    return time.perf_counter() - start


def describe(path: Path) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs of an ONNX file: name, dtype and shape, dynamic axes by name."""

    def io(values):
        return [
            {
                "name": v.name,
                "dtype": _DTYPES.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type)),
                "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
            }
            for v in values
        ]

    model = onnx.load(str(path), load_external_data=False)
    return io(model.graph.input), io(model.graph.output)


def errors(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per output: max |got - want| and that over max |want| (relative to the output's scale, so that
    values near zero do not inflate it)."""
    out = {}
    for name, w in want.items():
        w = np.asarray(w, np.float64)
        d = float(np.abs(np.asarray(got[name], np.float64) - w).max()) if w.size else 0.0
        out[name] = {"max_abs": d, "max_rel": d / max(float(np.abs(w).max()) if w.size else 0.0, 1e-30)}
    return out


def merge_errors(a: dict, b: dict) -> dict:
    """The worse of two error tables, output by output."""
    return {k: {m: max(a.get(k, {}).get(m, 0.0), v[m]) for m in v} for k, v in b.items()}
