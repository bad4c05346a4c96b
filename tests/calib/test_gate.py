"""The accuracy gate: every reduced artefact is judged by default, on trained and hostile networks.

A ✓ must be earned: trained SegNet INT8 (the network whose unpool mask the quantizer broke)
passes within its limits; the same graph with the bug put back fails; a network whose INT8
scale swamps its signal fails in one line and passes only with the guilty layer kept in float;
an untrained network is "not judged", never ✓ and never failed for noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segexport.calib.gate import CONFIDENT_MARGIN, confidence_margin, judge
from tests.conftest import assert_one_line_error

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HOSTILE = "tests.calib.hostile_models:swamped"


def _labels(rng, n=2, h=8, w=8, classes=3):
    return rng.integers(0, classes, size=(n, h, w))


def test_flips_on_confident_pixels_fail_and_flips_on_ties_do_not():
    rng = np.random.default_rng(0)
    ref = _labels(rng)
    margin = np.full(ref.shape, 5.0, np.float32)
    margin[:, :, :2] = 0.01  # a quarter of the pixels tie
    cand = ref.copy()
    cand[:, :, :2] = (ref[:, :, :2] + 1) % 3  # every tied pixel flips: noise
    ok = judge("int8", reference_labels=ref, candidate_labels=cand, reference_margin=margin, miou_drop=None)
    assert ok.judged and ok.passed and ok.confident_agreement == 1.0 and ok.pixel_agreement == 0.75
    cand[:, :, 2] = (ref[:, :, 2] + 1) % 3  # and one column of decided pixels
    bad = judge("int8", reference_labels=ref, candidate_labels=cand, reference_margin=margin, miou_drop=None)
    assert bad.judged and not bad.passed and "confident pixels changed" in bad.line and "--max-agreement-drop" in bad.line
    # the user's budget replaces the default: 1/6 of the confident pixels may change at 20 %
    loose = judge("int8", reference_labels=ref, candidate_labels=cand, reference_margin=margin, miou_drop=None,
                  max_agreement_drop=20.0)
    assert loose.passed


def test_mIoU_drop_fails_with_labels_and_fp16_is_held_tighter():
    rng = np.random.default_rng(1)
    ref = _labels(rng)
    margin = np.full(ref.shape, 5.0, np.float32)
    assert not judge("int8", reference_labels=ref, candidate_labels=ref, reference_margin=margin, miou_drop=1.5).passed
    assert judge("int8", reference_labels=ref, candidate_labels=ref, reference_margin=margin, miou_drop=0.8).passed
    cand = ref.copy()
    cand[0, 0, :2] = (ref[0, 0, :2] + 1) % 3  # 2 of 128 pixels: 1.6 %
    assert not judge("fp16", reference_labels=ref, candidate_labels=cand, reference_margin=margin, miou_drop=None).passed
    assert not judge("int8", reference_labels=ref, candidate_labels=cand, reference_margin=margin, miou_drop=None).passed


def test_a_tied_reference_is_not_judged_not_passed_silently():
    rng = np.random.default_rng(2)
    ref = _labels(rng)
    cand = _labels(rng)  # half the labels differ
    verdict = judge("int8", reference_labels=ref, candidate_labels=cand,
                    reference_margin=np.full(ref.shape, 0.01, np.float32), miou_drop=0.2)
    assert not verdict.judged and verdict.passed and verdict.line.startswith("not judged")


def test_probability_outputs_are_judged_in_logits():
    """A model ending in softmax must not escape the gate because probabilities never differ by 1."""
    logits = np.array([[[[3.0]], [[0.5]], [[0.0]]]], np.float32)  # 1 x 3 x 1 x 1
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert confidence_margin(logits)[0, 0, 0] == pytest.approx(2.5)
    assert confidence_margin(probs)[0, 0, 0] == pytest.approx(2.5, rel=1e-5)
    sig = 1 / (1 + np.exp(-np.array([[[[-2.0]]]], np.float32)))
    assert confidence_margin(sig)[0, 0, 0] == pytest.approx(2.0, rel=1e-4)
    assert CONFIDENT_MARGIN == 1.0


@pytest.fixture(scope="module")
def trained_segnet(tmp_path_factory):
    import segexport

    meta = json.loads((FIXTURES / "fixtures.json").read_text())["fixtures"]["segnet"]
    out = tmp_path_factory.mktemp("gate") / "segnet.onnx"
    segexport.export(model="segnet", out=out, weights=FIXTURES / meta["file"], num_classes=meta["num_classes"],
                     width=meta["width"], input_size=tuple(meta["input_size"]))
    return out


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_trained_segnet_passes_the_gate(trained_segnet, tmp_path, run_cli, precision):
    out, report = tmp_path / f"s.{precision}.onnx", tmp_path / "r.json"
    result = run_cli("calibrate", trained_segnet, "--precision", precision, "--calib-count", "32", "--eval-count", "32",
                     "--out", out, "--json", report)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(report.read_text())
    assert doc["passed"] and doc["gate"]["judged"] and out.exists()
    assert doc["pixel_agreement"] >= 0.99
    assert doc["miou"]["fp32"] - doc["miou"][precision] <= 0.5
    assert "accuracy gate passed" in result.stdout


def test_the_unpool_bug_put_back_fails_the_gate(trained_segnet, tmp_path, run_cli, monkeypatch):
    """Undo the exact-region fix and skip the self-check that names it: the gate alone must catch it."""
    import segexport.core.exact as exact

    monkeypatch.setattr(exact, "restore_exact_inputs", lambda model: 0)
    out = tmp_path / "s.int8.onnx"
    result = run_cli("calibrate", trained_segnet, "--precision", "int8", "--calib-count", "16", "--out", out)
    assert_one_line_error(result, "compares a Q/DQ copy", code=1)  # the self-check names the broken comparison
    monkeypatch.setattr(exact, "exact_violations", lambda model: [])
    result = run_cli("calibrate", trained_segnet, "--precision", "int8", "--calib-count", "16", "--out", out)
    assert_one_line_error(result, "fails the accuracy gate", "confident pixels changed", code=1)
    assert not out.exists() and not Path(f"{out}.json").exists()


@pytest.fixture(scope="module")
def swamped(tmp_path_factory):
    import segexport

    out = tmp_path_factory.mktemp("swamped") / "sw.onnx"
    segexport.export(model=HOSTILE, out=out, input_size=(32, 32))
    return out


def test_a_swamped_activation_fails_in_one_line_and_writes_its_report(swamped, tmp_path, run_cli):
    out, report = tmp_path / "sw.int8.onnx", tmp_path / "r.json"
    result = run_cli("calibrate", swamped, "--precision", "int8", "--out", out, "--json", report)
    assert_one_line_error(result, "fails the accuracy gate", "--max-agreement-drop", code=1)
    assert not out.exists() and "not written" in result.stdout
    doc = json.loads(report.read_text())
    assert doc["passed"] is False and doc["gate"]["confident_agreement"] < 0.5


def test_a_budget_keeps_the_swamped_layer_in_float_and_passes(swamped, tmp_path, run_cli):
    out, report = tmp_path / "sw.int8.onnx", tmp_path / "r.json"
    result = run_cli("calibrate", swamped, "--precision", "int8", "--max-agreement-drop", "1", "--out", out,
                     "--json", report)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(report.read_text())
    assert [k["module"] for k in doc["kept_float"]] == ["head"]
    assert doc["gate"]["passed"] and doc["gate"]["confident_agreement"] >= 0.99


def test_onnx_precision_int8_is_gated_too(tmp_path, run_cli):
    out, report = tmp_path / "sw.onnx", tmp_path / "checks.json"
    result = run_cli("onnx", "--model", HOSTILE, "--input-size", "32x32", "--precision", "int8", "--out", out,
                     "--json", report)
    assert result.exit_code == 1, result.stderr
    assert "fails the accuracy gate" in result.stderr
    assert out.exists() and not (tmp_path / "sw.int8.onnx").exists()  # the verified fp32 stands, the INT8 does not
    doc = json.loads(report.read_text())  # the report says why
    assert doc["calibrate"]["passed"] is False and doc["calibrate"]["gate"]["confident_agreement"] < 0.5


def test_an_untrained_network_is_not_judged_and_gets_no_check_mark(tmp_path, run_cli):
    import segexport

    src = tmp_path / "segnet.onnx"
    segexport.export(model="segnet", out=src, width=0.0625, num_classes=4, input_size=(32, 32))
    result = run_cli("calibrate", src, "--precision", "int8", "--calib-count", "8")
    assert result.exit_code == 0, result.stderr
    assert "not judged" in result.stdout and "✓" not in result.stdout


def test_nan_output_and_a_labelled_mIoU_drop_fail_without_confident_pixels():
    """An untrained-looking reference cannot hide an FP16 overflow or a measured accuracy loss."""
    rng = np.random.default_rng(3)
    ref = _labels(rng)
    tied = np.full(ref.shape, 0.01, np.float32)
    nan = judge("fp16", reference_labels=ref, candidate_labels=ref, reference_margin=tied, miou_drop=None,
                candidate_nonfinite=3)
    assert not nan.passed and "NaN/inf" in nan.line
    lost = judge("int8", reference_labels=ref, candidate_labels=ref, reference_margin=tied, miou_drop=4.0)
    assert not lost.passed and "no confident pixels" in lost.line
