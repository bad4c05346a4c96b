"""FP16 / INT8 calibration: the Q/DQ contract TensorRT needs, caches, provenance, bad data."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from segexport.errors import UserError
from tests.conftest import require_tensorrt_rtx, TINY_WIDTH, assert_one_line_error


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    from segexport.exporter.export import ExportOptions, export_onnx

    out = tmp_path_factory.mktemp("calib") / "unet.onnx"
    export_onnx(ExportOptions(model="unet", out=out, width=TINY_WIDTH, input_size=(48, 48), num_classes=4))
    return out


@pytest.fixture(scope="module")
def int8(fp32):
    from segexport.calib.pipeline import CalibrateOptions, run_calibrate

    return run_calibrate(CalibrateOptions(onnx=fp32, precision="int8", data="synthetic", count=8,
                                          trt_cache=fp32.with_suffix(".cache")))


def test_qdq_contract(int8):
    model = onnx.load(str(int8.out))
    inits = {i.name: i for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        zp = inits[node.input[2]]
        assert zp.data_type == onnx.TensorProto.INT8 and not numpy_helper.to_array(zp).any()
    producers = {o: n for n in model.graph.node for o in n.output}
    for q in (n for n in model.graph.node if n.op_type == "QuantizeLinear"):
        dq = next(n for n in model.graph.node if q.output[0] in n.input)
        users = {n.op_type for n in model.graph.node if dq.output[0] in n.input}
        assert users & {"Conv", "ConvTranspose", "Gemm", "MatMul"}, users  # Q/DQ only in front of conv-family ops
        assert producers.get(q.input[0]) is None or producers[q.input[0]].op_type not in ("Conv", "ConvTranspose")
    for conv in (n for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 2):
        assert inits[conv.input[2]].data_type == onnx.TensorProto.FLOAT  # biases stay float
    from segexport.exporter.lint import lint_model
    from segexport.exporter.metadata import read_record

    assert not lint_model(int8.out, parser="none").errors
    record = read_record(int8.out)
    assert record.precision == "int8" and record.source_onnx_sha256


def test_trt_cache_round_trip_and_provenance(int8, fp32):
    from segexport.calib.trt_cache import read_cache

    version, algo, scales = read_cache(int8.trt_cache)
    assert version == 100300 and algo == "EntropyCalibration2"
    assert "input" in scales and all(s > 0 for s in scales.values())
    first = int8.trt_cache.read_text().splitlines()[1]
    name, hexval = first.split(": ")
    assert len(hexval) == 8 and np.isclose(np.frombuffer(bytes.fromhex(hexval)[::-1], "<f4")[0], scales[name])
    side = json.loads((int8.trt_cache.parent / (int8.trt_cache.name + ".json")).read_text())
    assert side["kind"] == "trt-cache" and side["count"] == 8 and side["method"] == "percentile"


def test_stale_cache_is_refused(int8, fp32, tmp_path):
    from segexport.calib.provenance import check_matches

    assert check_matches(int8.trt_cache, fp32).kind == "trt-cache"
    other = tmp_path / "other.onnx"
    model = onnx.load(str(fp32))
    model.doc_string = "re-exported"
    onnx.save(model, other)
    with pytest.raises(UserError, match="stale calibration"):
        check_matches(int8.trt_cache, other)


def test_engine_refuses_a_stale_cache(int8, fp32, tmp_path, run_cli):
    other = tmp_path / "other.onnx"
    model = onnx.load(str(fp32))
    model.doc_string = "re-exported"
    onnx.save(model, other)
    result = run_cli("engine", other, "--calib-cache", int8.trt_cache, "--backend", "rtx", "--out", tmp_path / "e.engine")
    assert_one_line_error(result, "stale calibration")
    assert not (tmp_path / "e.engine").exists()


def test_fp16_keeps_float32_io(fp32):
    from segexport.calib.pipeline import CalibrateOptions, run_calibrate

    result = run_calibrate(CalibrateOptions(onnx=fp32, precision="fp16", data="synthetic", count=4))
    model = onnx.load(str(result.out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert result.pixel_agreement >= 0.999


def test_fp16_overflow_analysis_blocks_the_node():
    from onnx import TensorProto, helper

    from segexport.calib.fp16 import find_risks, tensor_ranges

    big = numpy_helper.from_array(np.array(1e5, np.float32), "big")
    g = helper.make_graph([helper.make_node("Mul", ["input", "big"], ["m"], name="scale_up"),
                           helper.make_node("Relu", ["m"], ["logits"], name="act")], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 2, 2])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, 2, 2])], [big])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    risks = find_risks(model, tensor_ranges(model, np.ones((2, 1, 2, 2), np.float32)))
    assert [r.node for r in risks][:1] == ["scale_up"] and "overflow" in risks[0].reason


@pytest.mark.parametrize("extra", [None, np.inf, np.nan, -3e38])
def test_fp16_range_statistics_count_what_they_say(extra):
    """max |x| and the fraction of non-zeros below FP16's smallest normal, with and without values
    the analysis leaves out (inf, NaN, pool padding): both code paths of tensor_ranges."""
    from onnx import TensorProto, helper

    from segexport.calib.fp16 import tensor_ranges

    values = [0.0, 0.0, 1e-6, -2e-6, 3.0, -700.0, 5e-5, 0.5]
    if extra is not None:
        values[0] = extra
    g = helper.make_graph([helper.make_node("Neg", ["input"], ["n"], name="neg"),
                           helper.make_node("Neg", ["n"], ["logits"], name="back")], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 2, 4])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, 2, 4])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    ranges = tensor_ranges(model, np.asarray(values, np.float32).reshape(1, 1, 2, 4))
    # 3 of the 6 usable non-zeros are tiny; a left-out value (in place of a zero) is counted nowhere
    assert ranges["n"] == pytest.approx((700.0, 3 / 6))
    assert ranges["logits"] == ranges["n"]


def test_bad_calibration_data(fp32, tmp_path, run_cli):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli("calibrate", fp32, "--data", tmp_path / "empty", "--force"), "no PNG/JPEG images")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"garbage")
    assert_one_line_error(run_cli("calibrate", fp32, "--data", bad, "--force"), "cannot read image", "x.png")
    np.save(tmp_path / "wrong.npy", np.zeros((4, 3, 32, 32), np.float32))
    assert_one_line_error(run_cli("calibrate", fp32, "--data", tmp_path / "wrong.npy", "--force"), "32x32", "48x48")
    np.save(tmp_path / "ok.npy", np.random.default_rng(0).standard_normal((4, 3, 48, 48)).astype(np.float32))
    result = run_cli("calibrate", fp32, "--data", tmp_path / "ok.npy", "--out", tmp_path / "q.onnx")
    assert result.exit_code == 0, result.stderr




def test_tensorrt_rtx_builds_int8_and_fp16(int8, fp32):
    require_tensorrt_rtx()
    from segexport.calib.pipeline import CalibrateOptions, run_calibrate
    from segexport.exporter.lint import lint_model

    fp16 = run_calibrate(CalibrateOptions(onnx=fp32, precision="fp16", data="synthetic", count=4))
    for path in (int8.out, fp16.out):
        report = lint_model(path, parser="rtx", build=True)
        assert not report.errors and report.engine_bytes > 0, [f.message for f in report.errors]


def test_fp16_with_nodes_kept_in_fp32_still_runs(fp32):
    """Blocked nodes sharing deduplicated initializers with FP16 nodes (untrained zero biases)
    and stale value_info once broke the converter's casts; both are handled."""
    import onnxruntime as ort

    from segexport.calib.fp16 import convert_fp16

    model = onnx.load(str(fp32))
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    converted = convert_fp16(model, convs[:3])
    sess = ort.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 48, 48)).astype(np.float32)
    ref = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    out = sess.run(None, {"input": x})[0]
    assert out.dtype == np.float32 and (out.argmax(1) == ref.argmax(1)).mean() > 0.99
    kept = {n.name for n in converted.graph.node if n.op_type == "Conv"} & set(convs[:3])
    assert kept == set(convs[:3])


def test_budget_keeps_the_most_sensitive_layers_in_float(fp32):
    """A budget the all-INT8 model misses forces layers back to float, most sensitive first,
    until the measured cost is within it; they are reported by PyTorch module."""
    from segexport.calib.data import load_calibration_data
    from segexport.calib.int8 import calibrate
    from segexport.calib.mixed_precision import Evaluation, budgeted_int8, predict
    from segexport.exporter.metadata import read_record

    record = read_record(fp32)
    data = load_calibration_data("synthetic", record.preprocess, count=4, num_classes=4)
    calibration = calibrate(fp32, data.inputs, method="minmax")
    evaluation = Evaluation(data.inputs, None, 4, predict(str(fp32), data.inputs, "input", "logits", 1), None)
    result = budgeted_int8(str(fp32), calibration, evaluation, budget=0.0)
    assert result.all_int8_cost > 0  # random init: INT8 flips some labels, so the budget binds
    assert result.kept_float and result.cost <= 0.0
    assert all(k.module for k in result.kept_float)
    assert result.evaluated > len(result.kept_float)  # sensitivities were measured, not guessed
