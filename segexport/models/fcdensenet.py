"""FC-DenseNet 56 / 67 / 103, "The One Hundred Layers Tiramisu" (Jégou, Drozdzal, Vázquez,
Romero, Bengio, CVPR Workshops 2017).

A 3x3 stem of 48 maps; dense blocks of BN-ReLU-conv3x3-dropout layers whose outputs are
concatenated; transition down = BN-ReLU-conv1x1-dropout-maxpool2x2; transition up = a 3x3
stride-2 transposed convolution applied only to the maps the previous dense block created
(not its input: that is what keeps the up path from exploding); up-path blocks pass on only
their new maps, except the last, whose full concatenation feeds the 1x1 classifier.

The 3x3 stride-2 transposed convolution (no padding, as Lasagne's ``crop='valid'``) turns
h into 2h+1: one pixel more than an even skip, equal to an odd one. The authors' Lasagne
code centre-crops it to the skip; for a one-pixel overshoot the centre crop starts at 0,
so :func:`crop_to_skip` cuts the last row/column instead, with ``F.pad`` by the (zero or
negative) size difference. Why not ``layers.center_crop_to``: its slice bounds
((2h+1 - s) // 2, ...) make ``torch.export`` emit guards on floor-divisions of H that it
cannot prove (strict export with dynamic H/W fails; ``torch.onnx.export`` only gets through
by falling back), while the pad amount ``s - (2h+1)`` simplifies away symbolically.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segexport.models.layers import scaled
from segexport.models.zoo import FCDENSENET_CONFIGS as CONFIGS

# Lasagne's BatchNormLayer default; keeps weights ported from the authors' code exact.
BN_EPS = 1e-4


def _bn_relu_conv(cin: int, cout: int, kernel: int, dropout: float) -> nn.Sequential:
    """The paper's composite layer (Table 1): BN, ReLU, 'same' conv, element-wise dropout."""
    return nn.Sequential(
        nn.BatchNorm2d(cin, eps=BN_EPS), nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.Dropout(dropout),
    )


def crop_to_skip(up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """Cut the transition-up output (2h+1) to its skip (2h or 2h+1): Lasagne's centre crop,
    whose offset is 0 for a one-pixel overshoot, written as a negative pad (see module doc)."""
    return F.pad(up, (0, skip.shape[-1] - up.shape[-1], 0, skip.shape[-2] - up.shape[-2]))


class DenseBlock(nn.Module):
    """``n`` layers each seeing all previous maps; returns only the ``n * growth`` new maps."""

    def __init__(self, cin: int, growth: int, n: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_bn_relu_conv(cin + i * growth, growth, 3, dropout) for i in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = []
        for layer in self.layers:
            out = layer(x)
            x = torch.cat([x, out], dim=1)
            new.append(out)
        return torch.cat(new, dim=1)


class TransitionDown(nn.Sequential):
    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__(_bn_relu_conv(channels, channels, 1, dropout), nn.MaxPool2d(2, 2))


class FCDenseNet(nn.Module):
    """The Tiramisu. ``down`` lists the layers of each down-path dense block; the up path
    mirrors it (103: down 4,5,7,10,12 / up 12,10,7,5,4)."""

    def __init__(self, num_classes: int = 21, width: float = 1.0, growth: int = 16,
                 down: tuple[int, ...] = (4, 5, 7, 10, 12), bottleneck: int = 15, dropout: float = 0.2,
                 stem: int = 48) -> None:
        super().__init__()
        growth = scaled(growth, width)
        c = scaled(stem, width)
        self.stem = nn.Conv2d(3, c, 3, padding=1)  # linear: the first BN-ReLU is in the first dense layer
        self.down_blocks = nn.ModuleList()
        self.transitions_down = nn.ModuleList()
        skip_channels = []
        for n in down:
            self.down_blocks.append(DenseBlock(c, growth, n, dropout))
            c += n * growth
            skip_channels.append(c)
            self.transitions_down.append(TransitionDown(c, dropout))
        self.bottleneck = DenseBlock(c, growth, bottleneck, dropout)
        new_c = bottleneck * growth
        self.transitions_up = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for n, skip_c in zip(reversed(down), reversed(skip_channels)):
            self.transitions_up.append(nn.ConvTranspose2d(new_c, new_c, 3, stride=2))
            c = new_c + skip_c
            self.up_blocks.append(DenseBlock(c, growth, n, dropout))
            new_c = n * growth
        self.classifier = nn.Conv2d(c + new_c, num_classes, 1)
        # HeUniform(gain='relu') with zero biases, as the authors' Lasagne code.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for block, td in zip(self.down_blocks, self.transitions_down):
            x = torch.cat([x, block(x)], dim=1)  # down path: the block's input and its new maps
            skips.append(x)
            x = td(x)
        new = self.bottleneck(x)
        for tu, block in zip(self.transitions_up, self.up_blocks):
            skip = skips.pop()
            # Upsample only the previous block's new maps; [upsampled, skip] is the reference's order.
            x = torch.cat([crop_to_skip(tu(new), skip), skip], dim=1)
            new = block(x)
        return self.classifier(torch.cat([x, new], dim=1))  # the last block keeps its input too


def _build(name: str, num_classes: int, width: float, **kwargs) -> FCDenseNet:
    growth, down, bottleneck = CONFIGS[name]
    return FCDenseNet(num_classes, width, growth, down, bottleneck, **kwargs)


def build_fcdensenet56(num_classes: int = 21, width: float = 1.0, **kwargs) -> FCDenseNet:
    return _build("fcdensenet56", num_classes, width, **kwargs)


def build_fcdensenet67(num_classes: int = 21, width: float = 1.0, **kwargs) -> FCDenseNet:
    return _build("fcdensenet67", num_classes, width, **kwargs)


def build_fcdensenet103(num_classes: int = 21, width: float = 1.0, **kwargs) -> FCDenseNet:
    return _build("fcdensenet103", num_classes, width, **kwargs)
