"""An antialiased bicubic resize of a *constant* (smp DPT's ViT position embedding, resampled to
the patch grid whenever the input is not the pretraining size) is folded into a static export as
PyTorch computes it, so the export matches PyTorch and TensorRT parses it; where the size follows
a dynamic input the export is refused in one line naming the module. Resizes of anything computed
from the input stay refused (test_resize.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segexport.exporter.resize import find_unsafe_interpolation
from tests.conftest import assert_one_line_error, require_tensorrt_rtx

MODELS = Path(__file__).with_name("third_party_models.py")


@pytest.mark.parametrize("size", ["48x40", "24x56"])
def test_position_embedding_resize_is_folded_and_exact(run_cli, tmp_path, size):
    import onnx

    from segexport.core.sessions import ort_session
    from segexport.models.loading import load_model

    out = tmp_path / "dpt.onnx"
    result = run_cli("onnx", "--model", f"{MODELS}:smp_dpt", "--input-size", size, "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "lint: 0 errors, 0 warnings" in result.stdout
    assert "folded into the export" in " ".join(result.stdout.split()), result.stdout
    proto = onnx.load(str(out))
    assert not [n for n in proto.graph.node if n.op_type == "Resize" and
                any(a.name == "antialias" and a.i for a in n.attribute)]
    model = load_model(f"{MODELS}:smp_dpt").model
    session = ort_session(out)
    h, w = map(int, size.split("x"))
    for seed in range(3):  # inputs the CLI's verification did not see
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            ref = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
        assert (got.argmax(1) == ref.argmax(1)).all()
    require_tensorrt_rtx()
    built = run_cli("lint", out, "--build")
    assert built.exit_code == 0 and "engine: built" in built.stdout, built.stdout


def test_the_fold_follows_a_dynamic_batch(run_cli, tmp_path):
    """The embedding does not depend on the batch: dynamic batch keeps the fold, right at every batch."""
    from segexport.core.sessions import ort_session
    from segexport.models.loading import load_model

    out = tmp_path / "dpt.onnx"
    result = run_cli("onnx", "--model", f"{MODELS}:smp_dpt", "--input-size", "48x40", "--dynamic", "batch",
                     "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    model, session = load_model(f"{MODELS}:smp_dpt").model, ort_session(out)
    x = torch.randn(3, 3, 48, 40)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(session.run(None, {"input": x.numpy()})[0] - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("size", ["48x40", "32x32"])  # 32x32: the pretraining grid, traced at the maximum
def test_a_dynamic_size_is_refused_naming_the_module(run_cli, tmp_path, size):
    out = tmp_path / "dpt.onnx"
    result = run_cli("onnx", "--model", f"{MODELS}:smp_dpt", "--input-size", size, "--dynamic", "hw", "--out", out)
    assert_one_line_error(result, "--dynamic: module 'encoder' resizes a constant",
                          "interpolate(mode='bicubic', antialias=True)", "export without --dynamic")
    assert not out.exists()


class _Mixed(nn.Module):
    """A resize of a parameter (folded) next to one of features (refused), written every which way."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(1, 2, 3, 3))
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        t = F.interpolate(self.table * 2, (6, 6), None, "bicubic", False, None, True)  # positional arguments
        y = torch.zeros_like(x[:, :2])
        y[:, :] = self.conv(x)  # written in place: derives from the input all the same
        return F.interpolate(y, size=(6, 6), mode="bicubic", align_corners=False) + t


def test_only_resizes_of_constants_are_folded():
    model = _Mixed().eval()
    problems, folds, _ = find_unsafe_interpolation(model, torch.randn(1, 3, 6, 6))
    assert len(folds) == 1 and folds[0].module == "_Mixed" and folds[0].value.shape == (1, 2, 6, 6)
    with torch.no_grad():
        assert torch.equal(folds[0].value, F.interpolate(model.table * 2, (6, 6), mode="bicubic", antialias=True))
    assert len(problems) == 1 and "'bicubic'" in problems[0], problems
