"""One overwrite rule for every command (README, "What segexport overwrites"): an output file that
exists is replaced only with --force, and the refusal comes before any work; an output folder
must be new or empty (data synth --force replaces an earlier set)."""

from __future__ import annotations

import pytest

from tests.conftest import assert_one_line_error

TINY = ("--model", "unet", "--width", "0.0625", "--num-classes", "3", "--input-size", "32x32")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from segexport.api import export

    out = tmp_path_factory.mktemp("overwrite") / "u.onnx"
    export(model="unet", out=out, width=0.0625, num_classes=3, input_size=(32, 32), lint=False)
    return out


def _old(path):
    path.write_bytes(b"an earlier result")
    return path


def test_onnx_refuses_an_existing_out_and_replaces_it_with_force(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old = _old(tmp_path / "u.onnx")
    assert_one_line_error(run_cli("onnx", *TINY, "--out", "u.onnx"), "--out 'u.onnx' exists", "--force")
    assert old.read_bytes() == b"an earlier result"
    result = run_cli("onnx", *TINY, "--out", "u.onnx", "--force", "--no-lint")
    assert result.exit_code == 0, result.stderr
    assert old.read_bytes()[:4] != b"an e" and old.stat().st_size > 1000


@pytest.mark.parametrize("extra, existing, flag", [
    ((), "unet.onnx", "--out"),  # the default <model>.onnx too
    (("--out", "u.onnx", "--precision", "fp16"), "u.fp16.onnx", "--out"),
    (("--out", "u.onnx", "--json", "c.json"), "c.json", "--json"),
])
def test_onnx_checks_every_output_before_exporting(run_cli, tmp_path, monkeypatch, extra, existing, flag):
    import segexport.api as api

    monkeypatch.chdir(tmp_path)
    _old(tmp_path / existing)
    monkeypatch.setattr(api, "export", lambda **kw: pytest.fail("exported before refusing"))
    args = [a for a in TINY if a != "--out"] + list(extra)
    assert_one_line_error(run_cli("onnx", *args), f"{flag} '{existing}' exists", "--force")


def test_engine_refuses_an_existing_engine(run_cli, exported, tmp_path):
    engine = _old(tmp_path / "u.engine")
    assert_one_line_error(run_cli("engine", str(exported), "--out", str(engine)), "exists", "--force")
    assert engine.read_bytes() == b"an earlier result"


@pytest.mark.parametrize("flag", ["--json", "--junit"])
def test_bench_refuses_existing_reports(run_cli, exported, tmp_path, monkeypatch, flag):
    import segexport.checks.bench as bench

    report = _old(tmp_path / "r.out")
    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: pytest.fail("timed before refusing"))
    assert_one_line_error(run_cli("bench", "--onnx", str(exported), flag, str(report)), flag, "exists", "--force")
    assert report.read_bytes() == b"an earlier result"


@pytest.mark.parametrize("flag", ["--json", "--junit", "--markdown"])
def test_parity_refuses_existing_reports(run_cli, exported, tmp_path, flag):
    report = _old(tmp_path / "r.out")
    assert_one_line_error(run_cli("parity", "--onnx", str(exported), flag, str(report)), flag, "exists", "--force")
    assert report.read_bytes() == b"an earlier result"


def test_data_synth_replaces_an_earlier_set_only_with_force(run_cli, tmp_path):
    args = ("data", "synth", "--out", str(tmp_path / "s"), "--count", "1", "--size", "16", "--num-classes", "3")
    assert run_cli(*args).exit_code == 0
    manifest = (tmp_path / "s" / "manifest.json").read_text()
    assert_one_line_error(run_cli(*args, "--seed", "1"), "not empty", "--force")
    assert (tmp_path / "s" / "manifest.json").read_text() == manifest
    assert run_cli(*args, "--seed", "1", "--force").exit_code == 0
    assert (tmp_path / "s" / "manifest.json").read_text() != manifest


def test_deploy_deepstream_refuses_a_folder_that_holds_files(run_cli, exported, tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    _old(out / "keep.txt")
    assert_one_line_error(run_cli("deploy", "deepstream", str(exported), "--out", str(out)), "not empty")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_deploy_triton_never_replaces_a_model_of_the_same_name_unasked(run_cli, exported, tmp_path):
    """A Triton repository holds many models: adding one is fine, replacing one needs --force."""
    repo = tmp_path / "repo"
    first = run_cli("deploy", "triton", str(exported), "--out", str(repo), "--name", "m")
    assert first.exit_code == 0, first.stdout + first.stderr
    config = (repo / "m" / "config.pbtxt").read_text()
    assert_one_line_error(run_cli("deploy", "triton", str(exported), "--out", str(repo), "--name", "m"),
                          "already exists", "--force")
    assert (repo / "m" / "config.pbtxt").read_text() == config


def test_predict_refuses_a_folder_that_holds_files(run_cli, exported, tmp_path):
    from segexport.data.synth import make_synthetic

    make_synthetic(tmp_path / "set", count=1, size=(32, 32), num_classes=3)
    out = tmp_path / "pred"
    out.mkdir()
    _old(out / "keep.txt")
    assert_one_line_error(run_cli("predict", str(exported), str(tmp_path / "set" / "images"), "--out", str(out)),
                          "not empty")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("args, existing, flag", [
    ((), "u.int8.onnx", "--out"),  # the default MODEL.<precision>.onnx
    (("--precision", "best"), "u.fp16.onnx", "--out"),  # best may write either
    (("--out", "q.onnx", "--trt-cache", "q.cache"), "q.cache", "--trt-cache"),
    (("--out", "q.onnx", "--json", "r.json"), "r.json", "--json"),
])
def test_calibrate_refuses_existing_outputs_before_any_work(run_cli, exported, tmp_path, args, existing, flag):
    import shutil

    src = tmp_path / "u.onnx"
    shutil.copy(exported, src)
    args = tuple(str(tmp_path / a) if a.endswith((".onnx", ".cache", ".json")) else a for a in args)
    old = _old(tmp_path / existing)
    assert_one_line_error(run_cli("calibrate", src, "--calib-count", "2", *args), f"{flag} ", "exists", "--force")
    assert old.read_bytes() == b"an earlier result"
    result = run_cli("calibrate", src, "--calib-count", "2", *args, "--force")
    assert result.exit_code == 0, result.stderr
    if "best" not in args:  # best writes the precision it chooses, which may be the other one
        assert old.read_bytes() != b"an earlier result"
