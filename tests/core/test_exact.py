"""The exact region: comparisons never read a reduced copy of a tensor its neighbours read in float.

The graph here is the shape of the bug that broke INT8 of every unpooling network: a window's
slices, their Max, a Q/DQ pair on the Max for the Conv that reads it, and an Equal that
(through the quantizer's shared pair) compared the float slices with the quantized Max.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segexport.core.exact import exact_region, exact_violations, restore_exact_inputs


def _pool_mask_graph(copy: str) -> onnx.ModelProto:
    """x -> two slices -> Max -> (copy) -> Conv, and Equal(slice0, copy-or-max) as the mask."""
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
             (("s0", [0]), ("s1", [1]), ("e", [8]), ("ax", [3]), ("st", [2]))]
    inits += [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w"),
              numpy_helper.from_array(np.array(0.05, np.float32), "scale"),
              numpy_helper.from_array(np.array(0, np.int8), "zp")]
    nodes = [helper.make_node("Slice", ["x", "s0", "e", "ax", "st"], ["a"], name="slice_a"),
             helper.make_node("Slice", ["x", "s1", "e", "ax", "st"], ["b"], name="slice_b"),
             helper.make_node("Max", ["a", "b"], ["top"], name="max")]
    if copy == "qdq":
        nodes += [helper.make_node("QuantizeLinear", ["top", "scale", "zp"], ["top_q"], name="q"),
                  helper.make_node("DequantizeLinear", ["top_q", "scale", "zp"], ["top_dq"], name="dq")]
        shared = "top_dq"
    else:
        nodes += [helper.make_node("Cast", ["top"], ["top_h"], to=TensorProto.FLOAT16, name="down"),
                  helper.make_node("Cast", ["top_h"], ["top_f"], to=TensorProto.FLOAT, name="up")]
        shared = "top_f"
    nodes += [helper.make_node("Conv", [shared, "w"], ["y"], name="conv"),
              helper.make_node("Equal", ["a", shared], ["mask"], name="eq",
                               )]
    nodes[-1].metadata_props.add(key="pkg.torch.onnx.name_scopes", value="['', 'encoder.pool1', 'aten.eq']")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1, 4]),
                               helper.make_tensor_value_info("mask", TensorProto.BOOL, [1, 1, 1, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(model: onnx.ModelProto, x: np.ndarray):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


@pytest.mark.parametrize("copy", ["qdq", "cast"])
def test_reduced_copy_read_by_a_comparison_is_found_and_restored(copy):
    model = _pool_mask_graph(copy)
    assert {n.name for n in exact_region(model)} == {"eq", "max", "slice_a", "slice_b"}
    found = exact_violations(model)
    assert [(f.node, f.source, f.module) for f in found] == [("eq", "top", "encoder.pool1")]
    x = np.array([[[[0.013, 0.011, 0.5, 0.49, 0.0, 0.0, 0.3, 0.31]]]], np.float32)
    mask_before = _run(model, x)[1]
    assert restore_exact_inputs(model) == 1
    assert not exact_violations(model)
    y, mask = _run(model, x)
    assert mask.tolist() == (x[..., 0::2] >= x[..., 1::2]).tolist()  # the first max of each float window
    assert mask_before.tolist() != mask.tolist()  # the copy did change the comparison: the test can fail
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert conv.input[0] == ("top_dq" if copy == "qdq" else "top_f")  # the Conv keeps its reduced copy
    onnx.checker.check_model(model)


def test_a_conv_reading_a_copy_is_not_a_violation():
    """Q/DQ before a Conv is what INT8 is: only the exact region is held to float."""
    model = _pool_mask_graph("qdq")
    eq = next(n for n in model.graph.node if n.name == "eq")
    eq.input[1] = "top"
    assert not exact_violations(model)
    assert restore_exact_inputs(model) == 0
