"""``glimpse check``: every graph of a bundle, in every precision, against the rules of TensorRT's ONNX
parser, statically, so that a graph TensorRT would refuse is found on a machine without TensorRT.

The rules (onnx-tensorrt's docs/operators.md for TensorRT 10; TensorRT 11 parses opsets 9 to 25):

    opset      the default domain's opset in 9..25, no other operator domain (custom ops need plugins)
    ops        every node, in subgraphs too, an operator the parser supports
    dtypes     no double, string, unsigned-16/32/64 or complex tensors; int8 only as quantized data
               (a QuantizeLinear output, a DequantizeLinear input, a zero point)
    qdq        QuantizeLinear/DequantizeLinear with an int8 zero point that is all zeros; dequantized
               data int8 (an int32 bias dequantization is refused)
    topk       TopK with sorted = 1 and a constant K below 3840
    lstm       LSTM with layout 0, input_forget 0, and one set of activations for both directions
    loops      no Loop, If or Scan in a decoder step graph (it is replayed every step)
    profiles   every dynamic axis of every input named and given a min/opt/max range (glimpse.runtime.profiles)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from glimpse.bundle import Bundle
from glimpse.runtime.profiles import AXIS_RANGES

OPSETS = range(9, 26)
MAX_TOPK = 3840
CONTROL_FLOW = {"Loop", "If", "Scan"}
SUPPORTED_OPS = frozenset(
    """Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike
    Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
    DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements
    GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
    GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf
    IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool
    MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot
    Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
    ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round
    ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax
    Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu
    Unsqueeze Upsample Where Xor""".split()
)


@dataclass
class Report:
    graph: str
    precision: str
    file: str
    opset: int | None = None
    nodes: int = 0
    problems: list[str] = field(default_factory=list)
    skipped: str = ""  # why this graph is not held to TensorRT's rules (int8's CPU variant)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_bundle(bundle: Bundle) -> list[Report]:
    """One report per graph file of the bundle: each graph in fp32 and in every precision made of it; int8's
    CPU variant, which TensorRT never runs, as a skipped report."""
    reports = []
    for name, graph in bundle.graphs.items():
        for precision, entry in (("fp32", graph), *graph.get("precisions", {}).items()):
            reports.append(check_graph(bundle.graph_path(name, precision), name, precision))
            cpu = entry.get("cpu")
            if cpu and cpu["file"] != graph["file"]:  # not the fp32 graph kept for the CPU
                why = f"{cpu['scheme']} for ONNX Runtime's CPU provider; TensorRT runs {entry['file']}"
                reports.append(Report(name, f"{precision}-cpu", cpu["file"], skipped=why))
    return reports


def check_graph(path: Path, name: str, precision: str = "fp32") -> Report:
    import onnx

    model = onnx.load(path)
    report = Report(name, precision, path.name)
    domains = {o.domain: o.version for o in model.opset_import}
    report.opset = domains.pop("", domains.pop("ai.onnx", None))
    if report.opset not in OPSETS:
        report.problems.append(f"opset {report.opset}: TensorRT parses opsets {OPSETS[0]} to {OPSETS[-1]}")
    for domain in domains:
        report.problems.append(f"operator domain '{domain}': TensorRT's parser knows only the ONNX domain")

    nodes = list(_nodes(model.graph))
    report.nodes = len(nodes)
    constants = _constants(model.graph)
    types = _types(model)
    for node in nodes:
        where = f"{node.op_type} '{node.name}'"
        if node.op_type not in SUPPORTED_OPS:
            report.problems.append(f"{where}: not an operator TensorRT's parser supports")
        if node.op_type in CONTROL_FLOW and name.startswith("step"):
            report.problems.append(f"{where}: control flow in a step graph")
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            report.problems += [f"{where}: {p}" for p in _qdq_problems(node, constants, types)]
        if node.op_type == "TopK":
            report.problems += [f"{where}: {p}" for p in _topk_problems(node, constants)]
        if node.op_type == "LSTM":
            report.problems += [f"{where}: {p}" for p in _lstm_problems(node)]
    report.problems += _dtype_problems(nodes, types)
    report.problems += _profile_problems(model.graph)
    return report


# --------------------------------------------------------------------------- rules


def _qdq_problems(node, constants: dict, types: dict) -> list[str]:
    from onnx import TensorProto

    problems = []
    if len(node.input) < 3 or not node.input[2]:
        # without a zero point, QuantizeLinear makes uint8
        return ["no zero point (TensorRT needs an int8 zero point of 0)"]
    zero_point = constants.get(node.input[2])
    if zero_point is None:
        problems.append("zero point is not a constant")
    elif zero_point.dtype.name != "int8" or zero_point.any():
        problems.append(f"zero point {zero_point.dtype.name} {zero_point.ravel()[:4].tolist()}: must be int8 zeros")
    if node.op_type == "DequantizeLinear" and types.get(node.input[0], TensorProto.INT8) != TensorProto.INT8:
        problems.append(f"dequantizes {TensorProto.DataType.Name(types[node.input[0]])} data (int8 only)")
    return problems


def _topk_problems(node, constants: dict) -> list[str]:
    problems = []
    if next((a.i for a in node.attribute if a.name == "sorted"), 1) != 1:
        problems.append("sorted must be 1")
    k = constants.get(node.input[1])
    if k is None:
        problems.append("K is not a constant")
    elif int(k.ravel()[0]) >= MAX_TOPK:
        problems.append(f"K = {int(k.ravel()[0])}: must be below {MAX_TOPK}")
    return problems


def _lstm_problems(node) -> list[str]:
    attrs = {a.name: a for a in node.attribute}
    problems = [f"{name} must be 0" for name in ("layout", "input_forget") if name in attrs and attrs[name].i != 0]
    activations = [a.decode() for a in attrs["activations"].strings] if "activations" in attrs else []
    if len(activations) == 6 and activations[:3] != activations[3:]:
        problems.append(f"activations differ between directions ({activations})")
    return problems


def _dtype_problems(nodes: list, types: dict) -> list[str]:
    from onnx import TensorProto

    refused = {"DOUBLE", "STRING", "UINT16", "UINT32", "UINT64", "COMPLEX64", "COMPLEX128"}
    problems = [
        f"tensor '{t}' is {TensorProto.DataType.Name(d).lower()}"
        for t, d in types.items()
        if TensorProto.DataType.Name(d) in refused
    ]
    qdq = [n for n in nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    quantized = {n.output[0] for n in qdq if n.op_type == "QuantizeLinear"}
    quantized |= {n.input[0] for n in qdq if n.op_type == "DequantizeLinear"} | {n.input[2] for n in qdq if n.input[2:]}
    problems += [
        f"tensor '{t}' is int8 outside Q/DQ" for t, d in types.items() if d == TensorProto.INT8 and t not in quantized
    ]
    return problems


def _profile_problems(graph) -> list[str]:
    problems = []
    for value in graph.input:
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value"):
                continue
            if not dim.dim_param:
                problems.append(f"input '{value.name}' axis {i} is dynamic and unnamed: no profile can cover it")
            elif dim.dim_param not in AXIS_RANGES:
                problems.append(f"input '{value.name}' axis {i} '{dim.dim_param}' has no profile range")
    return problems


# --------------------------------------------------------------------------- graph walking


def _nodes(graph):
    """Every node of ``graph`` and of the subgraphs in its attributes."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from _nodes(sub)


def _constants(graph) -> dict:
    """Initializers and Constant-node values by tensor name."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in _nodes(graph):
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _types(model) -> dict:
    """Element type of every tensor whose type is known: inputs, outputs, initializers and, after
    shape inference, the values in between."""
    import onnx

    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # an ill-formed graph: check what is declared
        graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    types |= {t.name: t.data_type for t in graph.initializer}
    return {k: v for k, v in types.items() if v}
