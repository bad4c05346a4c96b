"""Every zoo model exports (static and dynamic H/W), matches PyTorch in ONNX Runtime,
lints clean, and -- where TensorRT-RTX is installed (always in CI) -- parses and builds.

Small widths and sizes keep this CI-sized; the full-width run is benchmarks/bench_export.py.
"""

from __future__ import annotations


import onnx
import pytest

from segexport.exporter.export import ExportOptions, export_onnx
from segexport.models.registry import list_models
from tests.conftest import TINY_WIDTH, assert_labels_meet_contract, require_tensorrt_rtx, small_size  # noqa: F401  (exports: shared fixture)

ZOO = [s.name for s in list_models()]
FORBIDDEN_FOR_TENSORRT = {"MaxUnpool", "ScatterND", "ScatterElements", "Scatter"}


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic-hw"])
def test_export_verifies_and_lints(exports, name, dynamic):
    result = exports(name, dynamic)
    assert result.path.exists()
    assert result.lint is not None and not result.lint.errors, [f.message for f in result.lint.errors]
    assert result.verify and all(row.passed for row in result.verify)
    # noise, flat regions and a constant image at the export (opt) size; noise and flat regions at
    # the profile's min and max
    assert [(r.shape[2:], r.input) for r in result.verify][:3] == [(result.verify[0].shape[2:], k)
                                                                  for k in ("random", "flat", "constant")]
    # (a dynamic export may add sizes where a guard of its trace breaks: exporter/dynamic_capture.py)
    assert len(result.verify) >= 7 if dynamic else len(result.verify) == 3
    from segexport.checks.metrics import THRESHOLDS

    for row in result.verify:  # untrained SegNet/DeconvNet may be held to PyTorch's own float32 floor
        assert_labels_meet_contract(row.metrics.pixel_agreement, row.checks, row.held_to_floor,
                                    row.noise_floor and row.noise_floor.pixel_agreement,
                                    THRESHOLDS["fp32"].min_pixel_agreement)
    model = onnx.load(str(result.path))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & FORBIDDEN_FOR_TENSORRT, ops & FORBIDDEN_FOR_TENSORRT
    assert not any(n.op_type == "MaxPool" and len([o for o in n.output if o]) > 1 for n in model.graph.node)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if dynamic:
        assert dims[2].dim_param and dims[3].dim_param  # H and W symbolic, not frozen
    else:
        assert [d.dim_value for d in dims] == [1, 3, *small_size(name)]


@pytest.mark.parametrize("name", ZOO)
def test_tensorrt_rtx_parses_and_builds(exports, name, tmp_path):
    require_tensorrt_rtx()
    from segexport.exporter.lint import lint_model

    report = lint_model(str(exports(name, True).path), parser="rtx", build=True)
    assert not report.errors, [f.message for f in report.errors]
    assert report.engine_bytes and report.engine_bytes > 0


def test_metadata_round_trip(exports):
    from segexport.exporter.metadata import read_record

    result = exports("deeplabv1", True)
    record = read_record(result.path)
    assert record == result.record
    assert record.model == "deeplabv1" and record.num_classes == 21 and len(record.class_names) == 21
    assert record.dynamic["height"].min < record.dynamic["height"].opt < record.dynamic["height"].max
    assert record.preprocess.mean == (0.485, 0.456, 0.406)
    assert record.opset == 18 and record.segexport_version


def test_argmax_head_outputs_int32_labels(tmp_path):
    # the head does not depend on the network: DeepLab v1 traces dynamic in a quarter of SegNet's time
    result = export_onnx(ExportOptions(model="deeplabv1", out=tmp_path / "s.onnx", width=TINY_WIDTH,
                                       input_size=(37, 45), argmax=True, dynamic=("batch", "hw"),
                                       batch=2, batch_range=(1, 3), hw_range=((32, 32), (64, 64))))
    model = onnx.load(str(result.path))
    out = model.graph.output[0]
    assert out.name == "labels" and out.type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert len(out.type.tensor_type.shape.dim) == 3
    assert all(row.passed for row in result.verify)


def test_native_unpool_keeps_onnx_maxunpool(tmp_path):
    result = export_onnx(ExportOptions(model="segnet", out=tmp_path / "n.onnx", width=TINY_WIDTH,
                                       input_size=(40, 52), unpool="native", lint=False))
    ops = {n.op_type for n in onnx.load(str(result.path)).graph.node}
    assert "MaxUnpool" in ops
    assert all(row.passed for row in result.verify)


@pytest.mark.parametrize("name", ZOO)
def test_reduced_precision_builds_with_tensorrt_rtx(exports, name, tmp_path):
    """FP16 and INT8 Q/DQ of every zoo model: lint clean, parse and build strongly typed."""
    require_tensorrt_rtx()
    from segexport.calib.pipeline import CalibrateOptions, run_calibrate
    from segexport.exporter.lint import lint_model

    src = exports(name, True).path
    for precision in ("int8", "fp16"):
        result = run_calibrate(CalibrateOptions(onnx=src, precision=precision, data="synthetic", count=2,
                                                out=tmp_path / f"{name}.{precision}.onnx"))
        report = lint_model(result.out, parser="rtx", build=True)
        assert not report.errors, (precision, [f.message for f in report.errors])
        assert report.engine_bytes and report.engine_bytes > 0
