"""Small random-init look-alikes of classic real-time segmenters, written from their papers the
way their public PyTorch ports write them: the constructs that broke ``segexport onnx``.

- ENet (Paszke et al. 2016): an initial block concatenating a strided conv with an
  overlapping ``MaxPool2d(3, 2, 1)``; downsampling bottlenecks ``MaxPool2d(2, 2,
  return_indices=True)`` + zero channel padding; upsampling bottlenecks ``MaxUnpool2d`` and
  ``ConvTranspose2d(..., output_size=...)``; a final transposed conv to the input's size.
"""

from __future__ import annotations

import numpy as np
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


# ---------------------------------------------------------------- BiSeNet


class _AttentionRefinement(nn.Module):
    """BiSeNet's ARM: global pooling written with the input's size as the kernel."""

    def __init__(self, ch: int, kernel_as_keyword: bool) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU())
        self.attention = nn.Sequential(nn.Conv2d(ch, ch, 1, bias=False), nn.BatchNorm2d(ch), nn.Sigmoid())
        self.kernel_as_keyword = kernel_as_keyword

    def forward(self, x):
        x = self.conv(x)
        if self.kernel_as_keyword:
            pooled = F.avg_pool2d(x, kernel_size=x.shape[2:])
        else:
            pooled = F.avg_pool2d(x, x.size()[2:])
        return x * self.attention(pooled)


