"""Engines from segexport ONNX with TensorRT-RTX (the builder CI has), their sidecars, and the
refusal of engines built for another TensorRT version or GPU."""

from __future__ import annotations

import json

import pytest

from segexport.errors import UserError
from tests.conftest import require_tensorrt_rtx, TINY_WIDTH, assert_one_line_error


@pytest.fixture(scope="module")
def dyn_onnx(tmp_path_factory):
    from segexport.exporter.export import ExportOptions, export_onnx

    out = tmp_path_factory.mktemp("eng") / "unet.onnx"
    export_onnx(ExportOptions(model="unet", out=out, width=TINY_WIDTH, input_size=(48, 64), dynamic=("hw",),
                              hw_range=((32, 32), (96, 128)), verify=False))
    return out




def test_engine_with_profile_and_sidecar(dyn_onnx, tmp_path, run_cli):
    require_tensorrt_rtx()
    out = tmp_path / "unet.engine"
    result = run_cli("engine", dyn_onnx, "--out", out, "--backend", "rtx")
    assert result.exit_code == 0, result.stderr
    side = json.loads((tmp_path / "unet.engine.json").read_text())
    assert side["backend"] == "rtx" and side["precision"] == "fp32"
    assert side["profile"]["input"] == [[1, 3, 32, 32], [1, 3, 48, 64], [1, 3, 96, 128]]
    assert side["engine_bytes"] == out.stat().st_size > 0
    from segexport.engines.builder import check_engine_compatible

    assert check_engine_compatible(out).tensorrt_version == side["tensorrt_version"]


def test_engine_from_another_version_or_gpu_is_refused(dyn_onnx, tmp_path):
    require_tensorrt_rtx()
    from segexport.engines.builder import build_engine, check_engine_compatible, sidecar_path

    out = tmp_path / "u.engine"
    build_engine(dyn_onnx, out, backend="rtx")
    side = json.loads(sidecar_path(out).read_text())
    side["tensorrt_version"] = "0.9.0"
    sidecar_path(out).write_text(json.dumps(side))
    with pytest.raises(UserError, match="rebuild it"):
        check_engine_compatible(out)
    sidecar_path(out).unlink()
    with pytest.raises(UserError, match="missing"):
        check_engine_compatible(out)


def test_implicit_precision_refused_where_removed(dyn_onnx, tmp_path, run_cli):
    require_tensorrt_rtx()
    result = run_cli("engine", dyn_onnx, "--out", tmp_path / "x.engine", "--backend", "rtx", "--precision", "int8")
    assert_one_line_error(result, "no implicit INT8", "segexport calibrate")
    assert not (tmp_path / "x.engine").exists()


def test_missing_backend_is_a_clear_error(dyn_onnx, tmp_path, run_cli):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    assert_one_line_error(run_cli("engine", dyn_onnx, "--backend", "trt", "--out", tmp_path / "e.engine"),
                          "pip install tensorrt")
