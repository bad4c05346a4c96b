"""FCN-32s/16s/8s against the Caffe reference: any input size, exact crop alignment, bilinear
upsamplers, parameter counts. Forward passes at 1/16 width; shape sweeps and full-width counts on
the meta device, so nothing large is ever allocated."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segexport.models import fcn
from segexport.models.registry import _REGISTRY
from tests.conftest import TINY_WIDTH

NAMES = {"fcn32s": 32, "fcn16s": 16, "fcn8s": 8}
# The crop offsets of shelhamer/fcn.berkeleyvision.org's voc-fcn*s nets (Caffe ``Crop`` layers).
CAFFE_OFFSETS = {32: {"out": 19}, 16: {"pool4": 5, "out": 27}, 8: {"pool4": 5, "pool3": 9, "out": 31}}


def tiny(stride: int, num_classes: int = 3, **kwargs) -> fcn.FCN:
    torch.manual_seed(0)
    return fcn.FCN(num_classes, TINY_WIDTH, stride, **kwargs).eval()


@pytest.mark.parametrize("name", NAMES)
def test_output_is_input_sized_for_odd_and_tiny_inputs(name):
    model = tiny(NAMES[name], num_classes=5)
    for h, w in [(_REGISTRY[name].min_size,) * 2, (225, 301), (64, 97)]:
        with torch.no_grad():
            out = model(torch.randn(2, 3, h, w))
        assert out.shape == (2, 5, h, w)
        assert torch.isfinite(out).all() and out.abs().max() > 0  # He-initialised scores: not all zero


@pytest.mark.parametrize("stride", [32, 16, 8])
def test_every_size_from_min_size_up_keeps_its_shape(stride):
    """A crop window running past the upsampled map would silently shorten the output: sweep every
    size (shapes only, on the meta device)."""
    with torch.device("meta"):
        model = fcn.FCN(3, TINY_WIDTH, stride).eval()
    wrong = []
    for h in range(1, 600):
        w = h + 13
        out = model(torch.empty(1, 3, h, w, device="meta"))
        if tuple(out.shape[-2:]) != (h, w):
            wrong.append((h, w, tuple(out.shape[-2:])))
    assert not wrong, wrong[:5]


def test_min_size_is_one():
    """min_size 1 is the true bound: 1x1 works (above); 0 is no image at all."""
    assert all(_REGISTRY[n].min_size == 1 for n in NAMES)


def _map(a: float, b: float, module: nn.Module) -> tuple[float, float]:
    """Compose the input coordinate ``a*i + b`` of feature index ``i`` with one layer."""
    k, s, p = (module.kernel_size, module.stride, module.padding)
    k, s, p = (v[0] if isinstance(v, tuple) else v for v in (k, s, p))
    if isinstance(module, nn.ConvTranspose2d):  # output o <- input (o + p - (k-1)/2) / s
        return a / s, b - a * ((k - 1) / 2 - p) / s
    return a * s, b + a * ((k - 1) / 2 - p)


@pytest.mark.parametrize("stride", [32, 16, 8])
def test_crop_offsets_align_output_pixels_with_input_pixels(stride):
    """Walk the built modules' kernels/strides/paddings (Caffe's coord_map): each crop must put
    output pixel j on input pixel j, and the offsets must be the reference's."""
    model = tiny(stride)
    a, b, at_pool = 1.0, 0.0, {}
    for n, stage in enumerate(model.features.stages, start=1):
        for m in stage.modules():
            if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
                a, b = _map(a, b, m)
        at_pool[n] = (a, b)
    for m in (model.fc6[0], model.fc7[0], model.score_fr):
        a, b = _map(a, b, m)

    def crop_onto(src: tuple[float, float], ref: tuple[float, float]) -> float:
        """Offset c such that src[o + c] sits where ref[o] does."""
        assert src[0] == ref[0], "the skip and the upsampled map must have the same stride"
        return (ref[1] - src[1]) / src[0]

    derived = {}
    if stride == 32:
        a, b = _map(a, b, model.upscore)
    else:
        a, b = _map(a, b, model.upscore2)
        derived["pool4"] = crop_onto(_map(*at_pool[4], model.score_pool4), (a, b))
        if stride == 16:
            a, b = _map(a, b, model.upscore16)
        else:
            a, b = _map(a, b, model.upscore_pool4)
            derived["pool3"] = crop_onto(_map(*at_pool[3], model.score_pool3), (a, b))
            a, b = _map(a, b, model.upscore8)
    derived["out"] = crop_onto((a, b), (1.0, 0.0))
    assert derived == CAFFE_OFFSETS[stride]
    used = {"out": fcn.CROP_OUT[stride], "pool4": fcn.CROP_POOL4, "pool3": fcn.CROP_POOL3}
    assert {k: used[k] for k in derived} == derived


