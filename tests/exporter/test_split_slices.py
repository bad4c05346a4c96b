"""``torch.split`` / ``torch.chunk`` into Python lists export as Slices (TensorRT has no
sequences), exactly; what still reaches the graph as SplitToSequence names its PyTorch module."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from segexport.exporter.split_slices import splits_as_slices
from tests.conftest import assert_matches_pytorch_and_builds, assert_one_line_error, require_tensorrt_rtx

MODELS = Path(__file__).with_name("edge_models.py")


def test_pieces_are_pytorchs_own():
    x = torch.randn(2, 17, 5)
    cases = [lambda t: torch.split(t, 5, 1), lambda t: torch.split(t, [1, 8, 8], 1), lambda t: t.chunk(3, 1),
             lambda t: t.chunk(4, -1), lambda t: t.split(4, dim=-1), lambda t: torch.chunk(t, 17, 1),
             lambda t: t.chunk(6, 2), lambda t: t.split([2, 3], -1)]
    ref = [c(x) for c in cases]
    with splits_as_slices():
        got = [c(x) for c in cases]
    for r, g in zip(ref, got):
        assert len(r) == len(g) and all(torch.equal(a, b) for a, b in zip(r, g))
    assert torch.split is not None and torch.Tensor.chunk(x, 2)[0].shape == (1, 17, 5)  # restored


@pytest.mark.parametrize("dynamic", [[], ["--dynamic", "hw"]], ids=["static", "dynamic"])
def test_split_attention_exports_without_sequences(run_cli, tmp_path, dynamic):
    import onnx

    out = tmp_path / "s.onnx"
    result = run_cli("onnx", "--model", f"{MODELS}:split_attention", "--input-size", "32x32", *dynamic, "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert not {o for o in ops if "Sequence" in o}, ops
    assert_matches_pytorch_and_builds(run_cli, out, f"{MODELS}:split_attention",
                                      [(1, 3, 40, 24), (1, 3, 63, 33)] if dynamic else [(1, 3, 32, 32)])


def test_a_sequence_op_left_in_the_graph_names_its_module(run_cli, tmp_path, monkeypatch):
    """Without the rewrite (here switched off) the split is SplitToSequence: lint's failure line
    names the PyTorch module it came from."""
    import segexport.exporter.split_slices as split_slices

    monkeypatch.setattr(split_slices, "splits_as_slices", contextlib.nullcontext)
    out = tmp_path / "s.onnx"
    result = run_cli("onnx", "--model", f"{MODELS}:split_attention", "--input-size", "32x32", "--out", out)
    assert_one_line_error(result, "SplitToSequence is not supported", "(PyTorch module 'attn')", code=1)
    assert not out.exists()
