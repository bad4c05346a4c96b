"""``--target`` on calibrate, engine and the pipeline config, not only read from the metadata:
a flag that contradicts the export's recorded target is one line and writes nothing; on an
export that records none, the flag chooses the TensorRT (cache header, engine builder check)."""

from __future__ import annotations

import pytest

from segexport.calib.trt_cache import read_cache
from segexport.core.targets import builder_mismatch, get_target, resolve_target
from segexport.errors import UserError
from segexport.exporter.export import ExportOptions, export_onnx
from segexport.exporter.metadata import read_record
from tests.conftest import TINY_WIDTH, assert_one_line_error


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("flags")
    cache = {}

    def get(target):
        if target not in cache:
            out = root / f"fcn-{target or 'none'}.onnx"
            export_onnx(ExportOptions(model="fcn8s", out=out, width=TINY_WIDTH, input_size=(64, 64), target=target))
            cache[target] = out
        return cache[target]

    return get


def test_resolve_target_rules():
    assert resolve_target(None, None, "m.onnx") is None
    assert resolve_target(None, "jetpack5", "m.onnx").name == "jetpack5"
    assert resolve_target("jetpack5", "jetpack5", "m.onnx", opset=17).name == "jetpack5"
    assert resolve_target("trt10", None, "m.onnx", opset=18).name == "trt10"
    with pytest.raises(UserError, match=r"jetpack6 contradicts the target jetpack5 recorded in m.onnx"):
        resolve_target("jetpack6", "jetpack5", "m.onnx")
    with pytest.raises(UserError, match=r"opset 18, newer than .*jetpack5 .*re-export"):
        resolve_target("jetpack5", None, "m.onnx", opset=18)
    with pytest.raises(UserError, match="not a known target"):
        resolve_target("jetpack9", None, "m.onnx")


def test_builder_mismatch_names_the_tensorrt_an_engine_loads_on():
    assert builder_mismatch(get_target("jetpack5"), "trt", "8.5.2.2") is None
    assert "TensorRT 8.5" in builder_mismatch(get_target("jetpack5"), "trt", "8.6.1")
    assert "on the device" in builder_mismatch(get_target("jetpack6"), "trt", "10.13.0")
    assert builder_mismatch(get_target("trt10"), "trt", "10.13.0") is None  # desktop: the major is enough
    assert "TensorRT-RTX" in builder_mismatch(get_target("jetpack6"), "rtx", "1.2.0")
    assert builder_mismatch(get_target("rtx"), "rtx", "1.2.0") is None
    assert "--backend rtx" in builder_mismatch(get_target("rtx"), "trt", "10.13.0")


def test_calibrate_target_flag_agrees_or_is_refused(exported, tmp_path, run_cli):
    src = exported("jetpack5")
    bad = run_cli("calibrate", src, "--precision", "int8", "--target", "jetpack6", "--calib-count", "8",
                  "--out", tmp_path / "x.onnx", "--trt-cache", tmp_path / "x.cache")
    assert_one_line_error(bad, "--target jetpack6 contradicts the target jetpack5 recorded")
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "x.cache").exists()


def test_calibrate_target_on_an_untargeted_export_sets_the_header_and_the_record(exported, tmp_path):
    from segexport.api import calibrate

    result = calibrate(onnx=exported(None), precision="int8", calib_count=8, out=tmp_path / "m.int8.onnx",
                       trt_cache=tmp_path / "m.cache", target="jetpack6", max_miou_drop=1.0, max_agreement_drop=1.0)
    version, _algo, _scales = read_cache(result.trt_cache)
    assert version == 100300  # TensorRT 10.3: JetPack 6.1's
    assert read_record(result.onnx).target == "jetpack6"  # deploy reads it from here on


def test_calibrate_tensorrt8_target_refuses_an_opset_it_cannot_parse(exported, tmp_path, run_cli):
    bad = run_cli("calibrate", exported(None), "--precision", "int8", "--target", "jetpack5", "--calib-count", "8",
                  "--out", tmp_path / "x.onnx")
    assert_one_line_error(bad, "newer than --target jetpack5", "segexport onnx --target jetpack5")
    assert not (tmp_path / "x.onnx").exists()


def test_engine_target_conflict_is_one_line_before_any_build(exported, tmp_path, run_cli):
    bad = run_cli("engine", exported("jetpack5"), "--out", tmp_path / "e.engine", "--target", "jetpack6")
    assert_one_line_error(bad, "--target jetpack6 contradicts the target jetpack5 recorded")
    assert not (tmp_path / "e.engine").exists()


def test_engine_target_refuses_a_builder_whose_engine_would_not_load_there(exported, tmp_path, run_cli):
    pytest.importorskip("tensorrt_rtx")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("full TensorRT installed: auto would pick it")
    except ImportError:
        pass
    bad = run_cli("engine", exported("jetpack5"), "--out", tmp_path / "e.engine")  # the recorded target, no flag
    assert_one_line_error(bad, "jetpack5 runs TensorRT 8.5.2, which does not load TensorRT-RTX engines")
    bad = run_cli("engine", exported(None), "--out", tmp_path / "e.engine", "--target", "trt10")
    assert_one_line_error(bad, "does not load TensorRT-RTX engines")
    assert not (tmp_path / "e.engine").exists()


def test_pipeline_config_takes_a_target_per_model_or_in_defaults(tmp_path):
    from segexport.pipeline.config import ConfigError, load_config

    cfg = tmp_path / "segexport.toml"
    cfg.write_text('[defaults]\ntarget = "jetpack5"\n\n[[models]]\nname = "a"\nmodel = "fcn8s"\n\n'
                   '[[models]]\nname = "b"\nmodel = "fcn8s"\ntarget = "orin-dla"\n')
    config, _ = load_config(cfg)
    assert [m.settings(config.defaults).target for m in config.models] == ["jetpack5", "orin-dla"]
    cfg.write_text('[[models]]\nname = "a"\nmodel = "fcn8s"\ntarget = "jetpack9"\n')
    with pytest.raises(ConfigError, match=r"models\[0\]\.target: 'jetpack9' is not a known target"):
        load_config(cfg)


def test_pipeline_steps_pass_the_target_on(monkeypatch, tmp_path):
    """The export, calibrate and engine steps hand the config's target to the API (which records and
    checks it, tested above); a Jetson target's engine is not built on this machine but skipped."""
    from types import SimpleNamespace

    from segexport import api
    from segexport.pipeline import steps
    from segexport.pipeline.config import DEFAULTS, ModelEntry

    seen = {}
    monkeypatch.setattr(api, "export", lambda **kw: seen.setdefault("export", kw) and SimpleNamespace(
        details=SimpleNamespace(verify=[], onnx_ops={})))
    monkeypatch.setattr(api, "calibrate", lambda **kw: seen.setdefault("calibrate", kw) and (_ for _ in ()).throw(
        UserError("stop here")))
    entry = ModelEntry(name="a", model="fcn8s", target="jetpack5")
    settings = entry.settings(DEFAULTS)
    steps.export(entry, settings, tmp_path / "a.onnx", tmp_path)
    with pytest.raises(UserError, match="stop here"):
        steps.calibrate(tmp_path / "a.onnx", tmp_path / "a.int8.onnx", "int8", settings, tmp_path)
    assert seen["export"]["target"] == "jetpack5" and seen["calibrate"]["target"] == "jetpack5"
    pytest.importorskip("tensorrt_rtx")
    outcome = steps.engine(tmp_path / "a.onnx", tmp_path / "a.engine", settings)
    assert outcome.verdict == "skip" and "jetpack5 runs TensorRT 8.5.2" in outcome.message
