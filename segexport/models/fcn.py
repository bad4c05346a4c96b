"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer, Darrell, CVPR 2015), as in the Caffe reference.

Faithful details that matter for deployment:
- conv1_1 pads by 100 so that any input size survives the five ceil-mode pools and the
  unpadded 7x7 fc6; the score maps are cropped back with the reference's exact offsets
  (19 for 32s, 5/27 for 16s, 5/9/31 for 8s). The crops are slices on runtime sizes, so the
  exported graph handles dynamic H/W.
- Upsampling is ``ConvTranspose2d`` initialised to bilinear interpolation (sec. 3.3); the
  final upsamplers of the reference are fixed, the 2x ones learnable.
- FCN-8s "at-once" scales pool4/pool3 by 0.01/0.0001 before scoring; that is a training
  trick for the all-at-once model and is omitted here (it only rescales weights).
"""

from __future__ import annotations

import torch
from torch import nn

from segexport.models.layers import bilinear_kernel, conv_relu, crop_to, vgg_stage_widths
from segexport.models.registry import ModelSpec, register, scaled

PAPER = ("Long, Shelhamer, Darrell. Fully Convolutional Networks for Semantic Segmentation. "
         "CVPR 2015 (arXiv:1411.4038)")


class _VGGTrunk(nn.Module):
    """VGG16 conv1..conv5 with the FCN padding and ceil-mode pools; returns pool3/4/5."""

    def __init__(self, width: float) -> None:
        super().__init__()
        stages = vgg_stage_widths(width)
        cin = 3
        self.stages = nn.ModuleList()
        for i, stage in enumerate(stages):
            layers: list[nn.Module] = []
            for j, cout in enumerate(stage):
                pad = 100 if (i == 0 and j == 0) else 1
                layers.append(conv_relu(cin, cout, 3, padding=pad))
                cin = cout
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            self.stages.append(nn.Sequential(*layers))
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats[2], feats[3], feats[4]


def _upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * factor))
    return up


class FCN(nn.Module):
    """FCN with ``stride`` in {32, 16, 8}: the deeper skips are added for 16s and 8s."""

    def __init__(self, num_classes: int = 21, width: float = 1.0, stride: int = 8) -> None:
        super().__init__()
        if stride not in (8, 16, 32):
            raise ValueError("stride must be 8, 16 or 32")
        self.stride = stride
        self.features = _VGGTrunk(width)
        fc = scaled(4096, width)
        self.fc6 = conv_relu(self.features.out_channels, fc, 7, padding=0)
        self.drop6 = nn.Dropout2d(0.5)
        self.fc7 = conv_relu(fc, fc, 1, padding=0)
        self.drop7 = nn.Dropout2d(0.5)
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        if stride == 32:
            self.upscore = _upsampler(num_classes, 32)
        else:
            self.upscore2 = _upsampler(num_classes, 2)
            self.score_pool4 = nn.Conv2d(scaled(512, width), num_classes, 1)
            if stride == 16:
                self.upscore16 = _upsampler(num_classes, 16)
            else:
                self.upscore_pool4 = _upsampler(num_classes, 2)
                self.score_pool3 = nn.Conv2d(scaled(256, width), num_classes, 1)
                self.upscore8 = _upsampler(num_classes, 8)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for name in ("score_fr", "score_pool4", "score_pool3"):
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name).weight)  # the reference initialises scores at zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool3, pool4, pool5 = self.features(x)
        score = self.score_fr(self.drop7(self.fc7(self.drop6(self.fc6(pool5)))))
        if self.stride == 32:
            return crop_to(self.upscore(score), x, 19)
        up2 = self.upscore2(score)
        fuse4 = up2 + crop_to(self.score_pool4(pool4), up2, 5)
        if self.stride == 16:
            return crop_to(self.upscore16(fuse4), x, 27)
        up4 = self.upscore_pool4(fuse4)
        fuse3 = up4 + crop_to(self.score_pool3(pool3), up4, 9)
        return crop_to(self.upscore8(fuse3), x, 31)


def _spec(name: str, stride: int) -> ModelSpec:
    return ModelSpec(
        name=name,
        family="fcn",
        factory=lambda num_classes=21, width=1.0, **kw: FCN(num_classes, width, stride, **kw),
        paper=PAPER,
        default_input_size=(500, 500),
        output_stride=stride,
        min_size=1,
        paper_params=None,
        description=f"FCN-{stride}s: VGG16 made fully convolutional; "
        + {32: "a single x32 bilinear-initialised deconvolution.",
           16: "pool4 scores fused before a x16 deconvolution.",
           8: "pool4 and pool3 scores fused before a x8 deconvolution."}[stride],
        notes=("conv1_1 pads by 100 and the outputs are cropped back (Caffe offsets), so every size >= 1 works",
               "ARCHITECTURES.md lists no count; the FCN paper's VGG16 FCN has ~134M parameters"),
    )


for _name, _stride in (("fcn32s", 32), ("fcn16s", 16), ("fcn8s", 8)):
    register(_spec(_name, _stride))
