"""The TensorRT lint on hand-made graphs (one per check), and the real parser/builder."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segexport.exporter.lint import lint_model
from tests.conftest import require_tensorrt_rtx, assert_one_line_error

F = TensorProto.FLOAT


def graph(nodes, inputs, outputs, inits=(), opset=18) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def vi(name, shape, t=F):
    return helper.make_tensor_value_info(name, t, shape)


def conv_graph(h="H", w="W") -> onnx.ModelProto:
    wt = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Resize", ["c", "", "scales"], ["y"], mode="linear",
                              coordinate_transformation_mode="half_pixel")]
    return graph(nodes, [vi("x", [1, 3, h, w])], [vi("y", None)], [wt, scales])


def codes(report):
    return {(f.severity, f.code) for f in report.findings}


def test_clean_static_graph_has_no_findings():
    assert lint_model(conv_graph(16, 16), parser="none").findings == []


def test_maxpool_indices_is_an_error():
    m = graph([helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], strides=[2, 2])],
              [vi("x", [1, 3, 8, 8])], [vi("y", None), vi("i", None, TensorProto.INT64)])
    report = lint_model(m, parser="none")
    assert ("error", "maxpool-indices") in codes(report)
    assert "--unpool mask" in report.errors[0].message


def test_maxunpool_and_unique_are_unsupported():
    m = graph([helper.make_node("Unique", ["x"], ["y"])], [vi("x", [4])], [vi("y", None)])
    assert ("error", "unsupported-op") in codes(lint_model(m, parser="none"))


@pytest.mark.parametrize("attrs, code", [
    ({"mode": "linear", "antialias": 1}, "resize-antialias"),
    ({"mode": "cubic"}, "resize-mode"),
    ({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}, "resize-coord"),
])
def test_resize_restrictions(attrs, code):
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    m = graph([helper.make_node("Resize", ["x", "", "scales"], ["y"], **attrs)], [vi("x", [1, 3, 8, 8])],
              [vi("y", None)], [scales])
    assert ("error", code) in codes(lint_model(m, parser="none"))


def test_qdq_nonzero_zero_point_is_an_error_and_zero_is_fine():
    def qdq(zp: int):
        inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                 numpy_helper.from_array(np.array(zp, np.int8), "zp")]
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
                 helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])]
        return graph(nodes, [vi("x", [1, 3, 8, 8])], [vi("y", None)], inits)

    assert ("error", "qdq-zero-point") in codes(lint_model(qdq(5), parser="none"))
    assert not lint_model(qdq(0), parser="none").errors


def test_scatternd_reduction_is_an_error():
    inits = [numpy_helper.from_array(np.zeros((1, 1), np.int64), "idx"),
             numpy_helper.from_array(np.ones((1,), np.float32), "upd")]
    m = graph([helper.make_node("ScatterND", ["x", "idx", "upd"], ["y"], reduction="add")], [vi("x", [4])],
              [vi("y", None)], inits)
    assert ("error", "scatter-reduction") in codes(lint_model(m, parser="none"))


def test_dynamic_dims_without_profile_warn():
    report = lint_model(conv_graph(), parser="none")
    assert ("warning", "dynamic-no-profile") in codes(report) and not report.errors


def test_not_an_onnx_file(tmp_path, run_cli):
    bogus = tmp_path / "x.onnx"
    bogus.write_text("hello")
    assert_one_line_error(run_cli("lint", bogus), "is not an ONNX model")
    assert_one_line_error(run_cli("lint", tmp_path / "missing.onnx"), "not found")


def test_cli_exit_codes_and_json(tmp_path, run_cli):
    ok, bad = tmp_path / "ok.onnx", tmp_path / "bad.onnx"
    onnx.save(conv_graph(16, 16), ok)
    onnx.save(graph([helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2])],
                    [vi("x", [1, 3, 8, 8])], [vi("y", None), vi("i", None, TensorProto.INT64)]), bad)
    result = run_cli("lint", ok, "--json", "--parser", "none")
    assert result.exit_code == 0 and json.loads(result.stdout)["errors"] == 0
    result = run_cli("lint", bad, "--parser", "none")
    assert result.exit_code == 1 and "maxpool-indices" in result.stdout




def test_real_parser_rejects_maxpool_indices():
    require_tensorrt_rtx()
    m = graph([helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], strides=[2, 2])],
              [vi("x", [1, 3, 8, 8])], [vi("y", None), vi("i", None, TensorProto.INT64)])
    report = lint_model(m, parser="rtx")
    assert report.parser and "TensorRT-RTX" in report.parser
    assert any(f.code == "trt-parser" and "MaxPool" in f.message for f in report.errors)


def test_real_builder_builds_a_static_graph():
    require_tensorrt_rtx()
    report = lint_model(conv_graph(16, 16), parser="rtx", build=True)
    assert not report.errors and report.engine_bytes > 0
