"""DeepLab v1, LargeFOV variant (Chen, Papandreou, Kokkinos, Murphy, Yuille, ICLR 2015).

VGG16 without BatchNorm; 3x3 stride-2 pad-1 max pools for pool1..pool3, pool4 and pool5
3x3 stride-1 pad-1 so the output stride stays 8, conv5 dilated by 2, a 3x3 stride-1 average
pool after pool5, fc6 a 3x3 convolution dilated by 12 with 1024 channels (the "large field
of view" at a fraction of fc6's 4096x7x7 cost), fc7 1x1 1024, fc8 1x1 to the classes, and
bilinear upsampling back to the input size.

The pools are Caffe's, and Caffe rounds pooled sizes up: a 3x3 stride-2 pad-1 pool gives
floor(H/2) + 1, i.e. ceil(H/2) on the odd sizes DeepLab is run at (321 -> 161 -> 81 -> 41)
and one more than PyTorch's default floor mode on even sizes. ``ceil_mode=True`` reproduces
Caffe exactly (PyTorch and ONNX apply the same "last window must start inside the input"
rule), so weights converted from the released Caffe model see the same grids.

The upsampling is ``F.interpolate(..., size=input size, align_corners=True)``: DeepLab's Caffe
``Interp`` layer maps corner to corner, which is ``align_corners=True`` (at 321x321 its
zoom-by-8 of the 41x41 scores is exactly this resize); it exports to ONNX
``Resize`` with ``coordinate_transformation_mode=align_corners``, which TensorRT supports.
The dense CRF of the paper is post-processing, not part of the network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segexport.models.layers import conv_relu, he_init, scaled, vgg_stage_widths


def vgg_trunk(width: float, pools: list[nn.Module | None], conv5_dilation: int) -> tuple[nn.Sequential, int]:
    """VGG16 conv1..conv5 (no BatchNorm) with a caller-chosen pool after each stage (None = none).

    DeepLab and DilatedNet share this trunk and differ only in their pools and in conv5's
    dilation, so it is written once, here (DilatedNet imports it). Returns the layers as
    one ``Sequential`` (the checkpoint layout: ``features.<i>``) and conv5's channel count.
    """
    layers: list[nn.Module] = []
    cin = 3
    for i, (stage, pool) in enumerate(zip(vgg_stage_widths(width), pools)):
        d = conv5_dilation if i == 4 else 1
        for cout in stage:
            layers.append(conv_relu(cin, cout, 3, padding=d, dilation=d))
            cin = cout
        if pool is not None:
            layers.append(pool)
    return nn.Sequential(*layers), cin


class DeepLabV1(nn.Module):
    def __init__(self, num_classes: int = 21, width: float = 1.0) -> None:
        super().__init__()
        pools = ([nn.MaxPool2d(3, 2, padding=1, ceil_mode=True) for _ in range(3)]  # Caffe rounding
                 + [nn.MaxPool2d(3, 1, padding=1) for _ in range(2)])
        self.features, c5 = vgg_trunk(width, pools, conv5_dilation=2)
        self.pool5a = nn.AvgPool2d(3, 1, padding=1)  # Caffe AVE counts the padding: count_include_pad
        fc = scaled(1024, width)
        self.fc6 = conv_relu(c5, fc, 3, padding=12, dilation=12)
        self.drop6 = nn.Dropout(0.5)
        self.fc7 = conv_relu(fc, fc, 1, padding=0)
        self.drop7 = nn.Dropout(0.5)
        self.fc8 = nn.Conv2d(fc, num_classes, 1)
        he_init(self)
        nn.init.normal_(self.fc8.weight, std=0.01)  # the reference's classifier init
        nn.init.zeros_(self.fc8.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool5a(self.features(x))
        h = self.fc8(self.drop7(self.fc7(self.drop6(self.fc6(h)))))
        return F.interpolate(h, size=x.shape[-2:], mode="bilinear", align_corners=True)


def build_deeplabv1(num_classes: int = 21, width: float = 1.0, **kwargs) -> DeepLabV1:
    return DeepLabV1(num_classes, width, **kwargs)
