"""The graph-level fixes behind third-party exports, on hand-built ONNX graphs (milliseconds):
Resize scales stay float32 whatever onnxslim does, axes TensorRT needs constant are folded,
and lint judges constness after folding."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from segexport.exporter.export import _clean_up, _float_resize_scales, _fold_required_constants
from segexport.exporter.lint import static_findings


def _resize_model(scales_dtype=np.float64, as_constant=False) -> onnx.ModelProto:
    scales = np.array([1, 1, 2, 2], dtype=scales_dtype)
    nodes, inits = [], []
    if as_constant:
        nodes.append(helper.make_node("Constant", [], ["scales"], value=numpy_helper.from_array(scales, "scales")))
    else:
        inits.append(numpy_helper.from_array(scales, "scales"))
    nodes.append(helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("as_constant", [False, True], ids=["initializer", "constant"])
def test_double_resize_scales_become_float32(as_constant):
    model = _resize_model(np.float64, as_constant)
    with pytest.raises(Exception):  # what onnxslim >= 0.1.85 left behind: invalid for ONNX itself
        onnx.checker.check_model(onnx.shape_inference.infer_shapes(model, strict_mode=True), full_check=True)
    assert _float_resize_scales(model) == ["scales"]
    onnx.checker.check_model(model, full_check=True)
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert y.shape == (1, 1, 4, 4)


def test_float_scales_are_left_alone():
    model = _resize_model(np.float32)
    before = model.SerializeToString()
    assert _float_resize_scales(model) == []
    assert model.SerializeToString() == before


def _unsqueeze_model(axes_from: str) -> onnx.ModelProto:
    """Unsqueeze whose axes come from Range(0, 1, 1) of constants, a Reshape of a Constant, or
    from the input's shape (the one case that is not constant)."""
    c = lambda name, v: helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(v, np.int64), name))  # noqa: E731
    if axes_from == "range":
        nodes = [c("start", 0), c("limit", 1), c("delta", 1), helper.make_node("Range", ["start", "limit", "delta"], ["axes"])]
    elif axes_from == "reshape":
        nodes = [c("flat", [0]), c("shape", [1]), helper.make_node("Reshape", ["flat", "shape"], ["axes"])]
    else:
        nodes = [helper.make_node("Shape", ["x"], ["s"], start=0, end=1), c("zero", [0]),
                 helper.make_node("Mul", ["s", "zero"], ["axes"])]
    nodes.append(helper.make_node("Unsqueeze", ["x", "axes"], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("axes_from, constant", [("range", True), ("reshape", True), ("shape", False)])
def test_lint_judges_axes_after_folding(axes_from, constant):
    codes = [f.code for f in static_findings(_unsqueeze_model(axes_from))]
    assert ("axes-not-constant" in codes) is (not constant)


@pytest.mark.parametrize("axes_from", ["range", "reshape"])
def test_constant_axes_are_folded_into_initializers(axes_from):
    model = _unsqueeze_model(axes_from)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    before = run(model)
    assert _fold_required_constants(model) == ["axes"]
    assert "axes" in {i.name for i in model.graph.initializer}
    assert [n.op_type for n in model.graph.node] == ["Unsqueeze"]  # the producers went with their consumer
    np.testing.assert_array_equal(run(model), before)


def test_input_dependent_axes_are_not_folded():
    model = _unsqueeze_model("shape")
    assert _fold_required_constants(model) == []
    assert len(model.graph.node) == 4


def test_clean_up_keeps_torch_scale_factor_resize_float():
    """The real sequence: torch.onnx's untyped Constant scales through _clean_up with onnxslim."""
    import torch
    import torch.nn.functional as F

    class Up(torch.nn.Module):  # noqa: D401
        def forward(self, x):
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    program = torch.onnx.export(Up().eval(), (torch.randn(1, 2, 4, 4),), dynamo=True, opset_version=18, optimize=False,
                                verbose=False)
    model = _clean_up(program.model_proto, slim=True)
    inits = {i.name: i for i in model.graph.initializer}
    resize = next(n for n in model.graph.node if n.op_type == "Resize")
    assert inits[resize.input[2]].data_type == TensorProto.FLOAT
