"""Small random-init networks written the way torchvision, segmentation_models_pytorch,
Hugging Face and MONAI write theirs: the output containers and upsampling idioms real
users bring to ``segexport onnx``, at tiny widths so a test exports each in seconds.

They are look-alikes, not copies: each reproduces the *export-relevant* shape of its
library (what forward returns, how it upsamples, how it pools), which is what broke.

- torchvision DeepLabV3/FCN: ``{"out": ..., "aux": ...}`` (an OrderedDict), heads
  upsampled with ``F.interpolate(size=input, mode="bilinear", align_corners=False)``,
  ASPP image pooling by ``AdaptiveAvgPool2d(1)``.
- smp Unet / FPN / PSPNet / DeepLabV3+: decoders upsample with
  ``F.interpolate(scale_factor=2, mode="nearest")`` / ``nn.UpsamplingBilinear2d`` /
  ``nn.Upsample(scale_factor=4, mode="bilinear")``; PSP pooling by AdaptiveAvgPool then
  ``F.interpolate(size=..)``; SE-style ``x.mean((2, 3), keepdim=True)``; and smp's own
  "divisible by output stride" input check.
- Hugging Face Segformer: an output object with ``.logits`` at 1/4 of the input size
  (a ``ModelOutput`` is an OrderedDict subclass with attribute access).
- Hugging Face UperNet: a pyramid pooling module (``AdaptiveAvgPool2d`` 1, 2, 3, 6) whose
  blocks keep their layers in a plain Python list as well as registering them, logits resized
  to the input inside the model.
- MONAI BasicUNet / SegResNet: ``nn.Upsample(scale_factor=2, mode="nearest")`` and
  ``"bilinear"``, odd input sizes handled by replicate-padding the upsampled map.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def _cbr(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Encoder(nn.Module):
    """A five-stage stride-2 encoder (a ResNet's features() at 1/16 width)."""

    def __init__(self, depth: int = 5, ch: int = 4) -> None:
        super().__init__()
        self.channels = [3] + [ch * 2 ** min(i, 3) for i in range(depth)]
        self.stages = nn.ModuleList(_cbr(self.channels[i], self.channels[i + 1], stride=2) for i in range(depth))

    def forward(self, x):
        feats = [x]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        return feats


# ---------------------------------------------------------------- torchvision


class _ASPPPooling(nn.Sequential):
    def forward(self, x):
        size = x.shape[-2:]
        for mod in self:
            x = mod(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class _TVDeepLabV3(nn.Module):
    """torchvision ``deeplabv3_*``: returns ``OrderedDict(out=..., aux=...)``."""

    def __init__(self, num_classes: int = 21, aux: bool = True) -> None:
        super().__init__()
        self.backbone = _Encoder(depth=3)
        c = self.backbone.channels[-1]
        self.aspp = nn.ModuleList([_cbr(c, 8), _cbr(c, 8, dilation=2),
                                   _ASPPPooling(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, 8, 1), nn.ReLU())])
        self.classifier = nn.Sequential(_cbr(24, 8), nn.Conv2d(8, num_classes, 1))
        self.aux_classifier = nn.Conv2d(self.backbone.channels[-2], num_classes, 1) if aux else None

    def forward(self, x):
        size = x.shape[-2:]
        feats = self.backbone(x)
        y = torch.cat([m(feats[-1]) for m in self.aspp], dim=1)
        result = OrderedDict()
        result["out"] = F.interpolate(self.classifier(y), size=size, mode="bilinear", align_corners=False)
        if self.aux_classifier is not None:
            result["aux"] = F.interpolate(self.aux_classifier(feats[-2]), size=size, mode="bilinear", align_corners=False)
        return result


def tv_deeplabv3(num_classes: int = 21, aux_loss: bool = True) -> nn.Module:
    return _TVDeepLabV3(num_classes, aux_loss)


class _TVFCN(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.backbone = _Encoder(depth=3)
        self.classifier = nn.Sequential(_cbr(self.backbone.channels[-1], 8), nn.Dropout(0.1), nn.Conv2d(8, num_classes, 1))

    def forward(self, x):
        out = self.classifier(self.backbone(x)[-1])
        return {"out": F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def tv_fcn(num_classes: int = 21) -> nn.Module:
    return _TVFCN(num_classes)


# ---------------------------------------------------------------- segmentation_models_pytorch


class _SmpBase(nn.Module):
    """smp's SegmentationModel: refuses sizes not divisible by the encoder's output stride."""

    output_stride = 32

    def check_input_shape(self, x):
        h, w = x.shape[-2:]
        s = self.output_stride
        if h % s or w % s:
            nh, nw = (h // s + 1) * s if h % s else h, (w // s + 1) * s if w % s else w
            raise RuntimeError(f"Wrong input shape height={h}, width={w}. Expected image height and width "
                               f"divisible by {s}. Consider pad your images to shape ({nh}, {nw}).")


class _SCSE(nn.Module):
    """smp's scSE attention: a ReduceMean over H, W (``x.mean((2, 3), keepdim=True)``)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))


class _SmpUnet(_SmpBase):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.encoder = _Encoder()
        ch = self.encoder.channels
        self.blocks = nn.ModuleList()
        cin = ch[-1]
        for skip in reversed(ch[1:-1]):
            self.blocks.append(nn.Sequential(_cbr(cin + skip, skip), _SCSE(skip)))
            cin = skip
        self.last = _cbr(cin, 4)
        self.head = nn.Conv2d(4, classes, 3, padding=1)

    def forward(self, x):
        self.check_input_shape(x)
        feats = self.encoder(x)
        y = feats[-1]
        for block, skip in zip(self.blocks, reversed(feats[1:-1])):
            y = F.interpolate(y, scale_factor=2, mode="nearest")
            y = block(torch.cat([y, skip], dim=1))
        y = self.last(F.interpolate(y, scale_factor=2, mode="nearest"))
        return self.head(y)


def smp_unet(classes: int = 1) -> nn.Module:
    """smp names it ``classes`` (default 1); segexport passes ``num_classes`` only when accepted."""
    return _SmpUnet(classes)


class _SmpFPN(_SmpBase):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.encoder = _Encoder()
        ch = self.encoder.channels
        self.lateral = nn.ModuleList(nn.Conv2d(c, 8, 1) for c in ch[2:])
        self.seg = nn.ModuleList(_cbr(8, 8) for _ in ch[2:])
        self.head = nn.Conv2d(8, num_classes, 1)
        self.up = nn.UpsamplingBilinear2d(scale_factor=4)  # align_corners=True, as smp's head

    def forward(self, x):
        self.check_input_shape(x)
        feats = self.encoder(x)[2:]
        p = self.lateral[-1](feats[-1])
        pyramid = [p]
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            p = F.interpolate(p, scale_factor=2.0, mode="nearest") + lat(f)
            pyramid.append(p)
        merged = 0
        for i, (seg, p) in enumerate(zip(self.seg, reversed(pyramid))):
            y = seg(p)
            if i:
                y = F.interpolate(y, scale_factor=2 ** i, mode="bilinear", align_corners=True)
            merged = merged + y
        return self.up(self.head(merged))


def smp_fpn(num_classes: int = 3) -> nn.Module:
    return _SmpFPN(num_classes)


class _SmpPSPNet(_SmpBase):
    output_stride = 8

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.encoder = _Encoder(depth=3)
        c = self.encoder.channels[-1]
        self.pools = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(s), nn.Conv2d(c, 4, 1)) for s in (1, 2))
        self.head = nn.Conv2d(c + 8, num_classes, 3, padding=1)
        self.up = nn.Upsample(scale_factor=8, mode="bilinear")

    def forward(self, x):
        self.check_input_shape(x)
        f = self.encoder(x)[-1]
        h, w = f.shape[-2:]
        pooled = [F.interpolate(p(f), size=(h, w), mode="bilinear", align_corners=True) for p in self.pools]
        return self.up(self.head(torch.cat([f, *pooled], dim=1)))


def smp_pspnet(num_classes: int = 2) -> nn.Module:
    return _SmpPSPNet(num_classes)


class _SmpDeepLabV3Plus(_SmpBase):
    output_stride = 16

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.encoder = _Encoder(depth=4)
        ch = self.encoder.channels
        self.aspp = nn.ModuleList([_cbr(ch[-1], 8), _cbr(ch[-1], 8, dilation=2),
                                   nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(ch[-1], 8, 1))])
        self.project = _cbr(24, 8)
        self.skip = _cbr(ch[2], 8)
        self.fuse = _cbr(16, 8)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        self.check_input_shape(x)
        feats = self.encoder(x)
        top = feats[-1]
        pooled = self.aspp[2](top).expand(-1, -1, *top.shape[-2:])  # smp's ASPPPooling: size-free expand
        y = self.project(torch.cat([self.aspp[0](top), self.aspp[1](top), pooled], 1))
        y = F.interpolate(y, scale_factor=4, mode="bilinear", align_corners=True)
        y = self.fuse(torch.cat([y, self.skip(feats[2])], 1))
        return F.interpolate(self.head(y), scale_factor=4, mode="bilinear", align_corners=True)


def smp_deeplabv3plus(num_classes: int = 4) -> nn.Module:
    return _SmpDeepLabV3Plus(num_classes)


# ---------------------------------------------------------------- Hugging Face


@dataclass
class _Output:
    """Stands in for ``transformers.modeling_outputs.SemanticSegmenterOutput``: attribute access
    and (as ``ModelOutput`` is an OrderedDict) key access."""

    logits: torch.Tensor
    hidden_states: tuple | None = None


class _Segformer(nn.Module):
    """Overlapping patch embeddings (stride 4, then 2, 2), an all-MLP decoder that resizes every
    stage to 1/4 with bilinear ``size=``, logits left at 1/4 as Hugging Face does."""

    def __init__(self, num_labels: int) -> None:
        super().__init__()
        self.embeds = nn.ModuleList([nn.Conv2d(3, 8, 7, 4, 3), nn.Conv2d(8, 8, 3, 2, 1), nn.Conv2d(8, 16, 3, 2, 1)])
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in (8, 8, 16))
        self.mlps = nn.ModuleList(nn.Linear(c, 8) for c in (8, 8, 16))
        self.fuse = nn.Sequential(nn.Conv2d(24, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.classifier = nn.Conv2d(8, num_labels, 1)

    def forward(self, pixel_values, return_dict: bool = True):
        x, stages = pixel_values, []
        for embed, norm in zip(self.embeds, self.norms):
            x = embed(x)
            n, c, h, w = x.shape
            x = norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(n, c, h, w)
            stages.append(x)
        size = stages[0].shape[-2:]
        decoded = []
        for mlp, s in zip(self.mlps, stages):
            n, c, h, w = s.shape
            y = mlp(s.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(n, -1, h, w)
            decoded.append(F.interpolate(y, size=size, mode="bilinear", align_corners=False))
        logits = self.classifier(self.fuse(torch.cat(decoded[::-1], dim=1)))
        return _Output(logits=logits) if return_dict else (logits,)


def hf_segformer(num_labels: int = 150) -> nn.Module:
    """Hugging Face builds from a config; the class count is ``num_labels``."""
    return _Segformer(num_labels)


def hf_segformer_dict(num_classes: int = 5) -> nn.Module:
    """The same network returning a real OrderedDict subclass, as ``ModelOutput`` is."""

    class _ModelOutput(OrderedDict):
        def __getattr__(self, name):
            try:
                return self[name]
            except KeyError:
                raise AttributeError(name) from None

    class _Wrapped(_Segformer):
        def forward(self, pixel_values):
            return _ModelOutput(logits=super().forward(pixel_values).logits)

    return _Wrapped(num_classes)


class _UperNetPoolingBlock(nn.Module):
    """As ``UperNetPyramidPoolingBlock``: layers registered *and* kept in a plain list, which
    forward iterates (so swapping a registered child would not change what runs)."""

    def __init__(self, scale: int, c: int, out: int, pool: type = nn.AdaptiveAvgPool2d) -> None:
        super().__init__()
        self.layers = [pool(scale), nn.Conv2d(c, out, 1), nn.ReLU()]
        for i, layer in enumerate(self.layers):
            self.add_module(str(i), layer)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class _UperNet(nn.Module):
    """A stride-16 backbone, a PPM of scales (1, 2, 3, 6) (plus one adaptive *max* pooling branch,
    as some PSP variants use), an FPN-style fuse, logits bilinearly resized to the input."""

    def __init__(self, num_labels: int) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, 4, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU())
        self.ppm = nn.ModuleList([_UperNetPoolingBlock(s, 16, 4) for s in (1, 2, 3, 6)]
                                 + [_UperNetPoolingBlock(2, 16, 4, nn.AdaptiveMaxPool2d)])
        self.bottleneck = nn.Conv2d(16 + 5 * 4, 8, 3, padding=1)
        self.classifier = nn.Conv2d(8, num_labels, 1)

    def forward(self, pixel_values):
        f = self.backbone(pixel_values)
        pooled = [F.interpolate(p(f), size=f.shape[2:], mode="bilinear", align_corners=False) for p in self.ppm]
        logits = self.classifier(self.bottleneck(torch.cat([f, *pooled], dim=1)))
        logits = F.interpolate(logits, size=pixel_values.shape[2:], mode="bilinear", align_corners=False)
        return _Output(logits=logits)


def hf_upernet(num_labels: int = 4) -> nn.Module:
    return _UperNet(num_labels)


# ---------------------------------------------------------------- MONAI


class _UpCat(nn.Module):
    """MONAI's UpCat: upsample x2, replicate-pad by one where the skip is one larger (odd sizes)."""

    def __init__(self, cin: int, cskip: int, cout: int, mode: str) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode=mode)
        self.conv = _cbr(cin + cskip, cout)

    def forward(self, x, skip):
        x = self.up(x)
        pad = [0, skip.shape[-1] - x.shape[-1], 0, skip.shape[-2] - x.shape[-2]]
        if any(pad):
            x = F.pad(x, pad, "replicate")
        return self.conv(torch.cat([skip, x], dim=1))


class _BasicUNet(nn.Module):
    def __init__(self, out_channels: int, mode: str) -> None:
        super().__init__()
        self.conv_0 = _cbr(3, 4)
        self.downs = nn.ModuleList([nn.Sequential(nn.MaxPool2d(2), _cbr(4, 8)), nn.Sequential(nn.MaxPool2d(2), _cbr(8, 8))])
        self.ups = nn.ModuleList([_UpCat(8, 8, 8, mode), _UpCat(8, 4, 4, mode)])
        self.final = nn.Conv2d(4, out_channels, 1)

    def forward(self, x):
        feats = [self.conv_0(x)]
        for d in self.downs:
            feats.append(d(feats[-1]))
        y = feats[-1]
        for up, skip in zip(self.ups, reversed(feats[:-1])):
            y = up(y, skip)
        return self.final(y)


def monai_basicunet(out_channels: int = 2, upsample: str = "nearest") -> nn.Module:
    """MONAI names the class count ``out_channels``: pass it with --model-arg out_channels=N."""
    return _BasicUNet(out_channels, upsample)


class _SegResNet(nn.Module):
    """MONAI SegResNet: GroupNorm residual blocks, ``nn.Upsample(scale_factor=2, mode="bilinear")``
    (``upsample_mode="nontrainable"``), additive skips."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.down = nn.ModuleList([nn.Conv2d(4, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 2, 1)])
        self.blocks = nn.ModuleList(nn.Sequential(nn.GroupNorm(2, c), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))
                                    for c in (4, 8, 8))
        self.up = nn.ModuleList([nn.Sequential(nn.Conv2d(8, 8, 1), nn.Upsample(scale_factor=2, mode="bilinear")),
                                 nn.Sequential(nn.Conv2d(8, 4, 1), nn.Upsample(scale_factor=2, mode="bilinear"))])
        self.head = nn.Conv2d(4, out_channels, 1)

    def forward(self, x):
        x = self.stem(x)
        skips = []
        for i, block in enumerate(self.blocks):
            x = x + block(x)
            skips.append(x)
            if i < len(self.down):
                x = self.down[i](x)
        for up, skip in zip(self.up, reversed(skips[:-1])):
            x = up(x) + skip
        return self.head(x)


def monai_segresnet(out_channels: int = 3) -> nn.Module:
    return _SegResNet(out_channels)


# ---------------------------------------------------------------- the scale_factor matrix


class ScaleUp(nn.Module):
    """Downsample by ``down`` (strided conv) then ``F.interpolate(scale_factor=...)`` back up,
    then a final ``size=`` resize where a fractional factor cannot land on the input size."""

    def __init__(self, num_classes: int, mode: str, factor: float, recompute: bool | None, down: int) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3, stride=down, padding=1)
        self.head = nn.Conv2d(4, num_classes, 1)
        self.mode, self.factor, self.recompute = mode, factor, recompute

    def forward(self, x):
        y = self.body(x)
        kw = {} if self.mode == "nearest" else {"align_corners": False}
        y = F.interpolate(y, scale_factor=self.factor, mode=self.mode, recompute_scale_factor=self.recompute, **kw)
        if y.shape[-2:] != x.shape[-2:]:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(y)


def scale_up(num_classes: int = 2, mode: str = "bilinear", factor: float = 2.0, recompute: bool | None = None,
             down: int = 2) -> nn.Module:
    """``--model-arg recompute=true|false|none`` arrives as a bool or None."""
    return ScaleUp(num_classes, mode, float(factor), recompute, int(down))


class ScaleMatrix(nn.Module):
    """Every scale_factor idiom in one graph: a branch per (factor, recompute_scale_factor),
    each resized back to the input with ``size=`` and summed, so one export tests them all."""

    FACTORS = (2, 3, 1.5, 0.5)
    RECOMPUTE = (None, True, False)

    def __init__(self, num_classes: int, mode: str) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.head = nn.Conv2d(4, num_classes, 1)
        self.mode = mode

    def forward(self, x):
        y = self.body(x)
        kw = {} if self.mode == "nearest" else {"align_corners": False}
        total = 0
        for factor in self.FACTORS:
            for rec in self.RECOMPUTE:
                z = F.interpolate(y, scale_factor=factor, mode=self.mode, recompute_scale_factor=rec, **kw)
                total = total + F.interpolate(z, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(total)


def scale_matrix(num_classes: int = 2, mode: str = "bilinear") -> nn.Module:
    return ScaleMatrix(num_classes, mode)


# ---------------------------------------------------------------- smp DPT (a timm ViT encoder)


def _resample_abs_pos_embed(posemb: torch.Tensor, new_size, old_size, num_prefix_tokens: int = 1) -> torch.Tensor:
    """timm's ``resample_abs_pos_embed``: the prefix tokens kept, the grid resized bicubic with
    antialiasing, and nothing done at the pretraining grid."""
    if tuple(new_size) == tuple(old_size):
        return posemb
    prefix, grid = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
    dim = posemb.shape[-1]
    grid = grid.reshape(1, old_size[0], old_size[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_size, mode="bicubic", antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat([prefix, grid], dim=1)


class _ViT(nn.Module):
    """timm VisionTransformer with ``dynamic_img_size=True``: patch grid from the input, the
    position embedding (a parameter for a 4x4 grid) resampled to it."""

    def __init__(self, dim: int = 16, patch: int = 8, grid: tuple[int, int] = (4, 4)) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.grid = grid
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid[0] * grid[1], dim))
        self.block = nn.TransformerEncoderLayer(dim, 2, 2 * dim, dropout=0.0, batch_first=True)

    def forward(self, x):
        x = self.patch_embed(x)
        n, c, h, w = x.shape
        x = torch.cat([self.cls_token.expand(n, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = x + _resample_abs_pos_embed(self.pos_embed, (h, w), self.grid)
        x = self.block(x)
        return x[:, 1:].transpose(1, 2).reshape(n, c, h, w)


class _SmpDPT(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.encoder = _ViT()
        self.head = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, classes, 1))

    def forward(self, x):
        y = self.head(self.encoder(x))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def smp_dpt(classes: int = 3) -> nn.Module:
    """segmentation_models_pytorch's DPT: a ViT encoder whose position embedding is resized
    (bicubic, antialiased: no TensorRT Resize) whenever the input is not its pretraining size."""
    torch.manual_seed(0)
    return _SmpDPT(classes).eval()


# ---------------------------------------------------------------- MONAI BasicUNetPlusPlus


class _BasicUNetPlusPlus(nn.Module):
    """MONAI BasicUNetPlusPlus: nested dense skips, and a forward that returns a Python *list*
    of logits (one per deep-supervision level; with ``deep_supervision=False`` a one-element list)."""

    def __init__(self, out_channels: int, deep_supervision: bool) -> None:
        super().__init__()
        self.conv_0_0 = _cbr(3, 4)
        self.conv_1_0 = nn.Sequential(nn.MaxPool2d(2), _cbr(4, 8))
        self.conv_0_1 = _UpCat(8, 4, 4, "nearest")
        self.conv_2_0 = nn.Sequential(nn.MaxPool2d(2), _cbr(8, 8))
        self.conv_1_1 = _UpCat(8, 8, 8, "nearest")
        self.conv_0_2 = _UpCat(8, 8, 4, "nearest")
        self.final_1 = nn.Conv2d(4, out_channels, 1)
        self.final_2 = nn.Conv2d(4, out_channels, 1)
        self.deep_supervision = deep_supervision

    def forward(self, x):
        x00 = self.conv_0_0(x)
        x10 = self.conv_1_0(x00)
        x01 = self.conv_0_1(x10, x00)
        x20 = self.conv_2_0(x10)
        x11 = self.conv_1_1(x20, x10)
        x02 = self.conv_0_2(x11, torch.cat([x00, x01], dim=1))
        if self.deep_supervision:
            return [self.final_1(x01), self.final_2(x02)]
        return [self.final_2(x02)]


def monai_basicunetplusplus(out_channels: int = 2, deep_supervision: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return _BasicUNetPlusPlus(out_channels, deep_supervision).eval()
