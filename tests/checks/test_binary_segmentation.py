"""One-channel models (binary segmentation, a sigmoid logit a pixel) get real label checks.

An argmax over one channel is 0 everywhere, so before labels were ``logit > 0`` every
label-based check (all INT8 parity is label-based) passed whatever the runtime computed.
"""

from __future__ import annotations

import textwrap

import numpy as np
import onnxruntime as ort
import pytest
import torch

from segexport.checks.metrics import THRESHOLDS, compare, evaluate, labels_of, miou, top2_margin
from segexport.data.images import load_labels


def _logits(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((2, 1, 8, 8)).astype(np.float32)


def test_labels_are_the_sign_of_the_logit():
    z = _logits()
    assert np.array_equal(labels_of(z), (z[:, 0] > 0).astype(np.int64))
    assert set(np.unique(labels_of(z))) == {0, 1}
    assert np.allclose(top2_margin(z), np.abs(z[:, 0]))


def test_a_flipped_sign_fails_label_agreement():
    ref = _logits()
    cand = ref.copy()
    cand[0, 0, :2] *= -1  # 16 of 128 pixels change side
    m = compare(ref, cand)
    assert m.pixel_agreement == pytest.approx(1 - 16 / 128)
    failed = {c.name for c in evaluate(m, THRESHOLDS["int8"]) if not c.passed}
    assert "pixel_agreement" in failed
    assert set(m.class_iou) == {0, 1}


def test_miou_and_labels_take_0_and_1_for_one_channel(tmp_path):
    from PIL import Image

    truth = np.zeros((1, 4, 4), np.int64)
    truth[0, :, 2:] = 1
    assert miou(truth, truth, num_classes=1) == pytest.approx(100.0)
    Image.fromarray(truth[0].astype(np.uint8)).save(tmp_path / "a.png")
    assert np.array_equal(load_labels(tmp_path, [tmp_path / "a.png"], (4, 4), num_classes=1), truth)


BINARY_NET = textwrap.dedent(
    """
    from torch import nn

    def build():
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    """
)


def test_argmax_export_of_a_binary_model_thresholds_the_logit(run_cli, tmp_path, monkeypatch):
    (tmp_path / "binnet.py").write_text(BINARY_NET)
    monkeypatch.chdir(tmp_path)
    result = run_cli("onnx", "--model", "binnet:build", "--num-classes", "1", "--input-size", "24",
                     "--argmax", "--out", "bin.onnx")
    assert result.exit_code == 0, result.stderr
    from segexport.exporter.metadata import read_record
    from segexport.models.loading import load_model

    record = read_record(tmp_path / "bin.onnx")
    assert record.class_names == ("background", "foreground")
    x = np.random.default_rng(1).standard_normal((1, 3, 24, 24)).astype(np.float32)
    got = ort.InferenceSession(str(tmp_path / "bin.onnx")).run(None, {"input": x})[0]
    model = load_model("binnet:build", num_classes=1).model
    with torch.no_grad():
        want = (model(torch.from_numpy(x))[:, 0] > 0).numpy().astype(np.int32)
    assert got.dtype == np.int32 and got.shape == (1, 24, 24)
    assert np.array_equal(got, want) and 0 < want.mean() < 1
