"""``segexport parity`` end to end on a tiny export: pass, fail (exit 1), and refused inputs (exit 2)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import xml.etree.ElementTree as ET

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

from tests.conftest import TINY_WIDTH, assert_labels_meet_contract, assert_one_line_error

SIZE, CLASSES = 48, 4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from segexport.data.synth import make_synthetic
    from segexport.exporter.export import ExportOptions, export_onnx

    root = tmp_path_factory.mktemp("parity")
    result = export_onnx(ExportOptions(model="segnet", out=root / "s.onnx", width=TINY_WIDTH, input_size=(SIZE, SIZE),
                                       dynamic=("batch",), batch_range=(1, 4), num_classes=CLASSES, lint=False))
    make_synthetic(root / "data", 3, (SIZE, SIZE), num_classes=CLASSES, seed=3)
    return root, result.path


def test_parity_passes_and_writes_every_report(exported, run_cli):
    root, onnx_path = exported
    out = root / "ok"
    out.mkdir()  # report directories must exist, like every --out; --save-diff creates its own
    result = run_cli("parity", "--onnx", onnx_path, "--images", root / "data" / "images", "--labels", root / "data" / "labels",
                     "--json", out / "p.json", "--junit", out / "p.xml", "--markdown", out / "p.md", "--save-diff", out / "d")
    assert result.exit_code == 0, result.stderr + result.stdout
    report = json.loads((out / "p.json").read_text())
    pair = report["pairs"][0]
    assert report["passed"] and pair["reference"] == "torch" and pair["candidate"] == "ort-cpu"
    assert report["inputs"] == "3 images"
    assert pair["metrics"]["pixels"] == 3 * SIZE * SIZE
    floor = pair["noise_floor"]
    assert_labels_meet_contract(pair["metrics"]["pixel_agreement"], pair["checks"], pair["held_to_floor"],
                                floor and floor["pixel_agreement"], report["thresholds"]["min_pixel_agreement"])
    assert 0.0 <= pair["miou_reference"] <= 100.0
    assert pair["miou_reference"] == pytest.approx(pair["miou_candidate"], abs=0.01)
    junit = ET.parse(out / "p.xml").getroot()
    assert junit.get("failures") == "0" and int(junit.get("tests")) >= 3
    assert "| torch | ort-cpu | pixel_agreement |" in (out / "p.md").read_text()
    assert len(list((out / "d").glob("*_disagreement.png"))) == 3
    assert "pass" in result.stdout


def test_perturbed_onnx_fails_and_junit_names_the_check(exported, run_cli, tmp_path):
    _, onnx_path = exported
    model = onnx.load(str(onnx_path))
    init = max(model.graph.initializer, key=lambda t: np.prod(t.dims))  # the biggest weight tensor
    arr = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array((arr * -1.5).astype(arr.dtype), init.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    result = run_cli("parity", "--onnx", bad, "--count", "2", "--junit", tmp_path / "j.xml", "--json", tmp_path / "j.json")
    assert_one_line_error(result, "parity failed", code=1)
    root = ET.parse(tmp_path / "j.xml").getroot()
    failed = {case.get("name") for case in root.iter("testcase") if case.find("failure") is not None}
    assert "max_abs" in failed and int(root.get("failures")) == len(failed)
    assert json.loads((tmp_path / "j.json").read_text())["passed"] is False


def test_a_loosened_threshold_is_applied(exported, run_cli, tmp_path):
    """--threshold reaches the checks: a zero max-|diff| bound fails an export that is only float-exact,
    and the report records the thresholds it was judged by."""
    _, onnx_path = exported
    result = run_cli("parity", "--onnx", onnx_path, "--count", "1", "--threshold", "max_abs_rel=0",
                     "--threshold", "abs_quantile=1.0", "--json", tmp_path / "t.json")
    assert_one_line_error(result, "max |diff|", code=1)
    report = json.loads((tmp_path / "t.json").read_text())
    assert report["thresholds"]["max_abs_rel"] == 0 and report["thresholds"]["abs_quantile"] == 1.0
    for bad, fragment in (("min_pixel_agreement=99.9", "fraction in 0..1"), ("abs_quantile=0.999", "1.0"),
                          ("max_abs_rel=nan", "not a finite number"), ("max_miou_drop=-1", ">= 0")):
        assert_one_line_error(run_cli("parity", "--onnx", onnx_path, "--threshold", bad), fragment)
    assert_one_line_error(run_cli("parity", "--onnx", onnx_path, "--threshold", "speed=3"), "speed", "min_pixel_agreement")
    assert_one_line_error(run_cli("parity", "--onnx", onnx_path, "--threshold", "min_pixel_agreement"), "name=number")


def test_bad_images_and_labels_are_named(exported, run_cli, tmp_path):
    root, onnx_path = exported
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli("parity", "--onnx", onnx_path, "--images", tmp_path / "empty"), "no PNG/JPEG images")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "cat.png").write_bytes(b"not a png")
    assert_one_line_error(run_cli("parity", "--onnx", onnx_path, "--images", tmp_path / "broken"), "cat.png")
    images = root / "data" / "images"
    (tmp_path / "labels").mkdir()
    for i, p in enumerate(sorted(images.iterdir())):
        lab = np.zeros((SIZE, SIZE), np.uint8)
        lab[0, 0] = CLASSES + 5 if i == 0 else 0  # one pixel of a class the model does not have
        Image.fromarray(lab, mode="L").save(tmp_path / "labels" / f"{p.stem}.png")
    result = run_cli("parity", "--onnx", onnx_path, "--images", images, "--labels", tmp_path / "labels")
    assert_one_line_error(result, "outside 0..3", str(CLASSES + 5))
    assert_one_line_error(run_cli("parity", "--onnx", onnx_path, "--labels", tmp_path / "labels"), "--labels needs --images")


def test_an_onnx_that_does_not_match_the_model(exported, run_cli, tmp_path):
    _, onnx_path = exported
    assert_one_line_error(run_cli("parity", "--onnx", tmp_path / "none.onnx"), "not found")
    (tmp_path / "other.py").write_text(
        "from torch import nn\n"
        "def build(num_classes=4):\n"
        "    return nn.Conv2d(3, 7, 1)  # ignores num_classes: 7 outputs, not the ONNX's 4\n")
    result = run_cli("parity", "--onnx", onnx_path, "--model", f"{tmp_path / 'other.py'}:build")
    assert_one_line_error(result, "differs from the PyTorch model (4 classes, the PyTorch model 7)")
    weights = tmp_path / "w.pt"
    import torch

    from segexport.models.loading import load_model

    torch.save(load_model("segnet", num_classes=CLASSES, width=TINY_WIDTH).model.state_dict(), weights)
    assert_one_line_error(run_cli("parity", "--onnx", onnx_path, "--weights", weights), "without --weights")


def _sidecar(engine, onnx_sha256: str, backend: str = "trt") -> None:
    engine.write_bytes(b"\0" * 64)
    (engine.parent / (engine.name + ".json")).write_text(json.dumps({
        "engine": engine.name, "backend": backend, "tensorrt_version": "10.9.0", "precision": "fp32",
        "onnx_sha256": onnx_sha256, "profile": {}, "build_seconds": 1.0, "engine_bytes": 64}))


def test_engines_that_cannot_be_trusted_are_refused(exported, run_cli, tmp_path):
    _, onnx_path = exported
    assert_one_line_error(run_cli("parity", "--onnx", onnx_path, "--engine", tmp_path / "none.engine"), "not found")
    lone = tmp_path / "lone.engine"
    lone.write_bytes(b"\0" * 64)
    assert_one_line_error(run_cli("parity", "--onnx", onnx_path, "--engine", lone), "lone.engine.json is missing")
    other = tmp_path / "other.engine"
    _sidecar(other, "0" * 64)
    assert_one_line_error(run_cli("parity", "--onnx", onnx_path, "--engine", other), "built from another ONNX")


def test_engine_without_tensorrt_is_skipped_with_the_reason(exported, run_cli, tmp_path):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here: the engine would really run")
    _, onnx_path = exported
    engine = tmp_path / "s.engine"
    _sidecar(engine, hashlib.sha256(onnx_path.read_bytes()).hexdigest())
    result = run_cli("parity", "--onnx", onnx_path, "--engine", engine, "--count", "1",
                     "--json", tmp_path / "e.json", "--junit", tmp_path / "e.xml")
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    assert [p["candidate"] for p in report["pairs"]] == ["ort-cpu"]
    assert "tensorrt" in report["skipped"]["trt"]
    skipped = [c.get("name") for c in ET.parse(tmp_path / "e.xml").getroot().iter("testcase") if c.find("skipped") is not None]
    assert skipped == ["trt"]


def test_no_report_is_written_when_parity_cannot_judge(exported, run_cli, tmp_path):
    """Exit 2 must not leave a report saying passed (an empty one did), nor some reports without others."""
    _, onnx_path = exported
    result = run_cli("parity", "--onnx", onnx_path, "--count", "1", "--backends", "ort-cuda",
                     "--json", tmp_path / "p.json", "--junit", tmp_path / "p.xml")
    if result.exit_code == 0:
        pytest.skip("this machine has CUDA for ONNX Runtime")
    assert_one_line_error(result, "no candidate backend could run")
    result = run_cli("parity", "--onnx", onnx_path, "--count", "1", "--json", tmp_path / "p.json",
                     "--markdown", tmp_path / "nodir" / "p.md")
    assert_one_line_error(result, "choose another --markdown")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(run_cli("parity", "--onnx", onnx_path, "--count", "1", "--save-diff", tmp_path / "file"),
                          "--save-diff", "is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
