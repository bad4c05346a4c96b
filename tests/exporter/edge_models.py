"""Small random-init look-alikes of classic real-time segmenters, written from their papers the
way their public PyTorch ports write them: the constructs that broke ``segexport onnx``.

- ENet (Paszke et al. 2016): an initial block concatenating a strided conv with an
  overlapping ``MaxPool2d(3, 2, 1)``; downsampling bottlenecks ``MaxPool2d(2, 2,
  return_indices=True)`` + zero channel padding; upsampling bottlenecks ``MaxUnpool2d`` and
  ``ConvTranspose2d(..., output_size=...)``; a final transposed conv to the input's size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Untrained BatchNorm is the identity; random statistics make every layer count."""
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    return model.eval()


# ---------------------------------------------------------------- ENet


class _ENetInitial(nn.Module):
    def __init__(self, cout: int) -> None:
        super().__init__()
        self.main = nn.Conv2d(3, cout - 3, 3, 2, 1, bias=False)
        self.ext = nn.MaxPool2d(3, 2, 1)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.PReLU()

    def forward(self, x):
        return self.act(self.bn(torch.cat([self.main(x), self.ext(x)], 1)))


class _ENetDown(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.ext = nn.Sequential(nn.Conv2d(cin, cin, 2, 2, bias=False), nn.BatchNorm2d(cin), nn.PReLU(),
                                 nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU())
        self.cout = cout
        self.act = nn.PReLU()

    def forward(self, x):
        main, indices = self.pool(x)
        ext = self.ext(x)
        n, _, h, w = ext.shape
        pad = torch.zeros(n, self.cout - main.shape[1], h, w, dtype=x.dtype)
        return self.act(torch.cat([main, pad], 1) + ext), indices


class _ENetUp(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.unpool = nn.MaxUnpool2d(2)
        self.ext = nn.Sequential(nn.Conv2d(cin, cin, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU())
        self.tconv = nn.ConvTranspose2d(cin, cin, 2, 2, bias=False)
        self.ext2 = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()

    def forward(self, x, indices, size):
        main = self.unpool(self.main(x), indices, output_size=size)
        return self.act(main + self.ext2(self.tconv(self.ext(x), output_size=size)))


class ENet(nn.Module):
    def __init__(self, num_classes: int = 4, width: int = 8) -> None:
        super().__init__()
        self.initial = _ENetInitial(width)
        self.down1 = _ENetDown(width, 2 * width)
        self.down2 = _ENetDown(2 * width, 4 * width)
        self.up2 = _ENetUp(4 * width, 2 * width)
        self.up1 = _ENetUp(2 * width, width)
        self.full = nn.ConvTranspose2d(width, num_classes, 3, 2, 1, bias=False)

    def forward(self, x):
        size0 = x.size()
        x = self.initial(x)
        size1 = x.size()
        x, i1 = self.down1(x)
        size2 = x.size()
        x, i2 = self.down2(x)
        x = self.up1(self.up2(x, i2, size2), i1, size1)
        return self.full(x, output_size=size0)


def enet(num_classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return _randomize_bn(ENet(num_classes))


# ---------------------------------------------------------------- pool / unpool, however written


class PoolUnpool(nn.Module):
    """conv -> max pool with indices -> conv -> max unpool -> conv: no ReLU before the pool, so on
    noise no two values of a window tie; ``functional`` writes the pair as ``F.max_pool2d`` /
    ``F.max_unpool2d`` instead of modules."""

    def __init__(self, num_classes: int = 3, kernel: int = 2, stride: int = 2, padding: int = 0,
                 ceil_mode: bool = False, functional: bool = False, relu: bool = False) -> None:
        super().__init__()
        self.enc = nn.Conv2d(3, 4, 3, padding=1)
        self.mid = nn.Conv2d(4, 4, 1)
        self.head = nn.Conv2d(4, num_classes, 3, padding=1)
        self.k, self.s, self.p, self.ceil, self.functional, self.relu = kernel, stride, padding, ceil_mode, functional, relu
        self.pool = nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode, return_indices=True)
        self.unpool = nn.MaxUnpool2d(kernel, stride, padding)

    def forward(self, x):
        f = self.enc(x)
        if self.relu:
            f = torch.relu(f)
        if self.functional:
            y, idx = F.max_pool2d(f, self.k, self.s, self.p, ceil_mode=self.ceil, return_indices=True)
            return self.head(F.max_unpool2d(self.mid(y), idx, self.k, self.s, self.p, output_size=f.shape[-2:]))
        y, idx = self.pool(f)
        return self.head(self.unpool(self.mid(y), idx, output_size=f.size()))


def pool_unpool(num_classes: int = 3, kernel: int = 2, stride: int = 2, padding: int = 0, ceil_mode: bool = False,
                functional: bool = False, relu: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return PoolUnpool(num_classes, kernel, stride, padding, ceil_mode, functional, relu).eval()
