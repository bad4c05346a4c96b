"""Verification feeds tie-heavy inputs as well as noise: a tie-break unlike PyTorch's passes on
noise (nothing ties) and must fail on flat regions, and a correct rewrite is exact on both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from segexport.core.comparison import probe_inputs
from segexport.core.noise_floor import measure_floor

MODELS = Path(__file__).with_name("edge_models.py")


def test_probe_inputs_tie_where_they_say():
    made = dict(probe_inputs((1, 3, 16, 12), np.random.default_rng(0)))
    assert set(made) == {"random", "flat", "constant"}
    flat = made["flat"]
    assert (flat[..., :8, :] == 0).all() and (flat[..., 8:12, :] == 1).all()
    assert len(np.unique(flat[..., 12:, :])) == flat[..., 12:, :].size  # the rest is noise
    assert (made["constant"] == made["constant"].flat[0]).all() and made["constant"].flat[0] != 0
    assert len(np.unique(made["random"])) == made["random"].size


def test_the_flat_floor_keeps_exact_ties_exact():
    """The floor of a flat input jitters globally: a pool window tied exactly stays tied, so a
    reference whose ties are exact measures as stable and the strict contract stands."""
    pool = torch.nn.MaxPool2d(2, 2, return_indices=True)
    unpool = torch.nn.MaxUnpool2d(2, 2)

    def reference(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x)
        y, i = pool(t)
        return unpool(y + 1, i).numpy()  # a value where the first maximum was, zero elsewhere

    x = dict(probe_inputs((1, 3, 16, 16), np.random.default_rng(0)))["flat"]
    ref = reference(x)
    kept = measure_floor(reference, x, ref, np.random.default_rng(1), keep_flat=True)
    assert all(f.pixel_agreement == 1.0 for f in kept)
    scattered = measure_floor(reference, x, ref, np.random.default_rng(1))  # a per-element jitter breaks every tie
    assert min(f.pixel_agreement for f in scattered) < 0.99


def _export(tmp_path, name="enet.onnx", factory="enet", **kw):
    from segexport.exporter.export import ExportOptions, export_onnx

    return export_onnx(ExportOptions(model=f"{MODELS}:{factory}", out=tmp_path / name, input_size=(48, 40), **kw))


def test_enet_is_exact_on_noise_flat_and_constant_inputs(tmp_path):
    result = _export(tmp_path)
    kinds = {row.input for row in result.verify}
    assert kinds == {"random", "flat", "constant"}
    for row in result.verify:
        assert row.passed and not row.held_to_floor, (row.input, row.metrics)
        assert row.metrics.pixel_agreement == 1.0


def test_a_last_maximum_tie_break_passes_noise_and_fails_flat_inputs(tmp_path, monkeypatch):
    """A rewrite that keeps the *last* maximum of a window (PyTorch keeps the first) agrees with
    PyTorch wherever no two values tie: on noise through a conv (no ReLU). Verification must
    refuse it. (ENet itself ties even on noise: its overlapping 3x3 pool repeats maxima.)"""
    from segexport.errors import CheckFailed
    from segexport.exporter import unpool

    real = unpool.MaskedMaxPool2d.forward

    def last_max_flagged(self, x):
        kh, kw = self.kernel_size
        top, mask = real(self, x)
        n, _, ho, wo = mask.shape
        m = mask.reshape(n, -1, kh * kw, ho, wo)
        parts = [x[:, :, i: ho * kh: kh, j: wo * kw: kw] == top for i in range(kh) for j in range(kw)]
        later = torch.zeros_like(parts[0])
        flags = []
        for hit in reversed(parts):  # the last equal position wins
            flags.append(hit & ~later)
            later = later | hit
        return top, torch.stack(flags[::-1], 2).reshape_as(mask)

    monkeypatch.setattr(unpool.MaskedMaxPool2d, "forward", last_max_flagged)
    with pytest.raises(CheckFailed) as info:
        _export(tmp_path, "bad.onnx", factory="pool_unpool")
    rows = info.value.result.verify
    assert next(r for r in rows if r.input == "random").passed  # noise never ties: it cannot see the bug
    assert "(flat)" in str(info.value) and "first maximum" in str(info.value)
    assert not (tmp_path / "bad.onnx").exists()
