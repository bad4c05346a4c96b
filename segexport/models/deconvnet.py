"""DeconvNet (Noh, Hong, Han, ICCV 2015): a VGG16-BN encoder with ceil-mode, index-keeping
pools, a fully connected middle (fc6 as a 7x7 convolution, fc7 1x1, and a 7x7
deconvolution back), and a mirrored decoder of unpooling + 3x3 deconvolution + BN + ReLU.

Unpooling recovers *where* (the outline), deconvolution fills in *what*. The encoder is the
one SegNet uses (:class:`segexport.models.segnet.VGGBNEncoder`), in ceil mode as in the
reference Caffe model. fc6 is unpadded, so pool5 must be at least 7x7: inputs of 193 px
per side or more (ceil(193 / 32) = 7).
"""

from __future__ import annotations

import torch
from torch import nn

from segexport.models.registry import ModelSpec, register, scaled
from segexport.models.segnet import VGGBNEncoder, decoder_widths, init_weights

PAPER = ("Noh, Hong, Han. Learning Deconvolution Network for Semantic Segmentation. "
         "ICCV 2015 (arXiv:1505.04366)")


def deconv_bn_relu(cin: int, cout: int, kernel: int = 3, padding: int = 1) -> nn.Sequential:
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
        self.fc6 = nn.Sequential(nn.Conv2d(c5, fc, 7), nn.BatchNorm2d(fc), nn.ReLU(inplace=True))
        self.fc7 = nn.Sequential(nn.Conv2d(fc, fc, 1), nn.BatchNorm2d(fc), nn.ReLU(inplace=True))
        self.fc6_deconv = deconv_bn_relu(fc, c5, kernel=7, padding=0)
        self.unpools = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for pairs in decoder_widths(width):
            self.unpools.append(nn.MaxUnpool2d(2, 2))
            self.decoders.append(nn.Sequential(*[deconv_bn_relu(a, b) for a, b in pairs]))
        self.score = nn.Conv2d(decoder_widths(width)[-1][-1][1], num_classes, 1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, memory = self.encoder(x)
        x = self.fc6_deconv(self.fc7(self.fc6(x)))
        for unpool, decode, (indices, size) in zip(self.unpools, self.decoders, reversed(memory)):
            x = decode(unpool(x, indices, output_size=size))
        return self.score(x)


register(ModelSpec(
    name="deconvnet",
    family="deconvnet",
    factory=lambda num_classes=21, width=1.0: DeconvNet(num_classes, width),
    paper=PAPER,
    default_input_size=(224, 224),
    output_stride=32,
    min_size=193,
    paper_params=252_000_000,
    description="VGG16-BN encoder with max-pool indices, fc6/fc7 as convolutions, and a mirrored decoder of "
                "MaxUnpool + 3x3 deconvolution + BN + ReLU.",
    notes=("default input 224x224: the paper trains on 250x250 images randomly cropped to 224x224",
           "fc6 is an unpadded 7x7 convolution: pool5 must be at least 7x7, so inputs of at least 193 px"),
))
