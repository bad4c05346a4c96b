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
    # the engine describes itself: a deployment needs nothing but the engine and its sidecar
    assert side["schema"] == 2 and side["target_compute_capabilities"] == "all"
    assert len(side["class_names"]) == 21 and side["preprocess"]["std"] == [0.229, 0.224, 0.225]
    assert side["input_name"] == "input" and side["output_name"] == "logits"
    assert side["inputs"] == {"input": [1, 3, -1, -1]} and side["outputs"]["logits"][:2] == [1, 21]
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


# ---- hand-made graphs: no export needed ----

def _qdq_onnx(tmp_path):
    import onnx

    from tests.exporter.test_lint import qdq_conv, with_profile

    path = tmp_path / "qdq.onnx"
    onnx.save(with_profile(qdq_conv(0, h="H", w="W"), lo=(16, 16), opt=(16, 16), hi=(32, 32)), path)
    return path


def test_int8_qdq_graph_builds_strongly_typed(tmp_path):
    require_tensorrt_rtx()
    from segexport.engines.builder import build_engine, sidecar_path

    info = build_engine(_qdq_onnx(tmp_path), tmp_path / "q.engine", backend="rtx")
    side = json.loads(sidecar_path(tmp_path / "q.engine").read_text())
    assert info.precision == side["precision"] == "int8" and side["strongly_typed"] is True
    assert side["profile"]["input"] == [[1, 3, 16, 16], [1, 3, 16, 16], [1, 3, 32, 32]]
    assert len(side["onnx_sha256"]) == 64 and (tmp_path / "q.engine").stat().st_size == info.engine_bytes


def test_precision_that_contradicts_the_onnx_is_refused(tmp_path, run_cli):
    require_tensorrt_rtx()
    result = run_cli("engine", _qdq_onnx(tmp_path), "--backend", "rtx", "--precision", "fp16",
                     "--out", tmp_path / "x.engine")
    assert_one_line_error(result, "already holds INT8")


def test_rtx_ahead_of_time_targets_are_recorded_and_checked(tmp_path, run_cli, monkeypatch):
    require_tensorrt_rtx()
    from segexport.engines import builder

    out = tmp_path / "t.engine"
    result = run_cli("engine", _qdq_onnx(tmp_path), "--backend", "rtx", "--target-cc", "sm86,sm89", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert builder.read_engine_info(out).target_compute_capabilities == ["sm86", "sm89"]
    monkeypatch.setattr(builder, "current_gpu", lambda: ("RTX 4090", "8.9"))
    builder.check_engine_compatible(out)
    monkeypatch.setattr(builder, "current_gpu", lambda: ("H100", "9.0"))
    with pytest.raises(UserError, match="--target-cc sm90"):
        builder.check_engine_compatible(out)


@pytest.mark.parametrize("args, fragment", [
    (("--target-cc", "sm12"), "unknown to TensorRT-RTX"),
    (("--hardware-compat", "ampere+"), "--target-cc instead"),
    (("--version-compat",), "--target-cc instead"),
])
def test_portability_options_the_runtime_lacks_are_refused(tmp_path, run_cli, args, fragment):
    require_tensorrt_rtx()
    out = tmp_path / "p.engine"
    assert_one_line_error(run_cli("engine", _qdq_onnx(tmp_path), "--backend", "rtx", "--out", out, *args), fragment)
    assert not out.exists()


def test_version_and_hardware_compatible_engines(tmp_path, monkeypatch):
    """The sidecar rules: exact version unless version-compatible (same major, not older); exact
    compute capability unless built ampere+ (then any GPU from 8.0)."""
    from types import SimpleNamespace

    from segexport.engines import builder
    from segexport.engines.runtime import Flavour

    engine = tmp_path / "e.engine"
    engine.write_bytes(b"x")
    info = builder.EngineInfo(engine=str(engine), backend="trt", tensorrt_version="10.3.0", precision="fp16",
                              onnx_sha256="0" * 64, profile={}, build_seconds=1.0, engine_bytes=1,
                              gpu="A100", compute_capability="8.0")
    runtime = lambda v: Flavour("trt", SimpleNamespace(__version__=v))  # noqa: E731

    def check(version, cc, **changes):
        builder.sidecar_path(engine).write_text(json.dumps({**info.__dict__, **changes}))
        monkeypatch.setattr(builder, "current_gpu", lambda: ("gpu", cc))
        builder.check_engine_compatible(engine, runtime(version))

    check("10.3.0", "8.0")
    with pytest.raises(UserError, match="built with TensorRT 10.3.0"):
        check("10.4.0", "8.0")
    check("10.4.0", "8.0", version_compatible=True)
    for version in ("10.2.0", "11.0.0"):
        with pytest.raises(UserError, match="built with"):
            check(version, "8.0", version_compatible=True)
    with pytest.raises(UserError, match="compute capability 8.0"):
        check("10.3.0", "8.9")
    check("10.3.0", "8.9", hardware_compatibility="ampere+")
    with pytest.raises(UserError, match="compute capability 8.0"):
        check("10.3.0", "7.5", hardware_compatibility="ampere+")


def test_not_an_onnx_file_is_a_one_line_error(tmp_path, run_cli):
    bogus = tmp_path / "m.onnx"
    bogus.write_text("not onnx")
    assert_one_line_error(run_cli("engine", bogus, "--out", tmp_path / "m.engine"), "is not an ONNX model")
    assert_one_line_error(run_cli("engine", tmp_path / "none.onnx"), "not found")


def test_calib_cache_means_int8_which_rtx_refuses(tmp_path, run_cli):
    """A cache must not be silently ignored: it implies --precision int8, which only TensorRT 10 can build."""
    require_tensorrt_rtx()
    import onnx

    from segexport.calib.provenance import Provenance, sidecar_for
    from segexport.core.hashing import sha256_file
    from tests.exporter.test_lint import conv_resize, with_profile

    model, cache = tmp_path / "m.onnx", tmp_path / "m.cache"
    onnx.save(with_profile(conv_resize()), model)
    cache.write_bytes(b"TRT-1001-EntropyCalibration2\n")
    prov = Provenance(artefact=str(cache), kind="trt-cache", source_onnx=str(model), source_onnx_sha256=sha256_file(model),
                      data_source="synthetic", data_manifest_sha256="0" * 64, count=1, method="entropy", preprocess={})
    sidecar_for(cache).write_text(json.dumps(prov.__dict__))
    result = run_cli("engine", model, "--backend", "rtx", "--calib-cache", cache, "--out", tmp_path / "m.engine")
    assert_one_line_error(result, "no implicit INT8")
