"""ONNX files whose weights live beside them, and engines parity cannot run."""

from __future__ import annotations

import struct

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

from tests.conftest import TINY_WIDTH, assert_one_line_error, require_tensorrt_rtx


def _conv_model(path, value: float) -> None:
    """A 3x3 conv whose weights (all ``value``) are saved to ``w.bin`` beside ``path``."""
    io = lambda n: h.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 8, 8])  # noqa: E731
    weight = nh.from_array(np.full((3, 3, 3, 3), value, np.float32), "w")
    graph = h.make_graph([h.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv")], "g",
                         [io("x")], [io("y")], [weight])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
              size_threshold=0)


def test_the_parser_reads_the_weights_beside_the_model_not_above_it(tmp_path, run_cli):
    """The parser was given the model's folder, so it looked one level up: a valid model failed to
    parse, and with another model's w.bin there, the engine got that model's weights."""
    require_tensorrt_rtx()
    (tmp_path / "b").mkdir()
    _conv_model(tmp_path / "decoy.onnx", 1.2345)  # writes tmp_path/w.bin
    _conv_model(tmp_path / "b" / "model.onnx", 7.89)
    engine = tmp_path / "b" / "model.engine"
    result = run_cli("engine", tmp_path / "b" / "model.onnx", "--out", engine)
    assert result.exit_code == 0, result.stderr
    data = engine.read_bytes()
    assert data.count(struct.pack("<f", 7.89)) >= 81 and data.count(struct.pack("<f", 1.2345)) == 0
    (tmp_path / "w.bin").unlink()
    assert run_cli("lint", tmp_path / "b" / "model.onnx").exit_code == 0


def test_a_missing_weights_file_is_named(tmp_path, run_cli):
    (tmp_path / "m").mkdir()
    _conv_model(tmp_path / "m" / "model.onnx", 1.0)
    (tmp_path / "m" / "w.bin").unlink()
    assert_one_line_error(run_cli("lint", tmp_path / "m" / "model.onnx", "--parser", "none"),
                          "keeps its weights in w.bin", "one folder")


def test_parity_refuses_a_tensorrt_rtx_plan_instead_of_skipping_it(tmp_path, run_cli):
    """A skip would leave CI green with the engine never run: parity runs TensorRT engines only."""
    require_tensorrt_rtx()
    from segexport.exporter.export import ExportOptions, export_onnx

    onnx_path = export_onnx(ExportOptions(model="unet", out=tmp_path / "u.onnx", width=TINY_WIDTH,
                                          input_size=(32, 32), num_classes=3, verify=False)).path
    assert run_cli("engine", onnx_path, "--out", tmp_path / "u.engine").exit_code == 0
    assert_one_line_error(run_cli("parity", "--onnx", onnx_path, "--engine", tmp_path / "u.engine"),
                          "built by TensorRT-RTX", "--backend trt")
    assert_one_line_error(run_cli("bench", "--onnx", onnx_path, "--engine", tmp_path / "none.engine"),
                          "engine", "not found")


@pytest.mark.parametrize("zero_point_from", ["initializer", "constant"])
def test_a_zero_point_from_a_constant_node_is_a_constant(zero_point_from):
    from segexport.exporter.lint import lint_model

    io = lambda n: h.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 4, 4])  # noqa: E731
    zero, scale = nh.from_array(np.array(0, np.int8), "z"), nh.from_array(np.array(0.1, np.float32), "s")
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
             h.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")]
    inits = [scale]
    if zero_point_from == "constant":
        nodes.insert(0, h.make_node("Constant", [], ["z"], value=zero))
    else:
        inits.append(zero)
    model = h.make_model(h.make_graph(nodes, "g", [io("x")], [io("y")], inits), opset_imports=[h.make_opsetid("", 17)])
    assert not lint_model(model, parser="none").errors


def test_ops_inside_if_branches_are_linted():
    from segexport.exporter.lint import lint_model

    scalar = lambda n: h.make_tensor_value_info(n, TensorProto.FLOAT, [])  # noqa: E731
    then = h.make_graph([h.make_node("Det", ["a"], ["o"], name="det")], "then", [], [scalar("o")])
    other = h.make_graph([h.make_node("Identity", ["b"], ["o2"])], "else", [], [scalar("o2")])
    node = h.make_node("If", ["c"], ["r"], then_branch=then, else_branch=other, name="if0")
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("c", TensorProto.BOOL, [])], [scalar("r")],
                         [nh.from_array(np.eye(2, dtype=np.float32), "a"), nh.from_array(np.array(1, np.float32), "b")])
    findings = lint_model(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), parser="none").errors
    assert [(f.node, f.code) for f in findings] == [("det", "unsupported-op")]
