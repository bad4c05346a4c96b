"""DeconvNet and SegNet against their reference prototxts: any size from min_size up, one pool and
one unpool *module* per stage (the exporter swaps them), unpooling to the encoder's pre-pool sizes,
the reference channel plans, and the papers' parameter counts (on the meta device)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segexport.models import deconvnet, segnet
from segexport.models.registry import _REGISTRY
from tests.conftest import TINY_WIDTH

MODELS = {"deconvnet": deconvnet.DeconvNet, "segnet": segnet.SegNet}


def tiny(name: str, num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return MODELS[name](num_classes, TINY_WIDTH).eval()


def sizes(name: str) -> list[tuple[int, int]]:
    m = _REGISTRY[name].min_size
    return [(m, m), (225, 301), (m + 14, m + 37)]


@pytest.mark.parametrize("name", MODELS)
def test_output_is_input_sized(name):
    model = tiny(name, num_classes=5)
    for h, w in sizes(name):
        with torch.no_grad():
            out = model(torch.randn(1, 3, h, w))
        assert out.shape == (1, 5, h, w)
        assert torch.isfinite(out).all()


def test_deconvnet_min_size_is_tight():
    """fc6 is an unpadded 7x7 conv on pool5 = ceil(H / 32): 193 works (above), 192 leaves 6 rows."""
    assert _REGISTRY["deconvnet"].min_size == 193
    model = tiny("deconvnet")
    for h, w in [(192, 200), (200, 192)]:
        with pytest.raises(RuntimeError), torch.no_grad():
            model(torch.randn(1, 3, h, w))


def test_segnet_takes_any_size():
    """Ceil-mode pools keep at least one row to the end, so min_size 1 is the true bound (0 is no image)."""
    assert _REGISTRY["segnet"].min_size == 1
    model = tiny("segnet")
    with torch.no_grad():
        assert model(torch.randn(1, 3, 1, 37)).shape == (1, 3, 1, 37)


@pytest.mark.parametrize("name", MODELS)
def test_one_pool_and_one_unpool_module_per_stage(name):
    """The exporter swaps nn.MaxPool2d / nn.MaxUnpool2d modules: five of each, none shared, all
    called once per forward, every unpool with output_size."""
    model = tiny(name)
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    unpools = [m for m in model.modules() if isinstance(m, nn.MaxUnpool2d)]
    assert len({id(p) for p in pools}) == len(pools) == 5
    assert len({id(u) for u in unpools}) == len(unpools) == 5
    assert all(p.kernel_size == 2 and p.stride == 2 and p.padding == 0 for p in pools)
    assert all(p.return_indices and p.ceil_mode for p in pools)  # Caffe pooling rounds up (both references)
    assert all(u.kernel_size == (2, 2) and u.stride == (2, 2) for u in unpools)

    pre_pool, unpooled, calls = [], [], []
    hooks = [p.register_forward_hook(lambda m, args, out: pre_pool.append(tuple(args[0].shape[-2:])))
             for p in pools]
    hooks += [u.register_forward_pre_hook(lambda m, args, kwargs: calls.append(kwargs), with_kwargs=True)
              for u in unpools]
    hooks += [u.register_forward_hook(lambda m, args, out: unpooled.append(tuple(out.shape[-2:]))) for u in unpools]
    with torch.no_grad():
        model(torch.randn(1, 3, 225, 301))
    for h in hooks:
        h.remove()
    assert len(calls) == 5 and all("output_size" in kw for kw in calls)
    # Deepest unpool first, each back to the size its mirrored encoder stage had before pooling.
    assert unpooled == pre_pool[::-1]
    assert pre_pool == [(225, 301), (113, 151), (57, 76), (29, 38), (15, 19)]


def test_unpooling_puts_maxima_back_in_place():
    """SegNet's first unpool returns each pooled maximum to its encoder position, odd last rows included."""
    model = tiny("segnet")
    seen = {}
    model.encoder.pools[0].register_forward_hook(lambda m, args, out: seen.update(x=args[0], pooled=out[0]))
    model.unpools[-1].register_forward_hook(lambda m, args, out: seen.update(back=out, into=args[0]))
    with torch.no_grad():
        model(torch.randn(1, 3, 33, 47))
    x, back = seen["x"], seen["back"]
    assert back.shape == x.shape
    # Feed the pooled maxima themselves through the same unpool: every value lands where it was found.
    replay = model.unpools[-1](seen["pooled"], model.encoder.pools[0](x)[1], output_size=x.shape[-2:])
    mask = replay != 0
    assert torch.equal(replay[mask], x[mask])
    assert mask[..., -1, :].any() and mask[..., :, -1].any()  # the odd last row/column takes part


