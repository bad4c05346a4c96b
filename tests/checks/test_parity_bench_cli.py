"""``segexport parity`` and ``segexport bench`` end to end on a tiny export."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.conftest import TINY_WIDTH, assert_one_line_error


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from segexport.data.synth import make_synthetic
    from segexport.exporter.export import ExportOptions, export_onnx

    root = tmp_path_factory.mktemp("parity")
    result = export_onnx(ExportOptions(model="segnet", out=root / "s.onnx", width=TINY_WIDTH, input_size=(48, 48),
                                       dynamic=("batch",), batch_range=(1, 4), num_classes=4))
    make_synthetic(root / "data", 3, (48, 48), num_classes=4, seed=3)
    return root, result.path


def test_parity_passes_on_the_export(exported, run_cli):
    root, onnx_path = exported
    result = run_cli("parity", "--onnx", onnx_path, "--images", root / "data" / "images", "--labels", root / "data" / "labels",
                     "--json", root / "p.json", "--junit", root / "p.xml", "--markdown", root / "p.md", "--save-diff", root / "d")
    assert result.exit_code == 0, result.stderr + result.stdout
    report = json.loads((root / "p.json").read_text())
    assert report["passed"] and report["pairs"][0]["metrics"]["pixel_agreement"] >= 0.9999
    assert report["pairs"][0]["miou_reference"] == pytest.approx(report["pairs"][0]["miou_candidate"], abs=0.01)
    assert ET.parse(root / "p.xml").getroot().get("failures") == "0"
    assert len(list((root / "d").glob("*_disagreement.png"))) == 3


def test_perturbed_onnx_fails_and_junit_names_the_check(exported, run_cli, tmp_path):
    _, onnx_path = exported
    model = onnx.load(str(onnx_path))
    init = max(model.graph.initializer, key=lambda t: np.prod(t.dims))  # the biggest weight tensor
    arr = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array((arr * -1.5).astype(arr.dtype), init.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    result = run_cli("parity", "--onnx", bad, "--junit", tmp_path / "j.xml")
    assert result.exit_code == 1
    assert "parity failed" in result.stderr
    failures = ET.parse(tmp_path / "j.xml").getroot().findall(".//failure")
    assert failures
    names = [case.get("name") for case in ET.parse(tmp_path / "j.xml").getroot().iter("testcase") if case.find("failure") is not None]
    assert "max_abs" in names


def test_bench_table_and_baseline_gate(exported, run_cli, tmp_path):
    _, onnx_path = exported
    first = tmp_path / "b1.json"
    result = run_cli("bench", "--onnx", onnx_path, "--batch", "1,2", "--iterations", "5", "--warmup", "1", "--json", first)
    assert result.exit_code == 0, result.stderr
    for word in ("p50", "p90", "p99", "torch", "ort-cpu", "img/s"):
        assert word in result.stdout
    rows = json.loads(first.read_text())["results"]
    assert {(r["backend"], r["batch"]) for r in rows} == {("torch", 1), ("torch", 2), ("ort-cpu", 1), ("ort-cpu", 2)}
    # An injected slowdown: a baseline four times faster than what this machine just measured.
    fast = json.loads(first.read_text())
    for r in fast["results"]:
        r["p50_ms"] /= 4
    (tmp_path / "fast.json").write_text(json.dumps(fast))
    result = run_cli("bench", "--onnx", onnx_path, "--iterations", "5", "--baseline", tmp_path / "fast.json")
    assert_one_line_error(result, "latency regression", code=1)
    slow = json.loads(first.read_text())
    for r in slow["results"]:
        r["p50_ms"] *= 4
    (tmp_path / "slow.json").write_text(json.dumps(slow))
    result = run_cli("bench", "--onnx", onnx_path, "--iterations", "5", "--baseline", tmp_path / "slow.json")
    assert result.exit_code == 0 and "within baseline" in result.stdout


def test_unavailable_backend_is_reported_skipped(exported, run_cli):
    _, onnx_path = exported
    result = run_cli("bench", "--onnx", onnx_path, "--backends", "ort-cpu,torch-cuda,trt", "--iterations", "2")
    assert result.exit_code == 0
    assert "skipped torch-cuda" in result.stdout and "skipped trt" in result.stdout


def test_parity_bad_inputs(exported, run_cli, tmp_path):
    root, onnx_path = exported
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli("parity", "--onnx", onnx_path, "--images", tmp_path / "empty"), "no PNG/JPEG images")
    assert_one_line_error(run_cli("parity", "--onnx", tmp_path / "none.onnx"), "not found")
    (tmp_path / "other.py").write_text(
        "from torch import nn\n"
        "def build(num_classes=4):\n"
        "    return nn.Conv2d(3, 7, 1)  # ignores num_classes: 7 outputs, not the ONNX's 4\n")
    result = run_cli("parity", "--onnx", onnx_path, "--model", f"{tmp_path / 'other.py'}:build")
    assert_one_line_error(result, "differs from the PyTorch model")


def test_bench_duration_mode(exported, run_cli, tmp_path):
    _, onnx_path = exported
    result = run_cli("bench", "--onnx", onnx_path, "--backends", "ort-cpu", "--duration", "0.3", "--warmup", "0",
                     "--json", tmp_path / "d.json")
    assert result.exit_code == 0, result.stderr
    row = json.loads((tmp_path / "d.json").read_text())["results"][0]
    assert row["iterations"] >= 2 and row["p50_ms"] > 0 and row["throughput"] > 0
    assert_one_line_error(run_cli("bench", "--onnx", onnx_path, "--max-regression", "lots"), "--max-regression")


def test_iobinding_runner_matches_plain_runner_on_cpu(exported):
    """The GPU runner's I/O binding path, exercised on the CPU device (ORT supports both)."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    from segexport.checks.runners import OrtIoBindingRunner

    _, onnx_path = exported
    x = np.random.default_rng(0).standard_normal((2, 3, 48, 48)).astype(np.float32)
    with OrtIoBindingRunner(onnx_path, ["CPUExecutionProvider"], device="cpu") as runner:
        first = runner.infer({"input": x})["logits"]
        again = runner.infer({"input": x})["logits"]  # re-uses the binding
        assert runner.last_inference_time() > 0
        other = runner.infer({"input": x[::-1].copy()})["logits"]  # a new array is re-bound
        assert np.array_equal(other, first[::-1])
    with OnnxrtRunner(SessionFromOnnx(str(onnx_path), providers=["CPUExecutionProvider"])) as plain:
        ref = plain.infer({"input": x})["logits"]
    assert np.array_equal(first, ref) and np.array_equal(again, ref)
