"""DeconvNet (Noh, Hong, Han, ICCV 2015): a VGG16-BN encoder with ceil-mode, index-keeping
pools, a fully connected middle (fc6 as an unpadded 7x7 convolution, fc7 1x1, and a 7x7
deconvolution back, each + BN + ReLU), and a mirrored decoder of unpooling + 3x3
deconvolution + BN + ReLU, scored by a 1x1 convolution.

Unpooling recovers *where* (the outline), deconvolution fills in *what*. Layer for layer this
is ``model/DeconvNet/DeconvNet_inference_deploy.prototxt`` of HyeonwooNoh/DeconvNet; the encoder
and the unpooling decoder are the ones SegNet uses (:mod:`segexport.models.segnet`). The
reference is defined at 224x224 only (fixed ``unpool_size``); here every unpool takes the
encoder's pre-pool size, so any size from ``min_size`` up works, odd ones included.

fc6 is unpadded, so pool5 must be at least 7x7: ceil(H / 32) >= 7, i.e. H, W >= 193.
"""

from __future__ import annotations

import torch
from torch import nn

from segexport.models.layers import scaled
from segexport.models.segnet import VGGBNEncoder, decode, decoder_widths, init_weights, unpooling_decoder


FC_KERNEL = 7  # zoo.DECONVNET_MIN_SIZE = 32 * (FC_KERNEL - 1) + 1 = 193 follows from it


def deconv_bn_relu(cin: int, cout: int, kernel: int = 3, padding: int = 1) -> nn.Sequential:
    """The decoder unit: a stride-1 deconvolution (Caffe ``DECONVOLUTION``) + BN + ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, kernel, stride=1, padding=padding),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DeconvNet(nn.Module):
    def __init__(self, num_classes: int = 21, width: float = 1.0) -> None:
        super().__init__()
        self.encoder = VGGBNEncoder(width, ceil_mode=True)
        c5, fc = self.encoder.out_channels, scaled(4096, width)
        self.fc6 = nn.Sequential(nn.Conv2d(c5, fc, FC_KERNEL), nn.BatchNorm2d(fc), nn.ReLU(inplace=True))
        self.fc7 = nn.Sequential(nn.Conv2d(fc, fc, 1), nn.BatchNorm2d(fc), nn.ReLU(inplace=True))
        self.fc6_deconv = deconv_bn_relu(fc, c5, kernel=FC_KERNEL, padding=0)
        stages = decoder_widths(width)
        self.unpools, self.decoders = unpooling_decoder(stages, deconv_bn_relu)
        self.score = nn.Conv2d(stages[-1][-1][1], num_classes, 1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, memory = self.encoder(x)
        x = self.fc6_deconv(self.fc7(self.fc6(x)))
        return self.score(decode(x, memory, self.unpools, self.decoders))


def build_deconvnet(num_classes: int = 21, width: float = 1.0, **kwargs) -> DeconvNet:
    return DeconvNet(num_classes, width, **kwargs)
