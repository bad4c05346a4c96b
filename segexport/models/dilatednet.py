"""DilatedNet (Yu & Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions",
ICLR 2016): the VGG16 front-end and the basic context module.

Front-end: VGG16 with pool4 and pool5 removed, conv5 dilated by 2, fc6 a 7x7 convolution
dilated by 4 (4096 channels), fc7 1x1 4096, a 1x1 classifier, output stride 8, then x8
bilinear upsampling to the input size. The paper's network is unpadded and the input is
reflection-padded by 186 px; here convolutions are 'same'-padded so the output matches the
input for any size with the same weights. The pools are Caffe's 2x2 stride-2 ones, which
round up (ceil(H/2)); ``ceil_mode=True`` keeps that, so any H, W >= 1 works. The released
Caffe model upsamples x8 with a fixed bilinear deconvolution (kernel 16, stride 8, pad 4,
one group per class); ``F.interpolate(size=input size, mode="bilinear", align_corners=False)``
is the same half-pixel interpolation away from the border (the deconvolution fades towards
zero in the outer 4 px, the resize clamps) and also handles sizes that are not multiples of
8; it exports to an ONNX ``Resize`` (half_pixel) that TensorRT runs natively.

Context module, basic (Table 1): seven 3x3 convolutions with C = num_classes channels and
dilations 1, 1, 2, 4, 8, 16, 1, each followed by ReLU, then a 1x1 C->C convolution, all
identity-initialised (sec. 3: each layer passes its input through), so an untrained module
leaves the front-end's scores unchanged on non-negative input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segexport.models.deeplab import vgg_trunk
from segexport.models.layers import conv_relu, he_init, scaled

CONTEXT_DILATIONS = (1, 1, 2, 4, 8, 16, 1)


def identity_init(conv: nn.Conv2d) -> None:
    """w[c, c, center] = 1, zero elsewhere: the layer copies its input (Yu & Koltun, eq. 3)."""
    with torch.no_grad():
        conv.weight.zero_()
        k = conv.kernel_size[0] // 2
        for c in range(min(conv.in_channels, conv.out_channels)):
            conv.weight[c, c, k, k] = 1.0
        if conv.bias is not None:
            conv.bias.zero_()


class ContextModule(nn.Module):
    """The basic context module: C channels throughout, receptive field 67x67."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[conv_relu(channels, channels, 3, padding=d, dilation=d) for d in CONTEXT_DILATIONS])
        self.final = nn.Conv2d(channels, channels, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                identity_init(m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.layers(x))


class DilatedNet(nn.Module):
    def __init__(self, num_classes: int = 21, width: float = 1.0, context: bool = False) -> None:
        super().__init__()
        pools = [nn.MaxPool2d(2, 2, ceil_mode=True) for _ in range(3)] + [None, None]  # pool4/5 removed
        self.features, c5 = vgg_trunk(width, pools, conv5_dilation=2)
        fc = scaled(4096, width)
        self.fc6 = conv_relu(c5, fc, 7, padding=12, dilation=4)  # 'same': (7 - 1) * 4 / 2
        self.drop6 = nn.Dropout(0.5)
        self.fc7 = conv_relu(fc, fc, 1, padding=0)
        self.drop7 = nn.Dropout(0.5)
        self.final = nn.Conv2d(fc, num_classes, 1)
        he_init(self)  # before the context module, whose identity init must stay
        self.context = ContextModule(num_classes) if context else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.final(self.drop7(self.fc7(self.drop6(self.fc6(self.features(x))))))
        if self.context is not None:
            h = self.context(h)
        return F.interpolate(h, size=x.shape[-2:], mode="bilinear", align_corners=False)


def build_dilatednet(num_classes: int = 21, width: float = 1.0, **kwargs) -> DilatedNet:
    return DilatedNet(num_classes, width, **kwargs)


def build_dilatednet_context(num_classes: int = 21, width: float = 1.0, **kwargs) -> DilatedNet:
    return DilatedNet(num_classes, width, context=True, **kwargs)
