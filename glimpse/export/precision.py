"""FP16 and INT8 versions of a bundle's graphs, written beside the fp32 ones and recorded in its manifest.

TensorRT 11 builds only strongly typed networks, so the precision lives in the ONNX graph, and the same
graph runs on ONNX Runtime, where its accuracy is measured on any machine.

* fp16: onnxruntime's own float16 converter; float32 graph inputs and outputs, and the numerically
  sensitive ops (softmax, log-softmax, normalisations, reductions, top-k) kept in float32, as is the
  fused step's beam selection (everything that reads the running scores).
* int8: explicit Q/DQ from ``onnxruntime.quantization.quantize_static``, with TensorRT's rules:
  symmetric int8 activations and weights (zero point 0), per-channel weights, bias left in float,
  only Conv/MatMul/Gemm quantised. Calibration inputs are the graphs' real inputs: images through the
  bundle's preprocessing (an m2 bundle: detection regions), and for the step, the states recorded while
  decoding them. The ranges found are kept in ``calibration/<graph>-<key>.json`` (onnxruntime's
  calibration cache), keyed by the fp32 graph and the calibration inputs, so quantizing again with the
  same images skips them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from glimpse.bundle import MANIFEST, Bundle, sha256_of
from glimpse.errors import GlimpseError
from glimpse.export import onnx as onnx_export

PRECISIONS = ("fp16", "int8")
KEEP_FP32 = ["Softmax", "LogSoftmax", "LayerNormalization", "ReduceMean", "ReduceSum", "ReduceMax", "Sigmoid", "TopK"]
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]
CHECK_IMAGES = 8  # images whose decoding supplies the inputs each converted graph is measured on
CALIBRATION = "calibration"
# The fused step: its choices (compared exactly) and the values compared where the choices agree.
SELECTION = ("next_tokens", "parents", "ended")  # in the slots chosen (the others hold losers)
FUSED_VALUES = ("next_scores", "h_next", "c_next", "alpha")


def to_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(src)
    keep = downstream(model, "scores")  # a fused step's running scores: -20 in fp16 is a 0.016 grid
    model = convert_float_to_float16(model, keep_io_types=True, op_block_list=KEEP_FP32, node_block_list=keep)
    onnx.save(model, dst)


def downstream(model, name: str) -> list[str]:
    """Names of the nodes that read graph input ``name``, directly or through other nodes (in order)."""
    reached, nodes = {name}, []
    for node in model.graph.node:  # topologically sorted, as ONNX requires
        if reached.intersection(node.input):
            reached.update(node.output)
            nodes.append(node.name)
    return nodes


def to_int8(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], cache: Path) -> None:
    """Q/DQ-quantize ``src`` on the ranges in ``cache``, found from ``feeds`` first if it is absent."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    logging.getLogger().setLevel(logging.ERROR)  # quantize_static warns on the root logger about pre-processing
    quantize_static(
        str(src),
        str(dst),
        Feeds(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=QUANTIZED_OPS,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        calibration_cache_path=cache,
    )


def recorded_feeds(pipe, run: Callable, inputs: np.ndarray, batch: int = 8) -> dict[str, list]:
    """Each graph's inputs while ``run(pipe, chunk, offset)`` serves ``inputs`` (what the encoder reads) in chunks
    of ``batch``: {graph: [feed, ...]}. ``run`` is the family's ``calibrate``: a captioner decodes, a VQA
    or matching model reads texts with the images."""
    feeds: dict[str, list] = {name: [] for name in pipe.sessions}
    for name, session in pipe.sessions.items():
        original = session.run

        def recording(inputs, original=original, name=name):
            feeds[name].append({k: np.ascontiguousarray(v) for k, v in inputs.items()})
            return original(inputs)

        session.run = recording
    for i in range(0, len(inputs), batch):
        run(pipe, inputs[i : i + batch], i)
    return feeds


def calibration_cache(bundle: Bundle, name: str, inputs: np.ndarray) -> Path:
    """Where the ranges of graph ``name`` calibrated on ``inputs`` are kept: a name that changes with
    the fp32 graph and with every calibration input."""
    key = hashlib.sha256(bundle.graphs[name]["sha256"].encode())
    key.update(str(inputs.shape).encode())
    key.update(np.ascontiguousarray(inputs, np.float32).tobytes())
    return bundle.path / CALIBRATION / f"{name}-{key.hexdigest()[:16]}.json"


def quantize(
    bundle: Bundle, precision: str, inputs: np.ndarray, record: Callable, log: Callable[[str], None] = print
) -> Bundle:
    """Write ``<graph>.<precision>.onnx`` for every graph of ``bundle``, measure each against fp32 on
    the inputs seen while running the first calibration images (``inputs``: what the encoder reads;
    ``record(inputs)`` -> {graph: [feed, ...]}, see ``glimpse.families.recorder``), and record them in the
    manifest."""
    from glimpse.runtime.session import OnnxRuntimeSession

    if precision not in PRECISIONS:
        raise GlimpseError(f"unknown precision '{precision}' (choose from {', '.join(PRECISIONS)})")
    caches = {name: calibration_cache(bundle, name, inputs) for name in bundle.graphs}
    calibrate = precision == "int8" and not all(c.is_file() for c in caches.values())
    if precision == "int8" and not calibrate:
        log(f"reusing the calibration cache of these {len(inputs)} images ({CALIBRATION}/)")
    feeds = record(inputs if calibrate else inputs[:CHECK_IMAGES])
    manifest = json.loads((bundle.path / MANIFEST).read_text())
    for name in bundle.graphs:
        src = bundle.graph_path(name)
        dst = src.with_name(f"{name}.{precision}.onnx")
        tmp = dst.with_name(f".{dst.name}.partial")
        entry: dict = {}
        if precision == "fp16":
            to_fp16(src, tmp)
        else:
            caches[name].parent.mkdir(exist_ok=True)
            for stale in caches[name].parent.glob(f"{name}-*.json"):
                if stale != caches[name]:
                    stale.unlink()
            to_int8(src, tmp, feeds[name], caches[name])
            entry["calibration"] = {"images": len(inputs), "cache": str(caches[name].relative_to(bundle.path))}
        os.replace(tmp, dst)
        reference, converted = OnnxRuntimeSession(src), OnnxRuntimeSession(dst)
        sample = feeds[name][:: max(1, len(feeds[name]) // 16)]  # up to ~16 feeds spread over the run
        errors: dict = {}
        agree = 0
        for feed in sample:
            got, want = converted.run(feed), reference.run(feed)
            if name == "step_fused":  # values compared where both chose the same beams
                chosen = np.arange(feed["tokens"].shape[1])[None, :] < feed["width"][:, None]  # (B, K)
                if not all(np.array_equal(got[o][chosen], want[o][chosen]) for o in SELECTION):
                    continue
                agree += 1
                got, want = ({o: x[o][chosen] for o in FUSED_VALUES} for x in (got, want))
            errors = onnx_export.merge_errors(errors, onnx_export.errors(got, want))
        worst_output, worst = max(errors.items(), key=lambda kv: kv[1]["max_rel"], default=("-", {"max_rel": np.nan}))
        size = dst.stat().st_size / 1e6
        line = f"{precision} {dst.name:<18} {size:7.1f} MB  max rel error {worst['max_rel']:.2e} ({worst_output})"
        if name == "step_fused":
            entry["same_beams"] = f"{agree}/{len(sample)} feeds"
            line += f", the same beams as fp32 on {agree}/{len(sample)} feeds"
        log(line)
        manifest["graphs"][name].setdefault("precisions", {})[precision] = {
            "file": dst.name,
            "sha256": sha256_of(dst),
            "bytes": dst.stat().st_size,
            "max_error_vs_fp32": errors,
            **entry,
        }
    tmp = bundle.path / f".{MANIFEST}.partial"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, bundle.path / MANIFEST)  # the manifest last: it names only complete files
    return Bundle(bundle.path)
