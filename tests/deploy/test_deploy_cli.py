"""`segexport deploy` and `segexport predict` from the command line: hostile inputs are one line,
exit 2, nothing written; engines are accepted only when their sidecar matches; predict reads well."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from segexport.exporter.export import ExportOptions, export_onnx
from tests.conftest import TINY_WIDTH, assert_one_line_error


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    out = root / "fcn16s.onnx"
    export_onnx(ExportOptions(model="fcn16s", out=out, width=TINY_WIDTH, num_classes=4, input_size=(40, 48),
                              lint=False, verify=False))
    return out


@pytest.fixture(scope="module")
def argmax_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("argmax") / "argmax.onnx"
    export_onnx(ExportOptions(model="fcn16s", out=out, width=TINY_WIDTH, num_classes=4, input_size=(40, 48),
                              argmax=True, lint=False, verify=False))
    return out


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _nothing_written(parent: Path, before: set[str]) -> None:
    assert _listing(parent) == before, "a file or staging folder was left behind"


def fake_engine(path: Path, onnx_sha: str, **overrides) -> Path:
    """Engine bytes are opaque to deploy (it copies them); only the sidecar is read. This stands in
    for an engine built on a GPU box -- it is never deserialised or run."""
    path.write_bytes(b"not-run-here")
    sidecar = {"engine": str(path), "backend": "trt", "tensorrt_version": "10.3.0.30", "precision": "fp32",
               "onnx_sha256": onnx_sha, "profile": {}, "build_seconds": 1.0, "engine_bytes": 12,
               "gpu": "Orin", "compute_capability": "8.7", "schema": 2, **overrides}
    Path(str(path) + ".json").write_text(json.dumps(sidecar))
    return path


@pytest.mark.parametrize("case", ["argmax", "engine-other-onnx", "int8-no-cache", "not-empty", "rtx-plan",
                                  "engine-other-trt", "engine-other-cc", "cache-without-int8", "bad-batch"])
def test_hostile_deepstream_inputs(case, model, argmax_model, run_cli, tmp_path):
    out = tmp_path / "bundle"
    args = ["deploy", "deepstream", str(model), "--out", str(out)]
    expect = {"argmax": "ArgMax", "engine-other-onnx": "another ONNX", "int8-no-cache": "--calib-cache",
              "not-empty": "not empty", "rtx-plan": "rtx", "engine-other-trt": "TensorRT 10.3.0.30",
              "engine-other-cc": "compute capability 8.7", "cache-without-int8": "only means INT8",
              "bad-batch": "outside the exported batch range"}[case]
    if case == "argmax":
        args[2] = str(argmax_model)
    elif case == "engine-other-onnx":
        args += ["--engine", str(fake_engine(tmp_path / "e.engine", "0" * 64))]
    elif case == "int8-no-cache":
        args += ["--precision", "int8"]
    elif case == "not-empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "cache-without-int8":
        cache = tmp_path / "c.cache"
        cache.write_text("TRT-100300-EntropyCalibration2\n")
        args += ["--calib-cache", str(cache), "--precision", "fp16"]
    elif case == "bad-batch":
        args += ["--batch", "3"]
    else:  # an engine whose sidecar matches the bundle's ONNX, refused for what it was built by/for
        probe = tmp_path / "probe"
        assert run_cli("deploy", "deepstream", str(model), "--out", str(probe)).exit_code == 0
        sha = hashlib.sha256((probe / "fcn16s.deepstream.onnx").read_bytes()).hexdigest()
        shutil.rmtree(probe)
        extra = {"rtx-plan": {"backend": "rtx"}}.get(case, {})
        args += ["--engine", str(fake_engine(tmp_path / "e.engine", sha, **extra))]
        args += {"engine-other-trt": ["--target-trt", "10.7"], "engine-other-cc": ["--target-cc", "sm89"]}.get(case, [])
    before = _listing(tmp_path)
    result = run_cli(*args)
    assert_one_line_error(result, expect)
    _nothing_written(tmp_path, before)
    if case == "not-empty":
        assert (out / "keep.txt").read_text() == "mine"


def test_matching_engine_is_bundled_under_nvinfer_name(model, run_cli, tmp_path):
    first = tmp_path / "first"
    assert run_cli("deploy", "deepstream", str(model), "--out", str(first)).exit_code == 0
    sha = hashlib.sha256((first / "fcn16s.deepstream.onnx").read_bytes()).hexdigest()
    engine = fake_engine(tmp_path / "built-on-orin.engine", sha)
    result = run_cli("deploy", "deepstream", str(model), "--out", str(tmp_path / "b"), "--engine", str(engine),
                     "--target-trt", "10.3", "--target-cc", "8.7")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "b" / "fcn16s.deepstream.onnx_b1_gpu0_fp32.engine").read_bytes() == b"not-run-here"
    # the bundle's ONNX is the same bytes every time: an engine built from one bundle fits the next
    assert (tmp_path / "b" / "fcn16s.deepstream.onnx").read_bytes() == (first / "fcn16s.deepstream.onnx").read_bytes()


@pytest.mark.parametrize("case", ["engine-other-onnx", "static-max-batch", "bad-name", "model-exists", "instances",
                                  "repo-is-a-file", "name-is-a-file"])
def test_hostile_triton_inputs(case, model, run_cli, tmp_path):
    out = tmp_path / "repo"
    args = ["deploy", "triton", str(model), "--out", str(out)]
    expect = {"engine-other-onnx": "another ONNX", "static-max-batch": "static batch", "bad-name": "--name",
              "model-exists": "model 'fcn16s' already exists in the repository", "instances": "--instances",
              "repo-is-a-file": "is a file", "name-is-a-file": "is not a model folder"}[case]
    if case == "engine-other-onnx":
        args += ["--engine", str(fake_engine(tmp_path / "e.engine", "f" * 64))]
    elif case == "static-max-batch":
        args += ["--max-batch", "8"]
    elif case == "bad-name":
        args += ["--name", "../escape"]
    elif case == "model-exists":
        (out / "fcn16s" / "1").mkdir(parents=True)
        (out / "fcn16s" / "config.pbtxt").write_text("mine")
    elif case == "repo-is-a-file":
        out.write_text("not a folder")
    elif case == "name-is-a-file":
        out.mkdir()
        (out / "fcn16s").write_text("not a folder")
        args += ["--force"]  # --force replaces a model folder, never something else
    else:
        args += ["--instances", "0"]
    before = _listing(tmp_path)
    assert_one_line_error(run_cli(*args), expect)
    _nothing_written(tmp_path, before)
    if case == "model-exists":
        assert (out / "fcn16s" / "config.pbtxt").read_text() == "mine"


def test_triton_adds_a_model_to_an_existing_repository(model, run_cli, tmp_path, parse_triton):
    """A repository holds many models: a second model goes beside the first, each with its own
    build_engine.sh and bundle.json; the model's own folder is replaced only with --force."""
    repo = tmp_path / "repo"
    (repo / "someone_elses" / "1").mkdir(parents=True)
    (repo / "someone_elses" / "config.pbtxt").write_text('name: "someone_elses"\n')
    first = run_cli("deploy", "triton", str(model), "--out", str(repo))
    assert first.exit_code == 0, first.stderr
    second = run_cli("deploy", "triton", str(model), "--out", str(repo), "--name", "fcn16s_b", "--instances", "2")
    assert second.exit_code == 0, second.stderr
    assert sorted(p.name for p in repo.iterdir()) == ["fcn16s", "fcn16s_b", "someone_elses"]  # no files at the root
    for name in ("fcn16s", "fcn16s_b"):
        assert parse_triton(repo / name / "config.pbtxt").name == name
        assert (repo / name / "build_engine.sh").is_file()
        assert json.loads((repo / name / "bundle.json").read_text())["name"] == name
    assert (repo / "someone_elses" / "config.pbtxt").read_text() == 'name: "someone_elses"\n'
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a staging folder was left behind"

    again = run_cli("deploy", "triton", str(model), "--out", str(repo), "--instances", "3")
    assert_one_line_error(again, "pass --force")
    assert parse_triton(repo / "fcn16s" / "config.pbtxt").instance_group[0].count == 1
    (repo / "fcn16s" / "stale.txt").write_text("from the old model")
    forced = run_cli("deploy", "triton", str(model), "--out", str(repo), "--instances", "3", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert parse_triton(repo / "fcn16s" / "config.pbtxt").instance_group[0].count == 3
    assert not (repo / "fcn16s" / "stale.txt").exists()  # replaced whole, not merged
    assert parse_triton(repo / "fcn16s_b" / "config.pbtxt").instance_group[0].count == 2  # the others untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "the old model was left beside the repository"


def test_triton_plan_from_matching_engine(model, run_cli, tmp_path, parse_triton):
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    engine = fake_engine(tmp_path / "m.engine", sha)
    result = run_cli("deploy", "triton", str(model), "--out", str(tmp_path / "repo"), "--engine", str(engine))
    assert result.exit_code == 0, result.stderr
    cfg = parse_triton(tmp_path / "repo" / "fcn16s" / "config.pbtxt")
    assert cfg.platform == "tensorrt_plan"
    assert (tmp_path / "repo" / "fcn16s" / "1" / "model.plan").read_bytes() == b"not-run-here"


def test_approximation_cost_is_printed(model, run_cli, tmp_path):
    result = run_cli("deploy", "deepstream", str(model), "--out", str(tmp_path / "a"), "--approximate-normalization")
    assert result.exit_code == 0, result.stderr
    assert "label agreement with exact preprocessing" in " ".join(result.stdout.split())


def test_predict_onnx_and_bundle_agree_and_write_pictures(model, run_cli, tmp_path):
    from PIL import Image

    from segexport.data.synth import make_synthetic

    make_synthetic(tmp_path / "synth", count=3, size=(50, 70), num_classes=4)
    images = tmp_path / "synth" / "images"
    assert run_cli("deploy", "deepstream", str(model), "--out", str(tmp_path / "ds")).exit_code == 0
    a = run_cli("predict", str(model), str(images), "--out", str(tmp_path / "p1"))
    b = run_cli("predict", str(tmp_path / "ds"), str(images), "--out", str(tmp_path / "p2"))
    assert a.exit_code == 0 and b.exit_code == 0, (a.stderr, b.stderr)
    stems = sorted(p.stem for p in images.iterdir())
    for stem in stems:
        la = np.asarray(Image.open(tmp_path / "p1" / f"{stem}_labels.png"))
        lb = np.asarray(Image.open(tmp_path / "p2" / f"{stem}_labels.png"))
        assert la.shape == (50, 70)  # at the image's own size
        assert (la == lb).mean() >= 0.9999  # the bundle's nvinfer-style input gives the export's labels
        with Image.open(tmp_path / "p1" / f"{stem}_overlay.png") as ov:
            assert ov.size == (70, 50) and ov.mode == "RGB"
    with Image.open(tmp_path / "p1" / "contact_sheet.png") as sheet:
        assert sheet.width > 2 * 160 and sheet.height > 160
    assert_one_line_error(run_cli("predict", str(model), str(images), "--out", str(tmp_path / "p1")), "not empty")
    assert_one_line_error(run_cli("predict", str(tmp_path), str(images), "--out", str(tmp_path / "p3")),
                          CONFIG_NAME := "nvinfer_config.txt")


def test_a_real_tensorrt_rtx_plan_is_refused_for_triton(model, run_cli, tmp_path):
    """A plan TensorRT-RTX really built here (sidecar sha matches) still does not load in Triton's
    TensorRT backend: refused by what built it, not by a hand-written sidecar."""
    from tests.conftest import require_tensorrt_rtx

    require_tensorrt_rtx()
    engine = tmp_path / "m.engine"
    built = run_cli("engine", str(model), "--out", str(engine), "--backend", "rtx")
    assert built.exit_code == 0, built.stderr
    before = _listing(tmp_path)
    assert_one_line_error(run_cli("deploy", "triton", str(model), "--out", str(tmp_path / "repo"),
                                  "--engine", str(engine)), "rtx")
    _nothing_written(tmp_path, before)


def test_deploy_all_for_the_pipeline(model, tmp_path):
    from segexport.deploy import deploy_all
    from segexport.errors import UserError

    with pytest.raises(UserError, match="not one of"):
        deploy_all(model, tmp_path / "x", ["triton", "jetson"])
    assert not (tmp_path / "x").exists()
    results = deploy_all(model, tmp_path / "b", ["triton", "deepstream"], instances=2, precision="fp16")
    assert results["triton"].instances == 2 and results["deepstream"].precision == "fp16"
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["deepstream", "triton"]


def test_staged_bundle_vanishes_on_interrupt(tmp_path):
    from segexport.deploy.bundle import staged_dir

    with pytest.raises(KeyboardInterrupt):
        with staged_dir(tmp_path / "b") as stage:
            (stage / "half.onnx").write_bytes(b"x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_predict_refuses_an_engine_that_does_not_describe_itself(model, run_cli, tmp_path):
    from segexport.data.synth import make_synthetic

    make_synthetic(tmp_path / "s", count=1, size=(40, 48), num_classes=4)
    engine = fake_engine(tmp_path / "old.engine", "0" * 64, schema=1)
    assert_one_line_error(run_cli("predict", str(engine), str(tmp_path / "s" / "images"), "--out",
                                  str(tmp_path / "p")), "no preprocessing contract")
    assert not (tmp_path / "p").exists()


def test_external_data_name_cannot_lead_out_of_the_bundle(model, run_cli, tmp_path):
    """The weights-file name is read from the ONNX (data, not a command): a path is refused."""
    import onnx

    proto = onnx.load(str(model))
    init = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    init.data_location = onnx.TensorProto.EXTERNAL
    entry = init.external_data.add()
    entry.key, entry.value = "location", "../outside.bin"
    init.ClearField("raw_data")
    hostile = tmp_path / "m" / "hostile.onnx"
    hostile.parent.mkdir()
    hostile.write_bytes(proto.SerializeToString())
    (tmp_path / "outside.bin").write_bytes(b"\0" * 16)
    before = _listing(tmp_path)
    # refused where every command loads an ONNX (core.onnx_io), before the bundle is staged
    assert_one_line_error(run_cli("deploy", "triton", str(hostile), "--out", str(tmp_path / "repo")),
                          "points outside the model's folder")
    _nothing_written(tmp_path, before)


@pytest.mark.parametrize("key, value, fragment", [
    ("net-scale-factor", "nan", "net-scale-factor"),
    ("net-scale-factor", "0", "net-scale-factor"),
    ("offsets", "1;inf;2", "offsets"),
    ("infer-dims", "3;100000;64", "infer-dims"),
    ("onnx-file", "../elsewhere.onnx", "points outside the bundle"),
    ("infer-dims", "3;32;32", "disagree with"),
])
def test_predict_treats_a_bundle_config_as_data(model, run_cli, tmp_path, key, value, fragment):
    """A bundle folder may come from anyone: the numbers its nvinfer config holds are checked like
    any input (a NaN scale would give silent garbage, 100000-pixel dims an allocation the size of
    the machine), and its onnx-file may not leave the folder."""
    import re

    from segexport.data.synth import make_synthetic

    make_synthetic(tmp_path / "synth", count=1, size=(20, 24), num_classes=4)
    assert run_cli("deploy", "deepstream", str(model), "--out", str(tmp_path / "ds")).exit_code == 0
    config = tmp_path / "ds" / "nvinfer_config.txt"
    text, n = re.subn(rf"(?m)^{re.escape(key)}=.*$", f"{key}={value}", config.read_text())
    assert n == 1
    config.write_text(text)
    result = run_cli("predict", str(tmp_path / "ds"), str(tmp_path / "synth" / "images"), "--out", str(tmp_path / "p"))
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "p").exists()


def test_predict_reads_only_the_bundles_own_label_file(model, run_cli, tmp_path):
    """labels.txt symlinked to a file outside the bundle (/etc/passwd) is refused, not printed as class
    names; a label file of control characters is refused too."""
    from segexport.data.synth import make_synthetic

    make_synthetic(tmp_path / "synth", count=1, size=(20, 24), num_classes=4)
    images = tmp_path / "synth" / "images"
    assert run_cli("deploy", "deepstream", str(model), "--out", str(tmp_path / "ds")).exit_code == 0
    labels = tmp_path / "ds" / "labels.txt"
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0\nsecret-line\n")
    labels.unlink()
    labels.symlink_to(secret)
    result = run_cli("predict", str(tmp_path / "ds"), str(images), "--out", str(tmp_path / "p"))
    assert_one_line_error(result, "not a regular file of the bundle")
    assert "secret-line" not in result.stdout + result.stderr and not (tmp_path / "p").exists()
    labels.unlink()
    labels.write_text("a\nb\x1b[31m\nc\nd\n")
    assert_one_line_error(run_cli("predict", str(tmp_path / "ds"), str(images), "--out", str(tmp_path / "p")),
                          "not a label file")


def test_predict_and_deploy_outputs_never_inside_their_inputs(model, run_cli, tmp_path):
    from segexport.data.synth import make_synthetic

    make_synthetic(tmp_path / "synth", count=1, size=(20, 24), num_classes=4)
    images = tmp_path / "synth" / "images"
    before = _listing(tmp_path)
    assert_one_line_error(run_cli("predict", str(model), str(images), "--out", str(images / "preds")), "lies inside")
    _nothing_written(tmp_path, before)
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    assert_one_line_error(run_cli("deploy", "deepstream", str(model), "--out", str(tmp_path / "link")), "symlink")
    assert not any((tmp_path / "empty").iterdir())


def test_a_failed_triton_write_leaves_the_repository_as_it_was(tmp_path):
    """Staged beside the repository, renamed in whole: a crash mid-write (here an exception in the
    block) loses neither the model being replaced nor creates a repository that did not exist."""
    from segexport.deploy.triton import staged_model_folder

    repo = tmp_path / "repo"
    with pytest.raises(RuntimeError), staged_model_folder(repo, "m", force=False) as stage:
        (stage / "config.pbtxt").write_text("half")
        raise RuntimeError("disk full")
    assert sorted(tmp_path.iterdir()) == []
    (repo / "m").mkdir(parents=True)
    (repo / "m" / "config.pbtxt").write_text("old")
    with pytest.raises(RuntimeError), staged_model_folder(repo, "m", force=True) as stage:
        (stage / "config.pbtxt").write_text("new")
        raise RuntimeError("interrupted")
    assert (repo / "m" / "config.pbtxt").read_text() == "old" and sorted(tmp_path.iterdir()) == [repo]
    with staged_model_folder(repo, "m", force=True) as stage:
        (stage / "config.pbtxt").write_text("new")
    assert (repo / "m" / "config.pbtxt").read_text() == "new" and sorted(tmp_path.iterdir()) == [repo]
