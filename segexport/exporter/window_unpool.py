"""Max pool with indices + max unpool for *any* window (overlapping, padded, dilated, ceil mode),
rewritten into ops TensorRT runs -- bit-exact with PyTorch's CPU kernels.

Why: ENet's initial block and many U-Net/SegNet ports pool with ``kernel 3, stride 2, padding
1`` and unpool with the indices; TensorRT parses neither ``MaxPool`` with an ``Indices`` output
nor ``MaxUnpool``. :mod:`segexport.exporter.unpool` rewrites kernel == stride windows (each input
position in one window, the fast path ``benchmarks/bench_unpool.py`` measures); this module
covers the rest with the same one-hot mask, so a pool of either kind pairs with an unpool of
either kind.

Pool. Pad the input by ``padding`` on every side with the lowest float (PyTorch skips padded
positions; a value that never wins a max is the same), then for each window position (i, j)
the strided slice ``x[:, :, d*i : d*i + s*(Ho-1) + 1 : s, ...]`` is that position's value in
every window (Ho x Wo). The pooled value is their max; the flag of (i, j) is "equal to the max
and no earlier position (row-major) was": PyTorch's ``val > maxval`` keeps the first maximum.
Ceil mode pads the bottom/right by ``stride - 1`` more so the last, partial window has a slice.

Unpool. PyTorch's CPU ``max_unpool2d`` writes each pooled value at its index, plane by plane in
row-major order of the windows, so where overlapping windows chose the same input position
(a maximum shared by two windows) the *last* window's value stays. Window (oh, ow)'s position
(i, j) is padded input pixel (s*oh + d*i, s*ow + d*j): of phase ((d*i) mod s, (d*j) mod s) on
the stride-s grid, shifted by ((d*i) // s, (d*j) // s) grid cells. So the output is built one
phase at a time: each window position of the phase contributes its flagged values shifted by a
constant Pad; among the contributions that land on one cell the later window is the one with the
smaller shift, i.e. the earlier window position in row-major order, which wins by the same
first-flag rule as the pool. The s*s phase maps interleave with one ``DepthToSpace``; cropping
the padding off gives the unpooled map (zero where no window put a value, as in PyTorch).

Every value is copied, never computed, and every shift and pad is a constant: exact, and shape
arithmetic stays out of the graph (sizes follow ``x.shape``, which torch.export keeps symbolic).

Known limits, said where they apply: an input holding -inf or the lowest float itself can lose a
max to the padding; PyTorch's CUDA unpool writes duplicates in no defined order (the rewrite
matches the CPU kernel, the one segexport verifies against); a ceil-mode pool whose last window
can start inside the right padding (stride > effective kernel - padding) is exact only for a
static export, since PyTorch's output size then branches on H.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segexport.errors import UserError
from segexport.exporter.first_max import first_max, lowest as _lowest, pair as _pair


def pooled_length(n, k: int, s: int, p: int, d: int, ceil_mode: bool):
    """PyTorch's pooled length of ``n`` inputs (``n`` may be symbolic)."""
    e = d * (k - 1) + 1  # effective kernel
    if not ceil_mode:
        return (n + 2 * p - e) // s + 1
    out = (n + 2 * p - e + s - 1) // s + 1
    if s > e - p and (out - 1) * s >= n + p:  # the last window would start in the right padding
        out = out - 1  # (a branch on n: exact when static; a dynamic export fails with the module named)
    return out