class BiSeNetLike(nn.Module):
    def __init__(self, num_classes: int = 3, ch: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, ch, 3, 2, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(),
                                  nn.Conv2d(ch, ch, 3, 2, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU())
        self.arm16 = _AttentionRefinement(ch, kernel_as_keyword=False)
        self.arm32 = _AttentionRefinement(ch, kernel_as_keyword=True)
        self.down = nn.Conv2d(ch, ch, 3, 2, 1)
        self.head = nn.Conv2d(ch, num_classes, 1)

    def forward(self, x):
        f16 = self.arm16(self.stem(x))
        f32 = self.arm32(self.down(f16))
        tail = F.max_pool2d(f32, f32.size()[2:])  # the context path's global max, written the same way
        fused = f16 + F.interpolate(f32 + tail, size=f16.shape[-2:], mode="bilinear", align_corners=False)
        return F.interpolate(self.head(fused), size=x.shape[-2:], mode="bilinear", align_corners=False)


def bisenet(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return _randomize_bn(BiSeNetLike(num_classes))


# ---------------------------------------------------------------- ERFNet


class _ERFDown(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout - cin, 3, 2, 1)
        self.pool = nn.MaxPool2d(2, 2)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(torch.cat([self.conv(x), self.pool(x)], 1)))


class _ERFNonBottleneck(nn.Module):
    def __init__(self, ch: int, dilation: int) -> None:
        super().__init__()
        self.c31 = nn.Conv2d(ch, ch, (3, 1), padding=(1, 0))
        self.c13 = nn.Conv2d(ch, ch, (1, 3), padding=(0, 1))
        self.c31d = nn.Conv2d(ch, ch, (3, 1), padding=(dilation, 0), dilation=(dilation, 1))
        self.c13d = nn.Conv2d(ch, ch, (1, 3), padding=(0, dilation), dilation=(1, dilation))
        self.bn1, self.bn2 = nn.BatchNorm2d(ch), nn.BatchNorm2d(ch)

    def forward(self, x):
        y = F.relu(self.bn1(self.c13(F.relu(self.c31(x)))))
        y = self.bn2(self.c13d(F.relu(self.c31d(y))))
        return F.relu(y + x)


class ERFNetLike(nn.Module):
    def __init__(self, num_classes: int = 3, ch: int = 8) -> None:
        super().__init__()
        self.down1 = _ERFDown(3, ch)
        self.down2 = _ERFDown(ch, 2 * ch)
        self.body = nn.Sequential(_ERFNonBottleneck(2 * ch, 1), _ERFNonBottleneck(2 * ch, 2))
        self.up1 = nn.ConvTranspose2d(2 * ch, ch, 3, stride=2, padding=1, output_padding=1)
        self.up2 = nn.ConvTranspose2d(ch, num_classes, 2, stride=2)

    def forward(self, x):
        return self.up2(F.relu(self.up1(self.body(self.down2(self.down1(x))))))


def erfnet(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return _randomize_bn(ERFNetLike(num_classes))


# ---------------------------------------------------------------- MobileViT-style patch unfolding


class PatchUnfold(nn.Module):
    """Hugging Face MobileViT's ``unfolding``: the size rounded up to whole patches in Python
    (``int(math.ceil(h / p) * p)``), which turns a symbolic size into a number."""

    def __init__(self, num_classes: int = 3, ch: int = 8, patch: int = 2) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, ch, 3, 2, 1)
        self.mix = nn.Linear(ch, ch)
        self.head = nn.Conv2d(ch, num_classes, 1)
        self.patch = patch

    def forward(self, x):
        import math

        f = self.stem(x)
        n, c, h, w = f.shape
        new_h, new_w = int(math.ceil(h / self.patch) * self.patch), int(math.ceil(w / self.patch) * self.patch)
        if new_h != h or new_w != w:
            f = F.interpolate(f, size=(new_h, new_w), mode="bilinear", align_corners=False)
        tokens = self.mix(f.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(n, c, new_h, new_w)
        return F.interpolate(self.head(tokens), size=x.shape[-2:], mode="bilinear", align_corners=False)


def patch_unfold(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return PatchUnfold(num_classes).eval()


# ---------------------------------------------------------------- transposed convolutions to a size


class TransposedToSize(nn.Module):
    """U-Net/FCN ports for odd sizes: strided convs down, ``ConvTranspose2d(..., output_size=skip)``
    up (with bias and padding), so ``output_padding`` is 0 or 1 by the size's parity."""

    def __init__(self, num_classes: int = 3, ch: int = 4) -> None:
        super().__init__()
        self.down1 = nn.Conv2d(3, ch, 3, 2, 1)
        self.down2 = nn.Conv2d(ch, ch, 3, 2, 1)
        self.up2 = nn.ConvTranspose2d(ch, ch, 3, stride=2, padding=1)
        # no dilation: TensorRT builds no strided *and* dilated deconvolution
        self.up1 = nn.ConvTranspose2d(ch, num_classes, 3, stride=2, padding=1)

    def forward(self, x):
        f1 = torch.relu(self.down1(x))
        f2 = torch.relu(self.down2(f1))
        u2 = torch.relu(self.up2(f2, output_size=f1.shape[-2:]) + f1)
        return self.up1(u2, output_size=x.size())


def transposed_to_size(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return TransposedToSize(num_classes).eval()


# ---------------------------------------------------------------- an exporter that fails inside itself


class _FailsWhileTraced(nn.Module):
    """Stands for a construct torch.export's symbolic sizes choke on (MONAI UNETR's fixed patch grid
    gave ``AssertionError: True != False``; ERFNet ``KeyError: ((s53/2)//2)``): raises only when traced."""

    def forward(self, x):
        if isinstance(x.shape[-1], torch.SymInt) or torch.compiler.is_exporting():
            raise AssertionError("True != False")
        return x


class FailsWhileTraced(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, num_classes, 3, padding=1)
        self.grid = _FailsWhileTraced()

    def forward(self, x):
        return self.grid(self.stem(x))


def fails_while_traced(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return FailsWhileTraced(num_classes).eval()


# ---------------------------------------------------------------- attention that splits into lists


class _SplitAttention(nn.Module):
    """Hugging Face MobileViTV2's linear self-attention: ``torch.split(qkv, [1, d, d], dim=1)``
    into a Python list, and a ``chunk`` of the values (lowered to SplitToSequence, no TensorRT op)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.qkv = nn.Conv2d(d, 1 + 2 * d, 1)
        self.d = d

    def forward(self, x):
        q, k, v = torch.split(self.qkv(x), [1, self.d, self.d], dim=1)
        a, b = v.chunk(2, dim=1)
        return torch.softmax(q, dim=-1) * k + torch.cat([b, a], 1)


class SplitAttention(nn.Module):
    def __init__(self, num_classes: int = 3, d: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, d, 3, 2, 1)
        self.attn = _SplitAttention(d)
        self.head = nn.Conv2d(d, num_classes, 1)

    def forward(self, x):
        return F.interpolate(self.head(self.attn(self.stem(x))), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)


def split_attention(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return SplitAttention(num_classes).eval()


# ---------------------------------------------------------------- feature map <-> patches with fold / unfold


class _PatchFoldAttention(nn.Module):
    """Hugging Face MobileViTV2's ``unfolding`` / ``folding``: ``F.unfold`` into non-overlapping
    ``patch x patch`` patches (kernel == stride), mixing across the patches, ``F.fold`` back to the
    map's size (lowered to Col2Im, which TensorRT does not parse). ``overlap`` makes the stride 1
    (fold then sums overlapping windows: no reshape says that)."""

    def __init__(self, d: int, patch: int = 2, overlap: bool = False) -> None:
        super().__init__()
        self.mix = nn.Conv2d(d, d, 1)
        self.patch, self.stride = patch, 1 if overlap else patch

    def forward(self, x):
        n, c, h, w = x.shape
        p = (self.patch, self.patch)
        patches = F.unfold(x, kernel_size=p, stride=self.stride).reshape(n, c, self.patch * self.patch, -1)
        attn = torch.softmax(patches.mean(dim=1, keepdim=True), dim=-1)  # over the patches, like linear attention
        patches = self.mix(patches * attn + patches)
        return F.fold(patches.reshape(n, c * self.patch * self.patch, -1), output_size=(h, w), kernel_size=p,
                      stride=self.stride)


class PatchFold(nn.Module):
    def __init__(self, num_classes: int = 3, d: int = 8, patch: int = 2, overlap: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, d, 3, 2, 1)
        self.attn = _PatchFoldAttention(d, patch, overlap)
        self.head = nn.Conv2d(d, num_classes, 1)

    def forward(self, x):
        f = self.attn(self.stem(x))
        return F.interpolate(self.head(f), size=x.shape[-2:], mode="bilinear", align_corners=False)


def patch_fold(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return PatchFold(num_classes).eval()


def patch_fold_3x3(num_classes: int = 3) -> nn.Module:
    """3x3 patches: a map whose size is not a multiple of 3 leaves a margin that fold fills with zeros."""
    torch.manual_seed(0)
    return PatchFold(num_classes, patch=3).eval()


def overlapping_fold(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return PatchFold(num_classes, overlap=True).eval()


# ---------------------------------------------------------------- a size checked, then frozen


class _CeilWindows(nn.Module):
    """MONAI SwinUNETR's BasicLayer: pads H and W up to whole windows with ``int(np.ceil(h / w))``,
    which a trace fixes to the one number it saw, then attends within each window."""

    def __init__(self, channels: int, window: int = 7) -> None:
        super().__init__()
        self.window = window
        self.mix = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        hp = int(np.ceil(h / self.window)) * self.window
        wp = int(np.ceil(w / self.window)) * self.window
        y = F.pad(x, (0, wp - w, 0, hp - h))
        y = y.view(n, c, hp // self.window, self.window, wp // self.window, self.window)
        y = y.softmax(dim=3).reshape(n, c, hp, wp)[:, :, :h, :w]
        return self.mix(y) + x


class CheckedThenCeiled(nn.Module):
    """Checks that H and W are multiples of 32 (a restriction a dynamic range can keep), then a
    window stage freezes the size: the refusal must name the window stage, not the check."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.windows = _CeilWindows(8)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        if (np.array(x.shape[2:]) % 32).any():
            raise ValueError(f"spatial sizes must be multiples of 32, got {tuple(x.shape[2:])}")
        return self.head(self.windows(self.stem(x)))


def checked_then_ceiled(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return CheckedThenCeiled(num_classes).eval()


# ---------------------------------------------------------------- tokens back to a square grid


def torch_int(x):
    """transformers.utils.torch_int, as its modules define it (segexport swaps it while a dynamic export traces)."""
    return x.to(torch.int64) if torch.jit.is_tracing() and isinstance(x, torch.Tensor) else int(x)


class SquareGrid(nn.Module):
    """A ViT decoder that folds its tokens back with ``int(sqrt(n))`` (Hugging Face DPT's
    reassemble stage, which writes ``torch_int``): right at every square size, failing or wrong
    at every other."""

    def __init__(self, num_classes: int = 3, patch: int = 8, cast: str = "int") -> None:
        super().__init__()
        self.cast = cast
        self.embed = nn.Conv2d(3, 16, patch, stride=patch)
        self.mix = nn.Linear(16, 16)
        self.head = nn.Conv2d(16, num_classes, 1)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)  # N x n x C
        n = tokens.shape[1]
        side = (torch_int if self.cast == "torch_int" else int)(n ** 0.5)
        grid = self.mix(tokens).transpose(1, 2).reshape(x.shape[0], 16, side, side)
        return F.interpolate(self.head(grid), size=x.shape[-2:], mode="bilinear", align_corners=False)


def square_grid(num_classes: int = 3, cast: str = "int") -> nn.Module:
    torch.manual_seed(0)
    return SquareGrid(num_classes, cast=cast).eval()


# ---------------------------------------------------------------- strip pooling, coordinate attention


class _StripPool(nn.Module):
    """SPNet's strip pooling: ``AdaptiveAvgPool2d((None, 1))`` and ``((1, None))``, a band conv on
    each, broadcast back over the map."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.rows, self.cols = nn.AdaptiveAvgPool2d((None, 1)), nn.AdaptiveAvgPool2d((1, None))
        self.conv_rows = nn.Conv2d(c, c, (3, 1), padding=(1, 0))
        self.conv_cols = nn.Conv2d(c, c, (1, 3), padding=(0, 1))

    def forward(self, x):
        h, w = x.shape[2:]
        rows = self.conv_rows(self.rows(x)).expand(-1, -1, h, w)
        cols = self.conv_cols(self.cols(x)).expand(-1, -1, h, w)
        return x * torch.sigmoid(rows + cols)


class _CoordAttention(nn.Module):
    """Coordinate attention (Hou et al. 2021): pool to ``(None, 1)`` and ``(1, None)``, concatenate
    along H, one shared conv, ``torch.split`` back into the two sizes the input has."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.pool_h, self.pool_w = nn.AdaptiveAvgPool2d((None, 1)), nn.AdaptiveMaxPool2d((1, None))
        self.shared = nn.Conv2d(c, c, 1)
        self.gate_h, self.gate_w = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x):
        h, w = x.shape[2:]
        y = torch.cat([self.pool_h(x), self.pool_w(x).permute(0, 1, 3, 2)], dim=2)
        a, b = torch.split(torch.relu(self.shared(y)), [h, w], dim=2)
        return x * torch.sigmoid(self.gate_h(a)) * torch.sigmoid(self.gate_w(b.permute(0, 1, 3, 2)))


class StripPoolNet(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.strip = _StripPool(16)
        self.coord = _CoordAttention(16)
        self.head = nn.Conv2d(16, num_classes, 1)

    def forward(self, x):
        y = self.coord(self.strip(torch.relu(self.stem(x))))
        return F.interpolate(self.head(y), size=x.shape[-2:], mode="bilinear", align_corners=False)


def strip_pool(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return StripPoolNet(num_classes).eval()


# ---------------------------------------------------------------- flow alignment (SFNet)


class _FlowAlign(nn.Module):
    """SFNet's flow alignment module as its code writes it: a sampling grid from
    ``torch.linspace(-1, 1, size)`` and a ``torch.tensor([[[[w, h]]]])`` norm, then ``grid_sample``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.flow = nn.Conv2d(2 * c, 2, 3, padding=1)

    def forward(self, low, high):
        n, _, out_h, out_w = low.shape
        high_up = F.interpolate(high, size=(out_h, out_w), mode="bilinear", align_corners=False)
        flow = self.flow(torch.cat([low, high_up], 1))
        norm = torch.tensor([[[[out_w, out_h]]]]).type_as(low).to(low.device)
        ys = torch.linspace(-1.0, 1.0, out_h).view(-1, 1).repeat(1, out_w)
        xs = torch.linspace(-1.0, 1.0, out_w).repeat(out_h, 1)
        grid = torch.cat((xs.unsqueeze(2), ys.unsqueeze(2)), 2).repeat(n, 1, 1, 1).type_as(low)
        return F.grid_sample(high, grid + flow.permute(0, 2, 3, 1) / norm, align_corners=False)


class FlowAlignNet(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.low = nn.Conv2d(3, 8, 3, padding=1)
        self.high = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fam = _FlowAlign(8)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        low = torch.relu(self.low(x))
        return self.head(self.fam(low, torch.relu(self.high(low))))


def flow_align(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return FlowAlignNet(num_classes).eval()
