"""The masked unpool rewrite is bit-exact with PyTorch (max-abs diff exactly 0), ties included,
and what it exports is what TensorRT parses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segexport.errors import UserError
from segexport.exporter.unpool import MaskedMaxPool2d, MaskedMaxUnpool2d, prepare_for_export


def inputs(kind: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        return torch.randn(*shape, generator=g)
    if kind == "zeros":  # all-zero windows: every position ties, the first must win
        return torch.zeros(*shape)
    if kind == "relu":  # the common case after ReLU: many zero ties mixed with maxima
        return torch.relu(torch.randn(*shape, generator=g))
    return torch.randint(0, 3, shape, generator=g).float()  # few distinct values: ties everywhere


@pytest.mark.parametrize("kind", ["random", "zeros", "relu", "small-ints"])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("size", [(8, 8), (7, 9), (225, 301), (5, 4)])
def test_bit_exact_against_pytorch(kind, ceil_mode, k, size):
    x = inputs(kind, (2, 3, *size), seed=hash((kind, k, size)) % 1000)
    pool = nn.MaxPool2d(k, k, ceil_mode=ceil_mode, return_indices=True)
    unpool = nn.MaxUnpool2d(k, k)
    y_ref, idx = pool(x)
    v = torch.randn_like(y_ref)  # decoder features, unrelated to the pooled values
    y, mask = MaskedMaxPool2d((k, k), ceil_mode)(x)
    assert torch.equal(y, y_ref)
    for out_size in (x.shape[-2:], None):
        if out_size is None and (size[0] % k or size[1] % k):
            # Without output_size PyTorch unpools to Ho*k x Wo*k but reads the flat indices, which
            # count positions in rows of the *input* width: values land scrambled. Real models
            # pass output_size (the zoo always does); the rewrite places values where they were.
            continue
        ref = unpool(v, idx, output_size=out_size) if out_size is not None else unpool(v, idx)
        got = MaskedMaxUnpool2d()(v, mask, output_size=out_size)
        assert got.shape == ref.shape
        assert (got - ref).abs().max().item() == 0.0
        assert torch.equal(got, ref)


def test_prepare_swaps_modules_on_a_copy():
    from segexport.models.registry import build_model

    model = build_model("segnet", width=1 / 16)
    prepared = prepare_for_export(model)
    assert prepared is not model
    assert not any(isinstance(m, (nn.MaxUnpool2d,)) for m in prepared.modules())
    assert not any(isinstance(m, nn.MaxPool2d) and m.return_indices for m in prepared.modules())
    assert any(isinstance(m, nn.MaxUnpool2d) for m in model.modules())  # original untouched
    x = torch.relu(torch.randn(2, 3, 67, 45))
    with torch.no_grad():
        assert torch.equal(model(x), prepared(x))


def test_whole_deconvnet_is_bit_exact_after_the_swap():
    from segexport.models.registry import build_model

    model = build_model("deconvnet", width=1 / 16)
    x = torch.randn(1, 3, 201, 197)
    with torch.no_grad():
        assert torch.equal(model(x), prepare_for_export(model)(x))


def test_windows_pytorch_itself_refuses_are_refused_with_the_module_named():
    """Overlapping and padded windows are rewritten (test_window_unpool.py); a padding larger than
    half the kernel, which PyTorch's kernel rejects at run time, is refused up front."""
    model = nn.Sequential(nn.MaxPool2d(2, 2, padding=2, return_indices=True))
    with pytest.raises(UserError, match="padding at most half the kernel") as info:
        prepare_for_export(model)
    assert "'0'" in str(info.value)  # names the module


@pytest.mark.parametrize("size", [(8, 8), (9, 7), (33, 1)])
def test_ceil_mode_pool_rewrite_is_exact(size):
    from segexport.exporter.unpool import CeilModeMaxPool2d

    x = torch.randn(2, 3, *size)
    assert torch.equal(CeilModeMaxPool2d((2, 2))(x), nn.MaxPool2d(2, 2, ceil_mode=True)(x))


def test_native_mode_returns_the_model():
    model = nn.Sequential(nn.Conv2d(3, 3, 1))
    assert prepare_for_export(model, "native") is model


def test_exported_pair_stays_at_most_5d_and_is_bit_exact_in_onnx_runtime(tmp_path):
    """The rewrite's ONNX: no window reductions, no 6-D tensor (TensorRT shuffles), one DepthToSpace,
    and ONNX Runtime's output equals PyTorch's MaxPool/MaxUnpool bit for bit at other (odd) sizes."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool, self.unpool = MaskedMaxPool2d((2, 2), True), MaskedMaxUnpool2d((2, 2))

        def forward(self, x):
            y, mask = self.pool(x)
            return self.unpool(y * 2 - 1, mask, output_size=x.shape[-2:])

    dim = torch.export.Dim
    program = torch.onnx.export(Pair().eval(), (torch.randn(1, 3, 10, 12),), dynamo=True, verbose=False,
                                dynamic_shapes=({2: dim("h", min=2, max=64), 3: dim("w", min=2, max=64)},))
    path = tmp_path / "pair.onnx"
    program.save(str(path))
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    ops = {n.op_type for n in model.graph.node}
    assert "DepthToSpace" in ops and not ops & {"ReduceMax", "MaxUnpool", "ScatterND", "ScatterElements"}
    ranks = [len(v.type.tensor_type.shape.dim) for v in [*model.graph.value_info, *model.graph.output]]
    assert ranks and max(ranks) <= 5
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pool, unpool = nn.MaxPool2d(2, 2, ceil_mode=True, return_indices=True), nn.MaxUnpool2d(2, 2)
    for size in ((9, 7), (16, 16), (33, 2)):
        x = torch.relu(torch.randn(1, 3, *size))  # zero ties everywhere
        y, idx = pool(x)
        ref = unpool(y * 2 - 1, idx, output_size=x.shape[-2:]).numpy()
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        assert got.shape == ref.shape and np.array_equal(got, ref)
