"""Non-overlapping ``F.unfold`` / ``F.fold`` (Hugging Face MobileViTV2's patches) export as
Reshape + Transpose, exact against PyTorch, static and dynamic; an overlapping fold is left as
Col2Im, which lint names with its PyTorch module."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from segexport.exporter.patch_folds import non_overlapping, patch_folds_as_reshapes
from tests.conftest import assert_matches_pytorch_and_builds, assert_one_line_error, require_tensorrt_rtx

MODELS = Path(__file__).with_name("edge_models.py")


@pytest.mark.parametrize("shape, kernel", [((2, 3, 8, 12), 2), ((1, 5, 9, 7), (2, 3)), ((4, 6, 6), 3),
                                           ((1, 2, 7, 7), 2), ((1, 1, 5, 4), 1)])
def test_unfold_and_fold_are_pytorchs_own(shape, kernel):
    x = torch.randn(*shape)
    patches = F.unfold(x, kernel, stride=kernel)
    folded = F.fold(patches, shape[-2:], kernel, stride=kernel)  # zeros where no whole window reaches
    with patch_folds_as_reshapes():
        assert torch.equal(F.unfold(x, kernel, stride=kernel), patches)
        assert torch.equal(torch.nn.Fold(shape[-2:], kernel, stride=kernel)(patches), folded)
    assert F.fold.__module__ == "torch.nn.functional"  # restored


def test_only_non_overlapping_windows_are_rewritten():
    assert non_overlapping(2, stride=2) == (2, 2)
    assert non_overlapping((2, 3), stride=(2, 3)) == (2, 3)
    assert non_overlapping(2, stride=1) is None
    assert non_overlapping(2, padding=1, stride=2) is None
    assert non_overlapping(2, dilation=2, stride=2) is None


def _ops(path):
    import onnx

    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("dynamic", [[], ["--dynamic", "hw"]], ids=["static", "dynamic"])
def test_patch_fold_exports_without_col2im(run_cli, tmp_path, dynamic):
    out = tmp_path / "f.onnx"
    result = run_cli("onnx", "--model", f"{MODELS}:patch_fold_3x3", "--input-size", "36x36", *dynamic, "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "lint: 0 errors, 0 warnings" in result.stdout
    ops = _ops(out)
    assert "Col2Im" not in ops and "Gather" not in ops, ops
    # dynamic: maps of 20x12 and 32x17 (17 is no multiple of 3: unfold crops, fold pads zeros)
    assert_matches_pytorch_and_builds(run_cli, out, f"{MODELS}:patch_fold_3x3",
                                      [(1, 3, 40, 24), (1, 3, 63, 33)] if dynamic else [(1, 3, 36, 36)])


def test_an_overlapping_fold_stays_col2im_and_names_its_module(run_cli, tmp_path):
    out = tmp_path / "o.onnx"
    result = run_cli("onnx", "--model", f"{MODELS}:overlapping_fold", "--input-size", "32x32", "--out", out)
    assert_one_line_error(result, "Col2Im is not supported", "(PyTorch module 'attn')", code=1)
    assert not out.exists()
