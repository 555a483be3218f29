"""The TensorRT parser rules of glimpse check, each shown to catch a graph that breaks it (graphs built
by hand, a few nodes each); that real bundles pass is tested with them (test_precision)."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper, save

from glimpse.export.check import check_graph

F, I8 = TensorProto.FLOAT, TensorProto.INT8


def graph(nodes, inputs=(("x", F, ["batch", 8]),), outputs=(("y", F, None),), inits=(), opset=18):
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in inits],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def problems(tmp_path, model, name="step"):
    save(model, tmp_path / "g.onnx")
    return check_graph(tmp_path / "g.onnx", name).problems


def qdq(zero_point):
    scale = ("s", np.float32(0.1))
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"]),
    ]
    return graph(nodes, inits=[scale, ("zp", zero_point)])


def test_a_clean_graph_passes(tmp_path):
    assert problems(tmp_path, qdq(np.int8(0))) == []
    assert problems(tmp_path, graph([helper.make_node("Relu", ["x"], ["y"])])) == []


@pytest.mark.parametrize(
    "model, expected",
    [
        (qdq(np.uint8(128)), "must be int8 zeros"),
        (qdq(np.int8(3)), "must be int8 zeros"),
        (graph([helper.make_node("QuantizeLinear", ["x", "s"], ["y"])], inits=[("s", np.float32(1))]), "zero point"),
        (
            graph(
                [helper.make_node("DequantizeLinear", ["b", "s", "zp"], ["y"])],
                inits=[("b", np.arange(8, dtype=np.int32)), ("s", np.float32(1)), ("zp", np.int32(0))],
            ),
            "int8 only",
        ),
        (
            graph(
                [helper.make_node("TopK", ["x", "k"], ["y", "i"])],
                outputs=[("y", F, None), ("i", TensorProto.INT64, None)],
                inits=[("k", np.array([4000]))],
            ),
            "must be below 3840",
        ),
        (
            graph(
                [helper.make_node("TopK", ["x", "k"], ["y", "i"], sorted=0)],
                outputs=[("y", F, None), ("i", TensorProto.INT64, None)],
                inits=[("k", np.array([5]))],
            ),
            "sorted must be 1",
        ),
        (graph([helper.make_node("MatMulInteger", ["x", "x"], ["y"])]), "not an operator TensorRT"),
        (graph([helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=4, layout=1)]), "layout must be 0"),
        (graph([helper.make_node("Relu", ["x"], ["y"])], opset=8), "opset 8"),
        (graph([helper.make_node("Relu", ["x"], ["y"])], inputs=[("x", F, [None, 8])]), "dynamic and unnamed"),
        (graph([helper.make_node("Relu", ["x"], ["y"])], inputs=[("x", F, ["sentences", 8])]), "no profile range"),
        (
            graph(
                [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.DOUBLE)],
                outputs=[("y", TensorProto.DOUBLE, None)],
            ),
            "is double",
        ),
        (graph([helper.make_node("Cast", ["x"], ["y"], to=I8)], outputs=[("y", I8, None)]), "int8 outside Q/DQ"),
    ],
)
def test_each_rule_catches_its_violation(tmp_path, model, expected):
    found = problems(tmp_path, model)
    assert any(expected in p for p in found), found


def test_control_flow_is_refused_in_step_graphs_only(tmp_path):
    then = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["t"])], "then", [], [helper.make_tensor_value_info("t", F, None)]
    )
    other = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["e"])], "else", [], [helper.make_tensor_value_info("e", F, None)]
    )
    model = graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)],
        inputs=[("x", F, [8]), ("c", TensorProto.BOOL, [])],
    )
    assert any("control flow" in p for p in problems(tmp_path, model, "step"))
    assert problems(tmp_path, model, "encoder") == []
    # nodes inside the branches are checked too
    model.graph.node[0].attribute[0].g.node[0].op_type = "MatMulInteger"
    assert any("MatMulInteger" in p for p in problems(tmp_path, model, "encoder"))