def _delta(model: fcn.FCN) -> None:
    """Every convolution copies channel 0 through its centre tap: the net becomes max pools and upsamplers."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.zero_()
                m.weight[:, 0, m.kernel_size[0] // 2, m.kernel_size[1] // 2] = 1
                m.bias.zero_()


@pytest.mark.parametrize("stride, path", [(32, "fr"), (16, "pool4"), (8, "pool4"), (8, "pool3")])
def test_impulse_response_is_centred_on_its_pooling_block(stride, path):
    """A single bright pixel survives the max pools in the block that holds it; through the
    bilinear upsamplers the cropped output must be symmetric about that block's centre. A crop
    off by one pixel breaks the symmetry."""
    model = tiny(stride, num_classes=1)
    _delta(model)
    with torch.no_grad():  # keep only the path under test
        for other in {"fr": (), "pool4": ("score_fr", "score_pool3"), "pool3": ("score_fr", "score_pool4")}[path]:
            if hasattr(model, other):
                getattr(model, other).weight.zero_()
    block = {"fr": 32, "pool4": 16, "pool3": 8}[path]
    size, spot = 130, 61
    x = torch.zeros(1, 3, size, size)
    x[0, 0, spot, spot] = 1.0
    with torch.no_grad():
        profile = model(x)[0, 0, :, spot]
    # conv1_1's centre tap reads input i at padded index i + pad - 1: the block index counts from there.
    first = (spot + fcn.CONV1_PAD - 1) // block * block - (fcn.CONV1_PAD - 1)
    lo, hi = first + block // 2 - 1, first + block // 2  # the two pixels either side of the centre
    assert profile.max() > 0 and profile[lo] == pytest.approx(float(profile.max()))  # the peak (or plateau) is there
    for k in range(block):
        assert profile[lo - k] == pytest.approx(float(profile[hi + k]), abs=1e-6), k


@pytest.mark.parametrize("stride, layers", [(32, {"upscore": 64}), (16, {"upscore2": 4, "upscore16": 32}),
                                            (8, {"upscore2": 4, "upscore_pool4": 4, "upscore8": 16})])
def test_upsamplers_are_bilinear_without_bias(stride, layers):
    model = tiny(stride, num_classes=2)
    ups = {n: m for n, m in model.named_children() if isinstance(m, nn.ConvTranspose2d)}
    assert {n: m.kernel_size[0] for n, m in ups.items()} == layers
    for name, up in ups.items():
        assert up.bias is None and up.stride[0] == up.kernel_size[0] // 2
        # Bilinear interpolation reproduces a linear ramp exactly (away from the borders) and
        # never mixes channels: checked on behaviour, not against layers.bilinear_kernel.
        f = up.stride[0]
        ramp = torch.arange(12, dtype=torch.float32).repeat(12, 1)  # value = column index
        x = torch.stack([ramp, 3 * ramp.T])[None]
        with torch.no_grad():
            y = up(x)[0]
        inner = y[:, 2 * f:-2 * f, 2 * f:-2 * f]
        step = inner[0, 0, 1:] - inner[0, 0, :-1]
        assert torch.allclose(step, torch.full_like(step, 1 / f), atol=1e-5), name
        assert torch.allclose(inner[0, 1:] - inner[0, :-1], torch.zeros(1), atol=1e-5)  # ch0 has no row trend
        assert torch.allclose(inner[1, 1:, 0] - inner[1, :-1, 0], torch.full((inner.shape[1] - 1,), 3 / f), atol=1e-5)


def test_final_upsampler_fixed_and_skips_learned():
    """Paper sec. 4.2 / the reference's lr_mult 0: the last deconvolution stays bilinear."""
    model = tiny(8)
    assert not model.upscore8.weight.requires_grad
    assert model.upscore2.weight.requires_grad and model.upscore_pool4.weight.requires_grad
    assert not tiny(32).upscore.weight.requires_grad and not tiny(16).upscore16.weight.requires_grad


