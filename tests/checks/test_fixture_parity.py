"""On a *trained* fixture, the fp32 export keeps the segmentation: >= 99.99 % label agreement
and an mIoU delta of at most 0.01 pt on the held-out synthetic set (issue-level contract)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize("name", ["unet", "segnet"])
def test_trained_fixture_parity(name, tmp_path, run_cli):
    from segexport.data.synth import make_synthetic
    from segexport.exporter.export import ExportOptions, export_onnx

    meta = json.loads((FIXTURES / "fixtures.json").read_text())["fixtures"][name]
    assert meta["val_miou"] > 60, "fixtures must be trained, not random (see scripts/train_fixtures.py)"
    weights = FIXTURES / meta["file"]
    onnx_path = tmp_path / f"{name}.onnx"
    export_onnx(ExportOptions(model=name, out=onnx_path, weights=weights, num_classes=meta["num_classes"],
                              width=meta["width"], input_size=tuple(meta["input_size"])))
    make_synthetic(tmp_path / "val", 16, tuple(meta["input_size"]), num_classes=meta["num_classes"], seed=1)
    result = run_cli("parity", "--onnx", onnx_path, "--weights", weights, "--images", tmp_path / "val" / "images",
                     "--labels", tmp_path / "val" / "labels", "--count", "16", "--json", tmp_path / "p.json")
    assert result.exit_code == 0, result.stderr + result.stdout
    pair = json.loads((tmp_path / "p.json").read_text())["pairs"][0]
    assert pair["metrics"]["pixel_agreement"] >= 0.9999
    assert abs(pair["miou_reference"] - pair["miou_candidate"]) <= 0.01
    assert pair["miou_reference"] > 60  # a real segmentation, so the agreement figure means something


def test_parity_refuses_other_weights(tmp_path, run_cli):
    from segexport.exporter.export import ExportOptions, export_onnx

    meta = json.loads((FIXTURES / "fixtures.json").read_text())["fixtures"]["unet"]
    onnx_path = tmp_path / "u.onnx"
    export_onnx(ExportOptions(model="unet", out=onnx_path, num_classes=meta["num_classes"], width=meta["width"],
                              input_size=tuple(meta["input_size"]), verify=False))
    result = run_cli("parity", "--onnx", onnx_path, "--weights", FIXTURES / meta["file"])
    assert result.exit_code == 2 and "exported without --weights" in result.stderr
