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

from glimpse.export.compare import METRIC, TOLERANCE, error

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
    lstm_lengths: str | None = None  # an input to give every LSTM as its sequence_lens (glimpse.families.vqa.model)

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
    model = onnx.load(str(path))
    if graph.lstm_lengths:
        set_lstm_lengths(model, graph.lstm_lengths)
    # the exporter keeps every parameter of the module, used or not (a graph cut from a method of a
    # whole model would carry all of it)
    used = {name for node in model.graph.node for name in node.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return time.perf_counter() - start


def set_lstm_lengths(model: onnx.ModelProto, lengths: str) -> None:
    """Give every LSTM operator the int64 input ``lengths`` (B,) as its sequence_lens, so that each
    row's outputs stop at its length as a packed PyTorch batch does (the exporter leaves it empty: it
    traces the LSTM over the padded batch)."""
    lstms = [n for n in model.graph.node if n.op_type == "LSTM"]
    if not lstms:
        raise ValueError("no LSTM operator to give the lengths to")
    cast = onnx.helper.make_node("Cast", [lengths], [f"{lengths}_int32"], to=onnx.TensorProto.INT32)
    for node in lstms:
        while len(node.input) < 5:
            node.input.append("")
        node.input[4] = cast.output[0]
    model.graph.node.insert(0, cast)


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


# --------------------------------------------------------------------------- into a bundle


def synthetic_images(preprocess, n: int = 2, seed: int = 0) -> np.ndarray:
    """Uniform-noise images through the bundle's preprocessing: (n, 3, H, W) float32."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = preprocess.output_size
    return np.stack([preprocess(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))) for _ in range(n)])


def example_texts(tokens: int, n: int = 6, words: int = 9, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n padded random texts (questions, sentences) of lengths 1 .. words, unsorted: (tokens (n, T), lengths (n,))."""
    rng = np.random.default_rng(seed)
    lengths = rng.permutation(np.linspace(1, words, n).round().astype(np.int64))
    ids = rng.integers(1, tokens, (n, words))
    ids[np.arange(words)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


def write_bundle(
    model: nn.Module,
    family: str,
    graphs: list[Graph],
    check,
    vocabs: dict,
    preprocess,
    out,
    check_notes: dict,
    images: np.ndarray | None = None,
    force: bool = False,
    tolerance: float = TOLERANCE,
    source: dict | None = None,
    log=print,
) -> Path:
    """Export ``graphs`` of ``model`` (in eval mode) into a bundle at ``out``, check them with
    ``check(sessions, images) -> errors`` on noise images and the preprocessed ``images`` (N, 3, H, W),
    and commit the manifest; raise ExportError, leaving nothing at ``out``, if a graph is off (relative
    error above ``tolerance``). ``vocabs``: manifest key -> (file name, Vocab); the first is the model's
    input vocabulary, whose special tokens are recorded. ``force``: replace a directory that is not a
    bundle; ``source``: what the bundle was made from, for the manifest."""
    from glimpse.bundle import BundleWriter

    check_images = synthetic_images(preprocess) if preprocess else np.zeros(0)  # no preprocess: no image input
    if images is not None and len(images):
        check_images = np.concatenate([check_images, images.astype(np.float32)])
    with BundleWriter(out, force=force) as writer:
        entries, sessions = export_graphs(writer, graphs, log)
        record_errors(entries, check(sessions, check_images), tolerance, log)
        for file, vocab in vocabs.values():
            vocab.save(writer.file(file))
        return writer.commit(
            {
                "family": family,
                "config": model.config.to_dict(),
                "preprocess": preprocess.to_dict() if preprocess else None,
                **{key: file for key, (file, _) in vocabs.items()},
                "special_tokens": next(iter(vocabs.values()))[1].special,
                "graphs": entries,
                "files": {"weights": save_weights(writer, model)},
                "check": {"tolerance": tolerance, "images": len(check_images), **check_notes, "metric": METRIC},
                "source": source or {},
                "tools": tool_versions(),
            }
        )


def export_graphs(writer, graphs: list[Graph], log) -> tuple[dict, dict]:
    """Export ``graphs`` into a BundleWriter's directory -> (manifest entries, ONNX Runtime sessions)."""
    from glimpse.bundle import sha256_of
    from glimpse.runtime.session import OnnxRuntimeSession

    entries, sessions = {}, {}
    for graph in graphs:
        path = writer.file(graph.file)
        seconds = export(graph, path)
        sessions[graph.name] = OnnxRuntimeSession(path)
        inputs, outputs = describe(path)
        entries[graph.name] = {
            "file": graph.file,
            "sha256": sha256_of(path),
            "bytes": path.stat().st_size,
            "precision": "fp32",
            "inputs": inputs,
            "outputs": outputs,
        }
        log(f"exported {graph.file:<14} {path.stat().st_size / 1e6:8.1f} MB  {seconds:5.1f} s")
    return entries, sessions


def record_errors(entries: dict, tables: dict, tolerance: float, log) -> None:
    """Put each graph's measured error into its manifest entry; raise ExportError if one is above
    ``tolerance`` (see ``error``), so that nothing is written."""
    from glimpse.errors import ExportError

    for name, table in tables.items():
        entries[name]["max_error"] = table
        worst_output, worst = max(table.items(), key=lambda kv: np.nan_to_num(error(kv[1]), nan=np.inf))
        log(f"checked  {name + '.onnx':<14} error {error(worst):.1e} ({worst_output})")
        if not error(worst) <= tolerance:  # also catches NaN
            raise ExportError(
                f"{name}.onnx: output '{worst_output}' differs from the PyTorch reference by {error(worst):.1e}"
                f" (worst element {worst['max_over_std']:.1e} of the output's spread, relative L2"
                f" {worst['rel_l2']:.1e}), above --tolerance {tolerance:.0e}; nothing was written"
            )


def save_weights(writer, model: nn.Module) -> dict:
    """The model's plain state dict for the torch backend -> its manifest entry."""
    from glimpse.bundle import sha256_of

    path = writer.file("weights.pt")
    torch.save(model.state_dict(), path)
    return {"file": path.name, "sha256": sha256_of(path), "bytes": path.stat().st_size}


def tool_versions() -> dict:
    import platform

    import onnxruntime

    from glimpse import __version__

    return {
        "glimpse": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": OPSET,
        "python": platform.python_version(),
    }