def test_reference_details():
    model = tiny(8)
    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    pools = [m for m in model.features.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(convs) == 13 and convs[0].padding == (100, 100) and all(c.padding == (1, 1) for c in convs[1:])
    assert len(pools) == 5 and all(p.kernel_size == 2 and p.stride == 2 and p.ceil_mode for p in pools)
    assert model.fc6[0].kernel_size == (7, 7) and model.fc6[0].padding == (0, 0)
    assert model.fc7[0].kernel_size == (1, 1) and model.score_fr.kernel_size == (1, 1)
    assert type(model.drop6) is nn.Dropout and type(model.drop7) is nn.Dropout  # Caffe drops elements
    with torch.device("meta"):
        full = fcn.FCN(21, 1.0, 8)
    assert full.fc6[0].out_channels == full.fc7[0].out_channels == 4096
    assert full.score_pool4.in_channels == 512 and full.score_pool3.in_channels == 256


def test_zero_init_scores_gives_the_reference_start():
    model = tiny(8, zero_init_scores=True)
    with torch.no_grad():
        assert torch.count_nonzero(model(torch.randn(1, 3, 40, 50))) == 0


def full_params(name: str) -> int:
    with torch.device("meta"):
        model = _REGISTRY[name].factory(21, 1.0)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_documented_parameter_count(name):
    """The count in the spec's notes is the built model's (the paper gives none per variant)."""
    spec = _REGISTRY[name]
    assert spec.paper_params is None
    assert any(f"{full_params(name):,} parameters" in note for note in spec.notes)


def test_fcn8s_matches_the_paper_134m():
    """FCN paper, Table 1: FCN-VGG16 has 134M parameters."""
    assert abs(full_params("fcn8s") - 134_000_000) / 134_000_000 <= 0.02


@pytest.mark.parametrize("name", NAMES)
def test_spec_fields(name):
    spec = _REGISTRY[name]
    assert spec.family == "fcn" and spec.output_stride == NAMES[name]
    assert spec.default_input_size == (500, 500) and spec.num_classes == 21
    assert "Long" in spec.paper and "2015" in spec.paper and "1411.4038" in spec.paper


def test_exports_to_onnx_with_dynamic_height_and_width(tmp_path):
    """No Python branching on shapes: one ONNX graph (torch.onnx.export, dynamo) serves every size
    from min_size up, odd ones included, and matches eager PyTorch."""
    import onnxruntime as ort
    from torch.export import Dim

    model = tiny(8)
    dims = {2: Dim("h", min=1, max=2048), 3: Dim("w", min=1, max=2048)}
    program = torch.onnx.export(model, (torch.randn(1, 3, 65, 77),), dynamo=True, dynamic_shapes={"x": dims},
                                optimize=False, verbose=False)
    program.save(str(tmp_path / "fcn8s.onnx"))
    session = ort.InferenceSession(str(tmp_path / "fcn8s.onnx"), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    assert not isinstance(shape[2], int) and not isinstance(shape[3], int)  # H, W symbolic
    for size in [(1, 1), (8, 5), (225, 301)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            ref = model(x).numpy()
        (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        assert out.shape == ref.shape and abs(out - ref).max() <= 1e-4 * max(1.0, abs(ref).max())