def _out_channels(seq: nn.Module) -> list[int]:
    return [m.out_channels for m in seq.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def test_deconvnet_matches_the_reference_prototxt():
    """HyeonwooNoh/DeconvNet DeconvNet_inference_deploy.prototxt, at full width on the meta device."""
    with torch.device("meta"):
        model = deconvnet.DeconvNet(21, 1.0)
    fc6, fc7, back = model.fc6[0], model.fc7[0], model.fc6_deconv[0]
    assert (fc6.in_channels, fc6.out_channels, fc6.kernel_size, fc6.padding) == (512, 4096, (7, 7), (0, 0))
    assert (fc7.out_channels, fc7.kernel_size) == (4096, (1, 1))
    assert isinstance(back, nn.ConvTranspose2d) and (back.out_channels, back.kernel_size) == (512, (7, 7))
    decoder = [m for d in model.decoders for m in d.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(type(m) is nn.ConvTranspose2d and m.kernel_size == (3, 3) and m.stride == (1, 1)
               and m.padding == (1, 1) for m in decoder)
    assert [m.out_channels for m in decoder] == [512, 512, 512, 512, 512, 256, 256, 256, 128, 128, 64, 64, 64]
    assert model.score.kernel_size == (1, 1) and model.score.out_channels == 21
    # Every convolution and deconvolution except the score is followed by BN + ReLU.
    for seq in [*model.encoder.stages, *model.decoders, model.fc6, model.fc7, model.fc6_deconv]:
        kinds = [type(m) for m in seq.modules() if not isinstance(m, nn.Sequential)]
        assert kinds == [kinds[0], nn.BatchNorm2d, nn.ReLU] * (len(kinds) // 3)


def test_segnet_matches_the_reference_prototxt():
    """alexgkendall/SegNet-Tutorial segnet_train.prototxt: conv5_3_D .. conv1_2_D, then a 3x3 score conv."""
    with torch.device("meta"):
        model = segnet.SegNet(11, 1.0)
    assert _out_channels(model.encoder) == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    decoder = [c for d in model.decoders for c in _out_channels(d)]
    assert decoder == [512, 512, 512, 512, 512, 256, 256, 256, 128, 128, 64, 64]
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())  # convolutions, not deconvolutions
    assert model.classifier.kernel_size == (3, 3) and model.classifier.padding == (1, 1)
    assert model.classifier.out_channels == 11


def full_params(name: str) -> int:
    with torch.device("meta"):
        model = _REGISTRY[name].factory(21, 1.0)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, paper", [("deconvnet", 252_000_000), ("segnet", 29_500_000)])
def test_parameter_count_matches_the_paper(name, paper):
    """ARCHITECTURES.md's figures (DeconvNet ~252M, SegNet 29.5M), within 2 %; the notes state the exact count."""
    spec = _REGISTRY[name]
    count = full_params(name)
    assert spec.paper_params == paper
    assert abs(count - paper) / paper <= 0.02
    assert any(f"{count:,} parameters" in note for note in spec.notes)


@pytest.mark.parametrize("name, size, arxiv", [("deconvnet", (224, 224), "1505.04366"),
                                               ("segnet", (360, 480), "1511.00561")])
def test_spec_fields(name, size, arxiv):
    spec = _REGISTRY[name]
    assert spec.default_input_size == size and spec.output_stride == 32 and spec.num_classes == 21
    assert arxiv in spec.paper
    m = spec.min_size
    assert spec.default_input_size[0] >= m and spec.default_input_size[1] >= m


def test_factories_reject_unknown_arguments():
    """model_args reach the factory; a typo must fail (the loader turns TypeError into a user error)."""
    with pytest.raises(TypeError):
        _REGISTRY["segnet"].factory(num_classes=3, width=TINY_WIDTH, widht=2)


def test_segnet_exports_to_onnx_with_dynamic_height_and_width(tmp_path):
    """Native export (no masked rewrite): torch's exporter lowers MaxUnpool to ScatterND, which
    ONNX Runtime runs at every size; TensorRT needs the exporter's masked rewrite instead."""
    import onnxruntime as ort
    from torch.export import Dim

    model = tiny("segnet")
    dims = {2: Dim("h", min=1, max=2048), 3: Dim("w", min=1, max=2048)}
    program = torch.onnx.export(model, (torch.randn(1, 3, 64, 77),), dynamo=True, dynamic_shapes={"x": dims},
                                optimize=False, verbose=False)
    program.save(str(tmp_path / "segnet.onnx"))
    session = ort.InferenceSession(str(tmp_path / "segnet.onnx"), providers=["CPUExecutionProvider"])
    for size in [(1, 1), (33, 47)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            ref = model(x).numpy()
        (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        assert out.shape == ref.shape and abs(out - ref).max() <= 1e-4 * max(1.0, abs(ref).max())
