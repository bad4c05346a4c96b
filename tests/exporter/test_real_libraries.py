"""The real MONAI networks (random init, nothing downloaded) through `segexport onnx`: odd sizes,
nearest/bilinear upsampling, verified against PyTorch, linted, built by TensorRT-RTX and reduced.
Skipped without MONAI (``pip install -e ".[thirdparty]"``); the look-alikes in
test_third_party.py always run."""

from __future__ import annotations

from pathlib import Path

import pytest

from segexport.exporter.metadata import read_record
from tests.conftest import require_tensorrt_rtx

pytest.importorskip("monai", reason="MONAI not installed: pip install -e '.[thirdparty]' to export its real networks")

FACTORIES = Path(__file__).with_name("real_third_party.py")


@pytest.mark.parametrize("factory, size, classes", [("real_monai_basicunet", "33x37", 2),
                                                    ("real_monai_segresnet", "32x48", 3)])
def test_real_monai_network_exports_builds_and_reduces(run_cli, tmp_path, factory, size, classes):
    out = tmp_path / f"{factory}.onnx"
    result = run_cli("onnx", "--model", f"{FACTORIES}:{factory}", "--input-size", size, "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "lint: 0 errors, 0 warnings" in result.stdout and "pass" in result.stdout
    assert read_record(out).num_classes == classes  # the factory's out_channels, from its output
    for precision in ("fp16", "int8"):
        reduced = run_cli("calibrate", out, "--precision", precision, "--calib-count", "4", "--eval-count", "2")
        assert reduced.exit_code == 0, reduced.stdout + reduced.stderr
    require_tensorrt_rtx()
    built = run_cli("lint", out, "--build")
    assert built.exit_code == 0 and "engine: built" in built.stdout, built.stdout
