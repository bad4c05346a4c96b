"""Reduced precision on the graphs third-party models produce: an FP16-kept node that reads one
initializer twice (onnxslim merges identical BatchNorm tensors), and INT8 calibration of
tensors a histogram cannot bin (constant, all zero, a range of a few float32 steps)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from segexport.calib.fp16 import convert_fp16
from segexport.calib.int8 import calibrate, degenerate_tensors, quantize_qdq


def _shared_bn_model() -> onnx.ModelProto:
    """BatchNormalization inputs [x, W, B, B, W] (scale == var, bias == mean) shared with a Mul."""
    ones = numpy_helper.from_array(np.ones(2, np.float32), "W")
    zeros = numpy_helper.from_array(np.zeros(2, np.float32), "B")
    nodes = [helper.make_node("BatchNormalization", ["x", "W", "B", "B", "W"], ["bn"], name="bn"),
             helper.make_node("Unsqueeze", ["W", "axes"], ["w4"], name="unsq"),
             helper.make_node("Mul", ["bn", "w4"], ["y"], name="mul")]
    axes = numpy_helper.from_array(np.array([0, 2, 3], np.int64), "axes")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], [ones, zeros, axes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_fp16_keeps_names_unique_when_a_blocked_node_reads_one_initializer_twice():
    model = convert_fp16(_shared_bn_model(), ["bn"])
    names = [i.name for i in model.graph.initializer]
    assert len(names) == len(set(names)), names
    onnx.checker.check_model(model, full_check=True)
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    assert bn.input[1] == bn.input[4] and bn.input[2] == bn.input[3]  # one FP32 copy each, read twice
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x / np.sqrt(1 + 1e-5), rtol=1e-3, atol=1e-3)


def _degenerate_model(path) -> None:
    """x -> conv -> relu ; a "flat" branch 5 + 1e-7 * x (a range of a few float32 steps),
    an all-zero branch 0 * x, each feeding a Conv so each is calibrated."""
    rng = np.random.default_rng(0)
    w = lambda n: numpy_helper.from_array(rng.standard_normal((2, 2, 1, 1)).astype(np.float32), n)  # noqa: E731
    c = lambda n, v: numpy_helper.from_array(np.array(v, np.float32), n)  # noqa: E731
    nodes = [helper.make_node("Mul", ["input", "tiny"], ["scaled"]), helper.make_node("Add", ["scaled", "five"], ["flat"]),
             helper.make_node("Mul", ["input", "zero"], ["zeros"]),
             helper.make_node("Conv", ["input", "w0"], ["a"]), helper.make_node("Conv", ["flat", "w1"], ["b"]),
             helper.make_node("Conv", ["zeros", "w2"], ["z"]),
             helper.make_node("Add", ["a", "b"], ["ab"]), helper.make_node("Add", ["ab", "z"], ["logits"])]
    for k, node in enumerate(nodes):  # exported graphs name every node (ORT's topological sort relies on it)
        node.name = f"n{k}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [w("w0"), w("w1"), w("w2"), c("tiny", 1e-7), c("five", 5.0), c("zero", 0.0)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


@pytest.fixture
def degenerate(tmp_path):
    path = tmp_path / "d.onnx"
    _degenerate_model(path)
    return path, np.random.default_rng(1).standard_normal((6, 2, 8, 8)).astype(np.float32)


def test_degenerate_tensors_are_named_with_their_reason(degenerate):
    path, inputs = degenerate
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    found = degenerate_tensors(model, inputs[:1], "input")
    assert "narrow" in found["flat"] and found["zeros"] == "all zero"
    assert "a" not in found and "logits" not in found


def test_ort_alone_fails_on_them(degenerate, tmp_path):
    """The failure the fallback exists for (if ORT ever bins them itself, this test says so)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    from segexport.calib.int8 import _reader

    path, inputs = degenerate
    inferred = tmp_path / "i.onnx"
    onnx.save(onnx.shape_inference.infer_shapes(onnx.load(str(path))), str(inferred))
    cal = create_calibrator(inferred, ["Conv", "Add", "Mul"], augmented_model_path=str(tmp_path / "aug.onnx"),
                            calibrate_method=CalibrationMethod.Percentile, providers=["CPUExecutionProvider"],
                            extra_options={"symmetric": True, "percentile": 99.99})
    with pytest.raises(ValueError, match="bins"):
        cal.collect_data(_reader(inputs, "input", 1))
        cal.compute_data()


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_int8_calibration_falls_back_to_minmax_per_tensor(degenerate, method):
    path, inputs = degenerate
    calibration = calibrate(path, inputs, method=method)
    assert set(calibration.fallback) >= {"flat", "zeros"}
    assert "a" not in calibration.fallback  # the healthy tensors keep their method's ranges
    assert calibration.amax["flat"] == pytest.approx(5.0, rel=1e-5)  # minmax: exact for a flat tensor
    assert calibration.amax["zeros"] == 0.0
    model = quantize_qdq(path, calibration)
    onnx.checker.check_model(model, full_check=True)
