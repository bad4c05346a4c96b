"""DeepLab-LargeFOV and DilatedNet against their papers and their released Caffe models:
Caffe's pooled-size arithmetic, the dilations, the upsampling conventions, parameter counts
(on the meta device, nothing allocated) and the context module's identity initialisation.
Forward passes run the real architectures at small widths."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segexport.models import deeplab, dilatednet  # noqa: F401  (the families under test)
from segexport.models.layers import bilinear_kernel
from segexport.models.registry import build_model, get_spec
from tests.conftest import TINY_WIDTH

MODELS = ["deeplabv1", "dilatednet", "dilatednet-context"]
VGG16 = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
         (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]


def meta_model(name: str) -> nn.Module:
    with torch.device("meta"):
        return get_spec(name).factory(num_classes=21, width=1.0)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def caffe_pool(size: int, kernel: int, stride: int, pad: int) -> int:
    """Caffe's PoolingLayer::Reshape: round up, then drop a window starting in the padding."""
    out = math.ceil((size + 2 * pad - kernel) / stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def scores_of(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's output and the score map ``layer`` produced on the way (before upsampling)."""
    seen = []
    hook = layer.register_forward_hook(lambda _m, _i, o: seen.append(o))
    with torch.no_grad():
        out = model(x)
    hook.remove()
    return out, seen[-1]


@pytest.mark.parametrize("name", MODELS)
def test_output_has_input_size(name):
    model = build_model(name, num_classes=5, width=TINY_WIDTH)
    for h, w in [(get_spec(name).min_size,) * 2, (40, 64), (225, 301)]:
        with torch.no_grad():
            out = model(torch.randn(1, 3, h, w))
        assert out.shape == (1, 5, h, w), (h, w)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [1, 7, 320, 321, 513])
def test_deeplab_score_grid_is_caffes(size):
    """pool1-3 (3x3, stride 2, pad 1) give Caffe's sizes: 321 -> 41 and 320 -> 41 (floor mode: 40)."""
    expected = size
    for _ in range(3):
        expected = caffe_pool(expected, 3, 2, 1)
    model = build_model("deeplabv1", num_classes=2, width=1 / 32)
    _, scores = scores_of(model, model.fc8, torch.randn(1, 3, size, 9))
    assert scores.shape[-2] == expected
    assert get_spec("deeplabv1").min_size == 1


@pytest.mark.parametrize("size", [1, 7, 64, 65])
def test_dilatednet_score_grid_is_caffes(size):
    """Three 2x2 stride-2 Caffe pools round up: ceil(H/8); pool4 and pool5 are gone."""
    model = build_model("dilatednet", num_classes=2, width=1 / 32)
    _, scores = scores_of(model, model.final, torch.randn(1, 3, size, 9))
    assert scores.shape[-2] == caffe_pool(caffe_pool(caffe_pool(size, 2, 2, 0), 2, 2, 0), 2, 2, 0)


def test_deeplab_largefov_structure():
    model = meta_model("deeplabv1")
    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == VGG16
    assert [c.dilation[0] for c in convs] == [1] * 10 + [2] * 3 and convs[-1].padding == (2, 2)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride, p.padding) for p in pools] == [(3, 2, 1)] * 3 + [(3, 1, 1)] * 2
    assert isinstance(model.pool5a, nn.AvgPool2d) and model.pool5a.count_include_pad  # Caffe AVE
    assert (model.pool5a.kernel_size, model.pool5a.stride, model.pool5a.padding) == (3, 1, 1)
    fc6, fc7 = model.fc6[0], model.fc7[0]
    assert (fc6.kernel_size, fc6.dilation, fc6.padding, fc6.out_channels) == ((3, 3), (12, 12), (12, 12), 1024)
    assert (fc7.kernel_size, fc7.out_channels) == ((1, 1), 1024)
    assert model.fc8.kernel_size == (1, 1) and model.fc8.out_channels == 21
    assert type(model.drop6) is nn.Dropout and model.drop6.p == 0.5  # Caffe's element-wise dropout
    assert get_spec("deeplabv1").output_stride == 8


def test_deeplab_parameter_count_within_two_percent_of_paper():
    assert abs(n_params(meta_model("deeplabv1")) - 20_500_000) / 20_500_000 <= 0.02


def test_deeplab_upsamples_corner_to_corner():
    """Caffe's Interp (align_corners=True): the output corners are the score-map corners, and at
    321 px (41 scores) every 8th output pixel is a score exactly."""
    model = build_model("deeplabv1", num_classes=3, width=1 / 32)
    out, scores = scores_of(model, model.fc8, torch.randn(1, 3, 321, 57))
    assert scores.shape[-2:] == (41, 8)
    torch.testing.assert_close(out[..., ::8, 0], scores[..., :, 0])
    for i, j in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        torch.testing.assert_close(out[..., i, j], scores[..., i, j])


