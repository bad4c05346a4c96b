"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer, Darrell, CVPR 2015), as in the Caffe reference
(``voc-fcn{32,16,8}s/net.py`` of shelhamer/fcn.berkeleyvision.org).

Faithful details that matter for deployment:

- conv1_1 pads by 100 so that any input size survives the five ceil-mode pools and the
  unpadded 7x7 fc6; the score maps are cropped back with the reference's offsets (19 for
  32s; 5 and 27 for 16s; 5, 9 and 31 for 8s). Those offsets are exact, not approximate: with
  ``a*i + b`` the input coordinate of feature index ``i``, the chain gives pool3 ``8i - 95.5``,
  pool4 ``16i - 91.5``, fc7 ``32i + 12.5`` and each upsampler ``(k - 1) / 2`` of shift, so the
  cropped output pixel ``j`` sits on input pixel ``j`` (tests/models/test_fcn.py checks it both
  by this arithmetic on the built modules and by an impulse response). The crops slice on runtime
  sizes (``layers.crop_to``), so the exported graph handles dynamic H/W.
- Dropout after fc6/fc7 is Caffe's element-wise ``Dropout`` (``nn.Dropout``, not ``Dropout2d``).
- Upsampling is ``ConvTranspose2d`` without bias, initialised to bilinear interpolation. As in
  sec. 4.2 of the paper the *final* upsampler stays fixed (``lr_mult: 0`` in the reference; here
  ``requires_grad=False``) while the 2x ones are learned.
- Score layers: the reference leaves them at Caffe's default filler (zeros) because it
  fine-tunes from ImageNet VGG16. An untrained model that outputs exactly zero everywhere makes
  every parity and calibration check vacuous, so scores are He-initialised unless
  ``zero_init_scores=True`` (pass it when fine-tuning from ImageNet weights as the paper does).
- FCN-8s "at-once" multiplies pool4/pool3 by 0.01/0.0001 before scoring them; that only
  rescales the skip weights (a training-time conditioning trick) and is omitted, as in the
  staged FCN-8s the paper reports.
"""

from __future__ import annotations

import torch
from torch import nn

from segexport.models.layers import bilinear_kernel, conv_relu, crop_to, scaled, vgg_stage_widths

# Caffe crop offsets (pixels) of the reference nets: the skip scores onto the 2x-upsampled map,
# and the final upsampled score onto the input.
CROP_POOL4 = 5
CROP_POOL3 = 9
CROP_OUT = {32: 19, 16: 27, 8: 31}
CONV1_PAD = 100


class _VGGTrunk(nn.Module):
    """VGG16 conv1..conv5 with the FCN padding and ceil-mode pools; returns pool3/4/5."""

    def __init__(self, width: float) -> None:
        super().__init__()
        cin = 3
        self.stages = nn.ModuleList()
        for i, stage in enumerate(vgg_stage_widths(width)):
            layers: list[nn.Module] = []
            for j, cout in enumerate(stage):
                layers.append(conv_relu(cin, cout, 3, padding=CONV1_PAD if i == j == 0 else 1))
                cin = cout
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))  # Caffe pooling rounds up
            self.stages.append(nn.Sequential(*layers))
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats[2], feats[3], feats[4]


def _upsampler(channels: int, factor: int, *, learnable: bool) -> nn.ConvTranspose2d:
    """A bilinear-initialised x``factor`` deconvolution (kernel 2*factor, as in the reference)."""
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * factor))
    up.weight.requires_grad_(learnable)
    return up


class FCN(nn.Module):
    """FCN with ``stride`` in {32, 16, 8}: the deeper skips are added for 16s and 8s.

    Module names follow the Caffe layers (fc6, fc7, score_fr, upscore2, score_pool4, ...), so a
    converted reference checkpoint maps name for name.
    """

    def __init__(self, num_classes: int = 21, width: float = 1.0, stride: int = 8, *,
                 zero_init_scores: bool = False) -> None:
        super().__init__()
        if stride not in CROP_OUT:
            raise ValueError(f"stride must be one of {sorted(CROP_OUT)}, got {stride}")
        self.stride = stride
        self.features = _VGGTrunk(width)
        fc = scaled(4096, width)
        self.fc6 = conv_relu(self.features.out_channels, fc, 7, padding=0)
        self.drop6 = nn.Dropout(0.5)
        self.fc7 = conv_relu(fc, fc, 1, padding=0)
        self.drop7 = nn.Dropout(0.5)
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        if stride == 32:
            self.upscore = _upsampler(num_classes, 32, learnable=False)
        else:
            self.upscore2 = _upsampler(num_classes, 2, learnable=True)
            self.score_pool4 = nn.Conv2d(scaled(512, width), num_classes, 1)
            if stride == 16:
                self.upscore16 = _upsampler(num_classes, 16, learnable=False)
            else:
                self.upscore_pool4 = _upsampler(num_classes, 2, learnable=True)
                self.score_pool3 = nn.Conv2d(scaled(256, width), num_classes, 1)
                self.upscore8 = _upsampler(num_classes, 8, learnable=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        if zero_init_scores:
            for m in (self.score_fr, getattr(self, "score_pool4", None), getattr(self, "score_pool3", None)):
                if m is not None:
                    nn.init.zeros_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool3, pool4, pool5 = self.features(x)
        score = self.score_fr(self.drop7(self.fc7(self.drop6(self.fc6(pool5)))))
        if self.stride == 32:
            return crop_to(self.upscore(score), x, CROP_OUT[32])
        up2 = self.upscore2(score)
        fuse4 = up2 + crop_to(self.score_pool4(pool4), up2, CROP_POOL4)
        if self.stride == 16:
            return crop_to(self.upscore16(fuse4), x, CROP_OUT[16])
        up4 = self.upscore_pool4(fuse4)
        fuse3 = up4 + crop_to(self.score_pool3(pool3), up4, CROP_POOL3)
        return crop_to(self.upscore8(fuse3), x, CROP_OUT[8])


def build_fcn32s(num_classes: int = 21, width: float = 1.0, **kwargs) -> FCN:
    return FCN(num_classes, width, 32, **kwargs)


def build_fcn16s(num_classes: int = 21, width: float = 1.0, **kwargs) -> FCN:
    return FCN(num_classes, width, 16, **kwargs)


def build_fcn8s(num_classes: int = 21, width: float = 1.0, **kwargs) -> FCN:
    return FCN(num_classes, width, 8, **kwargs)
