"""U-Net (Ronneberger, Fischer, Brox, MICCAI 2015).

Four down and four up stages, 64..1024 channels, two 3x3 convolutions + ReLU a stage,
2x2 max pooling, 2x2 up-convolutions (``ConvTranspose2d(k=2, s=2)``) that halve the
channels, concatenated skips and a 1x1 classifier: 31.0 M parameters, as in the paper.
Two details the paper states only in passing are taken from the authors' released Caffe
model (``phseg_v5``): the up-convolutions are followed by a ReLU, and the "drop-out layers
at the end of the contracting path" are ``Dropout(0.5)`` after the last two contracting
stages (d3c and d4c). Initialisation follows sec. 3: Gaussian with std sqrt(2/N), N the
number of inputs of one unit.

One deliberate deviation: the paper's convolutions are unpadded (a 572 input gives a 388
output, segmented with overlap-tiling). segexport promises an output the size of the
input, so the 3x3 convolutions are 'same'-padded; the weights are the same in number and
shape. With floor-mode pooling an odd size leaves the up-convolution one pixel short of its
skip; it is zero-padded on the bottom/right by amounts computed from the runtime shapes
(``F.pad`` on ``skip.shape - x.shape``), which stays symbolic under dynamic-H/W export.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from segexport.models.layers import scaled

CHANNELS = (64, 128, 256, 512, 1024)
DEPTH = len(CHANNELS) - 1  # pooling steps (zoo.UNET_DEPTH, held to this by tests/models)


def double_conv(cin: int, cout: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in ((cin, cout), (cout, cout)):
        layers.append(nn.Conv2d(a, b, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(b))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """Attribute names (down / up / dec / classifier) are the checkpoint format: keep them."""

    def __init__(self, num_classes: int = 21, width: float = 1.0, batch_norm: bool = False,
                 dropout: float = 0.5) -> None:
        super().__init__()
        chans = [scaled(c, width) for c in CHANNELS]
        self.down = nn.ModuleList()
        cin = 3
        for c in chans:
            self.down.append(double_conv(cin, c, batch_norm))
            cin = c
        self.pool = nn.MaxPool2d(2, 2)
        self.drop = nn.Dropout(dropout)  # after d3c (the deepest skip) and d4c (the bottleneck)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for c_skip, c_in in zip(reversed(chans[:-1]), reversed(chans[1:])):
            self.up.append(nn.ConvTranspose2d(c_in, c_skip, 2, stride=2))
            self.dec.append(double_conv(2 * c_skip, c_skip, batch_norm))
        self.classifier = nn.Conv2d(chans[0], num_classes, 1)
        self._paper_init()

    def _paper_init(self) -> None:
        # std sqrt(2/N), N = inputs of one unit: k*k*C_in for a convolution, C_in for the 2x2
        # stride-2 up-convolution (each output pixel sees exactly one input pixel).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            elif isinstance(m, nn.ConvTranspose2d):
                fan_in = m.in_channels
            else:
                continue
            nn.init.normal_(m.weight, std=math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            if i >= DEPTH - 1:
                x = self.drop(x)
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec):
            skip = skips.pop()
            x = F.relu(up(x))
            x = F.pad(x, (0, skip.shape[-1] - x.shape[-1], 0, skip.shape[-2] - x.shape[-2]))
            x = dec(torch.cat([skip, x], dim=1))
        return self.classifier(x)


def build_unet(num_classes: int = 21, width: float = 1.0, **kwargs) -> UNet:
    return UNet(num_classes, width, **kwargs)
