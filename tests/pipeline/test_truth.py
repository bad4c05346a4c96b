"""The pipeline and deploy tell the truth about reduced precision (trained SegNet, the unpool bug).

The calibrate step's verdict is calibrate's accuracy gate; report.md shows the reduced model
against fp32 (agreement on confident pixels, ΔmIoU) and what parity was judged on; deploy
re-judges a reduced ONNX against its fp32 source before it bundles it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error
from tests.deploy.test_selfcheck import run_selfcheck

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

CONFIG = f"""
[defaults]
calib_count = 16
parity_count = 2
bench_backends = []

[[models]]
name = "segnet"
model = "segnet"
weights = "{(FIXTURES / 'segnet.pt').as_posix()}"
width = 0.125
num_classes = 4
input_size = "64x64"
precisions = ["fp32", "int8"]
deploy = ["deepstream"]
"""


def _run(run_cli, tmp_path: Path, name: str):
    config = tmp_path / "segexport.toml"
    config.write_text(CONFIG)
    out = tmp_path / name
    result = run_cli("pipeline", "run", config, "--out", out, "--no-cache")
    return result, out


def test_trained_segnet_int8_passes_and_the_report_says_against_what(run_cli, tmp_path):
    result, out = _run(run_cli, tmp_path, "ok")
    assert result.exit_code == 0, result.stdout + result.stderr
    doc = json.loads((out / "manifest.json").read_text())
    int8 = next(e for e in doc["entries"] if e["variant"] == "int8")
    gate = int8["steps"]["calibrate"]["figures"]["gate"]
    assert gate["judged"] and gate["passed"] and gate["confident_agreement"] >= 0.99
    assert abs(int8["steps"]["calibrate"]["figures"]["miou_drop"]) <= 0.5
    assert int8["steps"]["deploy"]["verdict"] == "pass"
    report = (out / "report.md").read_text()
    assert "of confident pixels, ΔmIoU" in report
    assert "Parity judged on: 2 synthetic images (held out from calibration)" in report


def test_the_unpool_bug_put_back_fails_the_calibrate_step(run_cli, tmp_path, monkeypatch):
    import segexport.core.exact as exact

    monkeypatch.setattr(exact, "restore_exact_inputs", lambda model: 0)
    monkeypatch.setattr(exact, "exact_violations", lambda model: [])
    result, out = _run(run_cli, tmp_path, "bug")
    assert result.exit_code == 1
    doc = json.loads((out / "manifest.json").read_text())
    int8 = next(e for e in doc["entries"] if e["variant"] == "int8")
    step = int8["steps"]["calibrate"]
    assert step["verdict"] == "fail" and "accuracy gate" in step["message"]
    assert step["figures"]["gate"]["confident_agreement"] < 0.9  # the figures of the failure are kept
    assert int8["steps"]["deploy"]["verdict"] == "skip"
    assert not (out / "segnet" / "segnet.int8.onnx").exists()
    assert "**FAIL** calibrate" in (out / "report.md").read_text()


@pytest.fixture(scope="module")
def swamped_int8(tmp_path_factory):
    """An INT8 ONNX whose calibration was allowed any loss (--max-agreement-drop 100): broken, with a sidecar."""
    import segexport

    root = tmp_path_factory.mktemp("deploygate")
    src = root / "sw.onnx"
    segexport.export(model="tests.calib.hostile_models:swamped", out=src, input_size=(32, 32))
    reduced = segexport.calibrate(onnx=src, precision="int8", max_agreement_drop=100.0, out=root / "sw.int8.onnx")
    return src, reduced.onnx


def test_deploy_refuses_a_reduced_onnx_that_fails_the_gate(swamped_int8, run_cli, tmp_path):
    src, reduced = swamped_int8
    for kind in ("deepstream", "triton"):
        result = run_cli("deploy", kind, reduced, "--out", tmp_path / kind)
        assert_one_line_error(result, "fails the accuracy gate", "no bundle written", code=1)
        assert not (tmp_path / kind).exists()
    # the user may accept the loss on the command line (trusted), never through a file
    result = run_cli("deploy", "triton", reduced, "--out", tmp_path / "ok", "--max-agreement-drop", "100")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "ok").is_dir()
    # the accepted loss travels into the bundle's self-check: the device judges by the same limit
    model_dir = next(p.parent for p in (tmp_path / "ok").rglob("selfcheck"))
    manifest = json.loads((model_dir / "selfcheck" / "selfcheck.json").read_text())
    assert manifest["max_agreement_drop"] == 100
    assert run_selfcheck(model_dir, "--runner", "onnxruntime").returncode == 0
    strict = run_selfcheck(model_dir, "--runner", "onnxruntime", "--max-agreement-drop", "1")
    assert strict.returncode == 1 and "limit 1 %" in strict.stderr, strict.stderr


def test_deploy_needs_the_fp32_source_of_a_reduced_onnx(swamped_int8, run_cli, tmp_path):
    src, reduced = swamped_int8
    lone = tmp_path / "lone.int8.onnx"
    lone.write_bytes(reduced.read_bytes())  # no provenance sidecar beside it
    result = run_cli("deploy", "triton", lone, "--out", tmp_path / "a")
    assert_one_line_error(result, "fp32 source is not found", "--reference", code=2)
    other = tmp_path / "other.onnx"
    other.write_bytes(src.read_bytes() + b" ")
    result = run_cli("deploy", "triton", lone, "--out", tmp_path / "b", "--reference", other)
    assert_one_line_error(result, "is not the ONNX", code=2)
    result = run_cli("deploy", "triton", lone, "--out", tmp_path / "c", "--reference", src)
    assert_one_line_error(result, "fails the accuracy gate", code=1)


def test_deploy_judges_what_the_graph_holds_not_what_its_metadata_says(swamped_int8, run_cli, tmp_path):
    """An INT8 graph whose metadata was edited to say fp32 is still gated; it cannot be its own reference."""
    import shutil
    from dataclasses import replace

    import onnx

    from segexport.exporter.metadata import read_record, write_record

    src, reduced = swamped_int8
    model = onnx.load(str(reduced))
    write_record(model, replace(read_record(model), precision="fp32"))
    liar = tmp_path / "liar.onnx"
    onnx.save(model, str(liar))
    shutil.copy(f"{reduced}.json", f"{liar}.json")
    result = run_cli("deploy", "triton", liar, "--out", tmp_path / "a", "--reference", src)
    assert_one_line_error(result, "fails the accuracy gate", code=1)
    result = run_cli("deploy", "triton", reduced, "--out", tmp_path / "b", "--reference", reduced)
    assert_one_line_error(result, "is not the ONNX", code=2)


@pytest.mark.parametrize("gate", [{"judged": True, "passed": True, "confident_agreement": "x"},
                                  {"judged": True, "passed": True, "confident_agreement": 5.0},
                                  {"judged": "yes", "passed": True}, "pass"])
def test_a_damaged_calibration_gate_in_a_cache_entry_is_refused(gate):
    """report.md prints the gate's figures: a cache entry cannot smuggle in a string or a 500 %."""
    from segexport.pipeline.records import check_step

    good = {"verdict": "pass", "message": "", "figures": {
        "chosen": "int8", "pixel_agreement": 0.99, "miou_drop": 0.1,
        "gate": {"judged": True, "passed": True, "confident_agreement": 0.998, "confident_fraction": 0.9, "line": "ok"}}}
    check_step("calibrate", good)
    bad = {**good, "figures": {**good["figures"], "gate": gate}}
    with pytest.raises(ValueError, match="calibrate.figures.gate|calibrate.gate"):
        check_step("calibrate", bad)


def test_junit_stays_valid_xml_whatever_a_shard_message_holds():
    import xml.etree.ElementTree as ET

    from segexport.pipeline.manifest import junit_xml

    message = "boom \x1b[31mred\x00 \x07bell"
    manifest = {"entries": [{"model": "m", "variant": "fp32",
                             "steps": {"parity": {"verdict": "fail", "message": message, "figures": {}}}}]}
    root = ET.fromstring(junit_xml(manifest).split("?>", 1)[1])
    failure = root.find(".//failure")
    assert failure is not None and failure.get("message") == "boom ?[31mred? ?bell"
