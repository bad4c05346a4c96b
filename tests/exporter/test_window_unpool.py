"""Unpool however it is written: overlapping, padded, dilated and ceil-mode windows and the
functional ``F.max_pool2d(return_indices=True)`` / ``F.max_unpool2d`` export exact (max-abs 0
against PyTorch, ties and odd sizes included) and TensorRT-parsable, static and dynamic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segexport.exporter.unpool import MaskedMaxPool2d, MaskedMaxUnpool2d, prepare_for_export
from segexport.exporter.window_unpool import Geometry, WindowMaxPool2d, WindowMaxUnpool2d
from tests.conftest import require_tensorrt_rtx
from tests.exporter.test_unpool import inputs

MODELS = Path(__file__).with_name("edge_models.py")

# kernel, stride, padding, dilation, ceil_mode
WINDOWS = [(3, 2, 1, 1, False), (3, 2, 1, 1, True), (3, 2, 0, 1, True), (3, 1, 1, 1, False), (2, 1, 0, 1, False),
           (2, 3, 0, 1, True), (3, 2, 1, 2, False), ((3, 2), (2, 1), (1, 0), 1, False), (4, 2, 1, 1, True),
           (2, 2, 1, 1, True), (5, 3, 2, 1, True)]


@pytest.mark.parametrize("kind", ["random", "zeros", "relu", "small-ints"])
@pytest.mark.parametrize("size", [(8, 8), (7, 9), (13, 11)])
@pytest.mark.parametrize("window", WINDOWS, ids=[str(w) for w in WINDOWS])
def test_any_window_is_bit_exact_against_pytorch(window, size, kind):
    k, s, p, d, ceil = window
    x = inputs(kind, (2, 3, *size), seed=sum(size))
    y_ref, idx = F.max_pool2d(x, k, s, p, d, ceil_mode=ceil, return_indices=True)
    g = Geometry(k, s, p, d, ceil)
    y, mask = WindowMaxPool2d(g)(x)
    assert torch.equal(y, y_ref)
    v = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(1))
    # PyTorch's kernel (what F.max_unpool2d runs once it has checked output_size): values at indices,
    # the last window winning where overlapping windows chose the same position
    ref = torch._C._nn.max_unpool2d(v, idx, list(size))
    got = WindowMaxUnpool2d(g)(v, mask, output_size=size)
    assert got.shape == ref.shape and torch.equal(got, ref)


def test_shared_maxima_keep_the_last_window_as_pytorch_does():
    """Maxima on the rows and columns 3x3/2 windows overlap on are shared by up to four windows;
    the unpooled value there is the last window's (row-major), as PyTorch's CPU kernel writes."""
    x = torch.zeros(1, 1, 5, 5)
    x[..., 1, 1] = x[..., 3, 3] = x[..., 1, 3] = 5.0
    y_ref, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    v = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    ref = torch._C._nn.max_unpool2d(v, idx, [5, 5])
    assert len(torch.unique(idx)) < idx.numel()  # duplicates: the case that needs the rule
    g = Geometry(3, 2, 1)
    assert torch.equal(WindowMaxUnpool2d(g)(v, WindowMaxPool2d(g)(x)[1], output_size=(5, 5)), ref)


def test_default_output_size_matches_pytorch():
    x = torch.randn(1, 2, 9, 11)
    y_ref, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    g = Geometry(3, 2, 1)
    _, mask = WindowMaxPool2d(g)(x)
    assert torch.equal(WindowMaxUnpool2d(g)(y_ref, mask), F.max_unpool2d(y_ref, idx, 3, 2, 1))


def test_modules_take_the_fast_path_only_for_plain_windows():
    plain = prepare_for_export(nn.ModuleDict({"p": nn.MaxPool2d(2, 2, return_indices=True), "u": nn.MaxUnpool2d(2)}))
    assert isinstance(plain["p"], MaskedMaxPool2d) and isinstance(plain["u"], MaskedMaxUnpool2d)
    overlapping = prepare_for_export(nn.ModuleDict({"p": nn.MaxPool2d(3, 2, 1, return_indices=True),
                                                    "u": nn.MaxUnpool2d(3, 2, 1)}))
    assert isinstance(overlapping["p"], WindowMaxPool2d) and isinstance(overlapping["u"], WindowMaxUnpool2d)


def test_indices_of_another_pool_are_refused():
    from segexport.errors import UserError

    _, mask = WindowMaxPool2d(Geometry(3, 2, 1))(torch.randn(1, 2, 8, 8))
    with pytest.raises(UserError, match="indices of another pool"):
        WindowMaxUnpool2d(Geometry(2, 2, 1))(torch.randn(1, 2, 4, 4), mask, output_size=(8, 8))


CASES = {  # id: --model-arg flags of edge_models.pool_unpool
    "functional-2x2": ["functional=true"],
    "module-3x3s2p1": ["kernel=3", "stride=2", "padding=1"],
    "functional-3x3s2p1-relu": ["kernel=3", "stride=2", "padding=1", "functional=true", "relu=true"],
    "module-3x3s2p1-ceil": ["kernel=3", "stride=2", "padding=1", "ceil_mode=true"],
}


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("case", list(CASES))
def test_exports_exact_lint_clean_and_built(run_cli, tmp_path, case, dynamic):
    import onnx

    from segexport.core.sessions import ort_session
    from segexport.models.loading import load_model

    out = tmp_path / f"{case}.onnx"
    args = [a for flag in CASES[case] for a in ("--model-arg", flag)]
    result = run_cli("onnx", "--model", f"{MODELS}:pool_unpool", *args, "--input-size", "33x29",
                     *(["--dynamic", "hw", "--hw-range", "17x15:66x58"] if dynamic else []), "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "lint: 0 errors, 0 warnings" in result.stdout
    graph = onnx.load(str(out)).graph
    ops = {n.op_type for n in graph.node}
    assert not ops & {"MaxUnpool", "ScatterND", "ScatterElements"}, ops
    assert not any(n.op_type == "MaxPool" and len([o for o in n.output if o]) > 1 for n in graph.node)
    kwargs = dict(a.split("=") for a in CASES[case])
    model = load_model(f"{MODELS}:pool_unpool", model_args={k: v == "true" if v in ("true", "false") else int(v)
                                                              for k, v in kwargs.items()}).model
    session = ort_session(out)
    for shape in ([(1, 3, 17, 15), (1, 3, 40, 23), (1, 3, 66, 58)] if dynamic else [(1, 3, 33, 29)]):
        for kind in ("random", "zeros", "small-ints"):
            x = inputs(kind, shape, seed=shape[2])
            with torch.no_grad():
                ref = model(x).numpy()
            got = session.run(None, {"input": x.numpy()})[0]
            assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max()), (shape, kind)
    require_tensorrt_rtx()
    built = run_cli("lint", out, "--build")
    assert built.exit_code == 0 and "engine: built" in built.stdout, built.stdout
