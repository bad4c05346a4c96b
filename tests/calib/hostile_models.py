"""Small user models that reduced precision gets wrong on purpose (``module:factory`` references)."""

from __future__ import annotations

import torch
from torch import nn


class Swamped(nn.Module):
    """An activation whose range swamps the signal that decides the class.

    ``mix`` passes the three input channels through and adds a fourth channel that is a constant
    5000 (a saturated feature, a bias gone wild); the ``head`` reads the three signal channels
    only. Per-tensor INT8 of the head's input gets a scale of 5000 / 127 ~ 39, so every signal
    value (|x| < 3) quantizes to 0 and the labels collapse, while fp32 is confident everywhere
    the input's channels differ (logit margins of 10 x their difference).
    """

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.mix = nn.Conv2d(3, 4, 1)
        self.head = nn.Conv2d(4, num_classes, 1)
        with torch.no_grad():
            self.mix.weight.zero_()
            self.mix.bias.zero_()
            for c in range(3):
                self.mix.weight[c, c] = 1.0
            self.mix.bias[3] = 5000.0
            self.head.weight.zero_()
            self.head.bias.zero_()
            for c in range(min(3, num_classes)):
                self.head.weight[c, c] = 10.0
            self.mix.bias[:3] = 3.0  # signal after the ReLU: 3 + x, every channel alive

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.mix(x)))


def swamped(num_classes: int = 3) -> nn.Module:
    return Swamped(num_classes)


class Overflow(nn.Module):
    """``big`` writes values near 2e5 (past FP16's 65504), ``shrink`` brings them back: right in
    float32, infinite in an FP16 graph that did not keep ``big`` in FP32."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.big = nn.Conv2d(8, 8, 1)
        self.shrink = nn.Conv2d(8, 8, 1)
        self.head = nn.Conv2d(8, num_classes, 1)
        with torch.no_grad():
            self.big.weight.mul_(4e4)
            self.shrink.weight.mul_(1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.shrink(self.big(torch.relu(self.stem(x))))))


def overflow(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return Overflow(num_classes)