def test_dilatednet_front_end_structure():
    model = meta_model("dilatednet")
    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == VGG16
    assert [c.dilation[0] for c in convs] == [1] * 10 + [2] * 3
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(2, 2)] * 3  # pool4 and pool5 removed
    fc6, fc7 = model.fc6[0], model.fc7[0]
    assert (fc6.kernel_size, fc6.dilation, fc6.padding, fc6.out_channels) == ((7, 7), (4, 4), (12, 12), 4096)
    assert (fc7.kernel_size, fc7.out_channels) == ((1, 1), 4096)
    assert model.final.kernel_size == (1, 1) and model.context is None
    assert get_spec("dilatednet").output_stride == 8


def test_dilatednet_parameter_count_is_stated():
    """The paper gives none; the count in the notes must be the real one, derived here by hand."""
    vgg = sum(i * o * 9 + o for i, o in VGG16)
    front = vgg + (512 * 49 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 21 + 21)
    context = 7 * (21 * 21 * 9 + 21) + (21 * 21 + 21)
    assert n_params(meta_model("dilatednet")) == front
    assert n_params(meta_model("dilatednet-context")) == front + context
    assert get_spec("dilatednet").paper_params is None
    assert any(f"{front / 1e6:.2f}M" in n for n in get_spec("dilatednet").notes)
    assert any(f"{(front + context) / 1e6:.2f}M" in n for n in get_spec("dilatednet-context").notes)


def test_dilatednet_upsampling_matches_the_caffe_bilinear_deconvolution_inside():
    """The released model upsamples with a fixed bilinear deconvolution (k16, s8, p4); the resize
    must agree with it everywhere but the 4 px border the deconvolution zero-pads."""
    model = build_model("dilatednet", num_classes=3, width=1 / 32)
    out, scores = scores_of(model, model.final, torch.randn(1, 3, 64, 88))
    deconv = F.conv_transpose2d(scores, bilinear_kernel(3, 16), stride=8, padding=4)
    assert deconv.shape == out.shape
    torch.testing.assert_close(out[..., 4:-4, 4:-4], deconv[..., 4:-4, 4:-4], atol=1e-5, rtol=1e-4)


def test_context_module_is_table_1_basic():
    model = build_model("dilatednet-context", num_classes=6, width=TINY_WIDTH)
    convs = [blk[0] for blk in model.context.layers]
    assert [c.dilation[0] for c in convs] == [1, 1, 2, 4, 8, 16, 1]
    assert all(c.kernel_size == (3, 3) and c.in_channels == c.out_channels == 6 for c in convs)
    assert all(isinstance(blk[1], nn.ReLU) for blk in model.context.layers)
    assert model.context.final.kernel_size == (1, 1) and model.context.final.out_channels == 6


def test_context_module_identity_init():
    """Sec. 3: each layer passes its input through, so non-negative scores come out unchanged;
    negative ones are cut by the ReLUs, which shows the check can fail."""
    model = build_model("dilatednet-context", num_classes=6, width=TINY_WIDTH)
    x = torch.rand(2, 6, 17, 23)
    with torch.no_grad():
        assert torch.equal(model.context(x), x)
        assert not torch.equal(model.context(x - 0.5), x - 0.5)
    # Untrained, the full model therefore equals the front-end on non-negative scores.
    front = build_model("dilatednet", num_classes=6, width=TINY_WIDTH)
    front.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("context.")})
    with torch.no_grad():
        front.final.bias.fill_(100.0)  # push the scores positive
        model.final.bias.fill_(100.0)
        x = torch.randn(1, 3, 40, 48)
        torch.testing.assert_close(model(x), front(x))


def test_context_module_receptive_field_is_67():
    """Table 1: the basic module's receptive field grows to 67x67 (dilations 1,1,2,4,8,16,1)."""
    model = build_model("dilatednet-context", num_classes=1, width=TINY_WIDTH)
    with torch.no_grad():
        for conv in model.context.modules():
            if isinstance(conv, nn.Conv2d):
                conv.weight.fill_(1.0)
        impulse = torch.zeros(1, 1, 101, 101)
        impulse[..., 50, 50] = 1.0
        support = model.context(impulse)[0, 0] > 0
    rows = support.any(dim=1).nonzero()
    assert rows.max() - rows.min() + 1 == 67


def test_shared_vgg_trunk():
    """DeepLab and DilatedNet build their VGG16 from the one helper, differing only in pools."""
    a, b = meta_model("deeplabv1"), meta_model("dilatednet")
    shapes = lambda m: [p.shape for n, p in m.features.named_parameters()]  # noqa: E731
    assert shapes(a) == shapes(b)
    assert dilatednet.vgg_trunk is deeplab.vgg_trunk
