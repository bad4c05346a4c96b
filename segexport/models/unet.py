"""U-Net (Ronneberger, Fischer, Brox, MICCAI 2015).

Four down and four up stages, 64..1024 channels, two 3x3 convolutions + ReLU a stage,
2x2 max pooling, 2x2 up-convolutions that halve the channels, concatenated skips, and a
1x1 classifier: 31.0 M parameters as in the paper.

One deliberate deviation: the paper's convolutions are unpadded (a 572 input gives a 388
output, tiled with overlap). segexport promises an output the size of the input, so the
convolutions are 'same'-padded; the weights are unchanged in number and shape. On odd sizes
the up-convolution comes out one pixel short of its skip and is zero-padded to match (the
pad amounts are computed from runtime sizes, so dynamic H/W export works).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segexport.models.registry import ModelSpec, register, scaled

PAPER = ("Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation. "
         "MICCAI 2015 (arXiv:1505.04597)")


def double_conv(cin: int, cout: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in ((cin, cout), (cout, cout)):
        layers.append(nn.Conv2d(a, b, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(b))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    def __init__(self, num_classes: int = 21, width: float = 1.0, batch_norm: bool = False) -> None:
        super().__init__()
        chans = [scaled(c, width) for c in (64, 128, 256, 512, 1024)]
        self.down = nn.ModuleList()
        cin = 3
        for c in chans:
            self.down.append(double_conv(cin, c, batch_norm))
            cin = c
        self.pool = nn.MaxPool2d(2, 2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for c_skip, c_in in zip(reversed(chans[:-1]), reversed(chans[1:])):
            self.up.append(nn.ConvTranspose2d(c_in, c_skip, 2, stride=2))
            self.dec.append(double_conv(2 * c_skip, c_skip, batch_norm))
        self.classifier = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec):
            skip = skips.pop()
            x = up(x)
            x = F.pad(x, (0, skip.shape[-1] - x.shape[-1], 0, skip.shape[-2] - x.shape[-2]))
            x = dec(torch.cat([skip, x], dim=1))
        return self.classifier(x)


register(ModelSpec(
    name="unet",
    family="unet",
    factory=lambda num_classes=21, width=1.0, **kw: UNet(num_classes, width, **kw),
    paper=PAPER,
    default_input_size=(512, 512),
    output_stride=16,
    min_size=16,
    paper_params=31_000_000,
    description="4 down / 4 up stages (64..1024 channels), 2x2 up-convolutions, concatenated skips.",
    notes=("'same'-padded 3x3 convolutions instead of the paper's unpadded ones, so the output matches the input",
           "model arg batch_norm=true adds BatchNorm after every convolution (not in the paper)"),
))