class Geometry:
    """One pool's windows: kernel, stride, padding, dilation (pairs) and ceil mode."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False) -> None:
        self.k = _pair(kernel_size)
        self.s = _pair(stride if stride is not None and stride != [] else kernel_size)
        self.p = _pair(padding)
        self.d = _pair(dilation)
        self.ceil_mode = bool(ceil_mode)

    def describe(self) -> str:
        return f"kernel {self.k}, stride {self.s}, padding {self.p}, dilation {self.d}"


def check_geometry(g: Geometry, where: str) -> None:
    """Refuse windows PyTorch itself refuses, with the reason (not a kernel error later)."""
    for k, s, p, d in zip(g.k, g.s, g.p, g.d):
        if k < 1 or s < 1 or d < 1 or p < 0 or 2 * p > k:
            raise UserError(f"max pool {where} ({g.describe()}) is invalid: PyTorch needs kernel, stride, "
                            "dilation >= 1 and padding at most half the kernel")


class WindowMaxPool2d(nn.Module):
    """Max pool over any window returning ``(pooled, mask)``; the mask is bool
    ``N x C*kh*kw x Ho x Wo``, channel ``c*kh*kw + i*kw + j`` flagging window position (i, j)
    (the layout of :class:`segexport.exporter.unpool.MaskedMaxPool2d`)."""

    def __init__(self, geometry: Geometry) -> None:
        super().__init__()
        self.g = geometry

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.g
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = g.k, g.s, g.p, g.d
        ho = pooled_length(x.shape[-2], kh, sh, ph, dh, g.ceil_mode)
        wo = pooled_length(x.shape[-1], kw, sw, pw, dw, g.ceil_mode)
        extra_h, extra_w = (sh - 1, sw - 1) if g.ceil_mode else (0, 0)
        padded = F.pad(x, (pw, pw + extra_w, ph, ph + extra_h), value=_lowest(x))
        parts = [padded[:, :, dh * i: dh * i + sh * (ho - 1) + 1: sh, dw * j: dw * j + sw * (wo - 1) + 1: sw]
                 for i in range(kh) for j in range(kw)]
        return first_max(parts, ho, wo)


class WindowMaxUnpool2d(nn.Module):
    """Inverse of :class:`WindowMaxPool2d` with PyTorch CPU's last-window-wins for shared positions."""

    def __init__(self, geometry: Geometry) -> None:
        super().__init__()
        self.g = geometry

    def forward(self, x: torch.Tensor, mask: torch.Tensor, output_size=None) -> torch.Tensor:
        g = self.g
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = g.k, g.s, g.p, g.d
        n, c, ho, wo = x.shape
        if mask.dim() != 4 or mask.dtype != torch.bool or mask.shape[1] != c * kh * kw:
            raise UserError(f"max unpool ({g.describe()}) was given indices of another pool ({mask.shape[1]} mask "
                            f"channels for {c} planes, not {c * kh * kw}): unpool with the kernel, stride and padding "
                            "of the pool that made the indices")
        flags = mask.reshape(n, c, kh * kw, ho, wo).to(x.dtype)  # Pad on float: TensorRT pads no bool tensors
        reach_h, reach_w = (dh * (kh - 1)) // sh, (dw * (kw - 1)) // sw
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        phases = []
        for a in range(sh):
            for b in range(sw):
                out, taken = None, None
                for i in range(kh):
                    if (dh * i) % sh != a:
                        continue
                    for j in range(kw):
                        if (dw * j) % sw != b:
                            continue
                        di, dj = (dh * i) // sh, (dw * j) // sw
                        shift = (dj, reach_w - dj, di, reach_h - di)
                        flag = F.pad(flags[:, :, i * kw + j], shift) > 0
                        value = F.pad(x, shift)
                        fresh = flag if taken is None else flag & ~taken  # an earlier position = a later window
                        out = torch.where(fresh, value, zero if out is None else out)
                        taken = flag if taken is None else taken | flag
                if out is None:  # no window position falls on this phase (stride > kernel)
                    out = torch.zeros_like(F.pad(x, (0, reach_w, 0, reach_h)))
                phases.append(out)
        grid = torch.stack(phases, dim=2)  # N x C x sh*sw x Hv x Wv
        hv, wv = ho + reach_h, wo + reach_w
        if sh == sw:
            full = F.pixel_shuffle(grid.reshape(n, c * sh * sw, hv, wv), sh)
        else:
            full = grid.reshape(n, c, sh, sw, hv, wv).permute(0, 1, 4, 2, 5, 3).reshape(n, c, hv * sh, wv * sw)
        if output_size is None:  # PyTorch's default: (Ho - 1) * s + k - 2p
            h, w = (ho - 1) * sh + kh - 2 * ph, (wo - 1) * sw + kw - 2 * pw
        else:
            h, w = output_size[-2], output_size[-1]
        # positions past the last window (floor mode) are zeros: a constant pad first, so the crop is a real
        # crop at every size (a Slice that clamps, or keeps everything, at the traced size holds for that parity only)
        full = F.pad(full, (0, sw, 0, sh))
        out = full[:, :, ph: ph + h, pw: pw + w]  # drop the padding rows/columns
        return F.pad(out, (0, w - out.shape[-1], 0, h - out.shape[-2]))  # zero unless output_size asks for more
