"""MaxPool-with-indices + MaxUnpool, rewritten into ops TensorRT runs -- bit-exact.

Why: TensorRT's ONNX parser refuses ``MaxPool`` with a second (``Indices``) output ("doesn't
support more than 1 outputs for MaxPool nodes") and has no ``MaxUnpool``; exporters that
lower unpooling to ``ScatterND`` produce graphs ONNX Runtime runs and TensorRT does not.

How: for the non-overlapping windows most segmentation networks use (kernel == stride, no
padding; overlapping, padded and dilated windows are :mod:`segexport.exporter.window_unpool`,
the functional forms :mod:`segexport.exporter.functional_unpool`), an index is only a way of saying "which position of its window held the
maximum". That is a one-hot flag per window position, computable from the pool's input with
elementwise ops at the *pooled* resolution, and unpooling becomes "put each value at the
flagged position of its window":

    window positions  x[:, :, i::k, j::k] for each (i, j)  (k*k strided Slices, each Ho x Wo;
                      ceil mode pads the short last row/column of a slice with the lowest float)
    pooled value      max over the k*k slices               (Max: one pass over the input)
    first max         hit(i, j) = slice == max; flag = hit and no earlier position hit
                      (Equal, And, Not, Or on Ho x Wo booleans, row-major window order)
    mask              the k*k flags stacked, N x C*k*k x Ho x Wo  (one bool tensor, shared by
                      the pool and its unpool)
    unpool            where(flag, value, 0), then DepthToSpace (pixel shuffle) back to
                      Ho*k x Wo*k; then crop or zero-pad to output_size  (Where, DepthToSpace)

All the mask logic runs on Ho x Wo maps (a quarter of the input for 2x2 windows), the input is
read once, the output written once, and no tensor has more than 5 dimensions (TensorRT turns
6-D reshapes into shuffles; DepthToSpace is one layer). An earlier version viewed each window
as a 6-D tensor and reduced it twice; it cost 2.4x the native MaxPool-with-indices + MaxUnpool
graph in ONNX Runtime CPU, this one costs about as much (``benchmarks/bench_unpool.py``).

PyTorch's CPU and CUDA kernels keep the *first* maximum in row-major window order
(``val > maxval`` only replaces on a strictly greater value); ties are common after ReLU
(all-zero windows), so the first-hit tie-break is what makes the rewrite exact and not just
close. Every value is copied, never computed, so the result is bit-identical.

Sizes come from the runtime tensor (``x.shape``), which torch.export keeps symbolic: the same
graph serves dynamic H/W. The swap happens on a deep copy of the model, module by module
(``nn.MaxPool2d(return_indices=True)`` -> :class:`MaskedMaxPool2d`, ``nn.MaxUnpool2d`` ->
:class:`MaskedMaxUnpool2d`); the "indices" passed between them become the one-hot mask,
so model code is untouched.

One PyTorch quirk is deliberately not reproduced: unpooling an odd-sized map *without*
``output_size`` makes PyTorch read flat indices (counted in rows of the input's width) into
rows of another width, scrambling positions. Models pass ``output_size`` (every zoo model
does), and with it the rewrite is exact.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from segexport.errors import UserError


from segexport.exporter.first_max import first_max, lowest as _lowest, pair as _pair


class MaskedMaxPool2d(nn.Module):
    """Max pool that returns ``(pooled, mask)``, the mask marking each window's first maximum.

    ``mask`` is bool, ``N x C*kh*kw x Ho x Wo`` at the *pooled* resolution: channel
    ``c * kh*kw + i * kw + j`` says "window position (i, j) of plane c held the first maximum"
    (pixel-shuffle order, so :class:`MaskedMaxUnpool2d` scatters with one ``DepthToSpace``).
    """

    def __init__(self, kernel_size: tuple[int, int], ceil_mode: bool) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.ceil_mode = ceil_mode

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kh, kw = self.kernel_size
        h, w = x.shape[-2], x.shape[-1]
        if self.ceil_mode:
            ho, wo = (h + kh - 1) // kh, (w + kw - 1) // kw
        else:
            ho, wo = h // kh, w // kw
        low = _lowest(x)
        parts = []
        for i in range(kh):
            for j in range(kw):
                part = x[:, :, i: ho * kh: kh, j: wo * kw: kw]
                if self.ceil_mode:  # the last window's missing rows/columns: a floor that never wins
                    part = F.pad(part, (0, wo - part.shape[-1], 0, ho - part.shape[-2]), value=low)
                parts.append(part)
        return first_max(parts, ho, wo)


class MaskedMaxUnpool2d(nn.Module):
    """Inverse of :class:`MaskedMaxPool2d`: each value lands where its window's first maximum was."""

    def __init__(self, kernel_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size  # None: square, read from the mask's channel count

    def forward(self, x: torch.Tensor, mask: torch.Tensor, output_size=None) -> torch.Tensor:
        n, c, ho, wo = x.shape
        if self.kernel_size is None:
            kh = kw = math.isqrt(mask.shape[1] // c)
        else:
            kh, kw = self.kernel_size
        spread = torch.where(mask.reshape(n, c, kh * kw, ho, wo), x.unsqueeze(2),
                             torch.zeros((), dtype=x.dtype, device=x.device))
        if kh == kw:  # one DepthToSpace: TensorRT's native pixel shuffle, no 6-D tensor
            out = F.pixel_shuffle(spread.reshape(n, c * kh * kw, ho, wo), kh)
        else:
            out = spread.reshape(n, c, kh, kw, ho, wo).permute(0, 1, 4, 2, 5, 3).reshape(n, c, ho * kh, wo * kw)
        if output_size is None:
            return out
        h, w = output_size[-2], output_size[-1]
        if isinstance(h, torch.SymInt) or isinstance(w, torch.SymInt):
            # dynamic: pad first by a constant k, so the crop below is a real crop at every size (a Slice
            # that clamps, or one that keeps everything, at the traced size is traced for that parity only)
            out = F.pad(out, (0, kw, 0, kh))
        out = out[:, :, :h, :w]  # ceil mode: drop the padding rows/columns
        return F.pad(out, (0, w - out.shape[-1], 0, h - out.shape[-2]))  # floor mode: restore the dropped ones as zeros


class CeilModeMaxPool2d(nn.Module):
    """``MaxPool2d(k, k, ceil_mode=True)`` as lowest-float padding + floor-mode pooling (exact).

    PyTorch's ceil-mode output-size formula branches on whether the last window starts
    inside the input; torch.export turns that branch into parity guards on H and W and
    refuses dynamic ranges (FCN's pools). For unpadded windows with kernel == stride, padding
    the bottom/right by k - 1 with the lowest float and pooling in floor mode gives the same values with
    no branch; it exports to Pad + MaxPool, both TensorRT layers.
    """

    def __init__(self, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        # A constant k-1 of lowest-float rows/columns: floor((H + k - 1) / k) = ceil(H / k) windows, and the
        # extra padding never forms a window of its own. Constant pads keep shape arithmetic out of
        # the graph (TensorRT bounded a modulo-based pad so loosely it asked for 68 GB on FCN-8s).
        x = F.pad(x, (0, kw - 1, 0, kh - 1), value=_lowest(x))
        return F.max_pool2d(x, self.kernel_size, self.kernel_size)


def _is_plain_window(pool: nn.MaxPool2d) -> bool:
    return (_pair(pool.kernel_size) == _pair(pool.stride or pool.kernel_size)
            and _pair(pool.padding) == (0, 0) and _pair(pool.dilation) == (1, 1))


def _geometry(module: nn.MaxPool2d | nn.MaxUnpool2d):
    from segexport.exporter.window_unpool import Geometry

    return Geometry(module.kernel_size, module.stride, module.padding, getattr(module, "dilation", 1),
                    getattr(module, "ceil_mode", False))


def _check_pool(name: str, pool: nn.MaxPool2d) -> None:
    from segexport.exporter.window_unpool import check_geometry

    check_geometry(_geometry(pool), repr(name))


def _unpool_replacement(unpool: nn.MaxUnpool2d) -> nn.Module:
    """Kernel == stride without padding: the fast path; any other window: the general rewrite."""
    from segexport.exporter.window_unpool import WindowMaxUnpool2d

    g = _geometry(unpool)
    return MaskedMaxUnpool2d(g.k) if g.k == g.s and g.p == (0, 0) else WindowMaxUnpool2d(g)


def prepare_for_export(model: nn.Module, mode: str = "mask") -> nn.Module:
    """A copy of ``model`` ready for export (the original is untouched).

    ``mode == "mask"`` swaps pool/unpool pairs for the masked rewrite; ``"native"`` keeps them
    (standard ONNX ``MaxPool`` + ``MaxUnpool``). In both modes ceil-mode pools become
    :class:`CeilModeMaxPool2d` so dynamic H/W export works. The model itself is returned
    when there is nothing to swap.
    """
    if mode not in ("mask", "native"):
        raise UserError(f"--unpool {mode!r} is not one of mask, native")
    swap_unpool = mode == "mask"
    pools = {n: m for n, m in model.named_modules() if isinstance(m, nn.MaxPool2d) and m.return_indices and swap_unpool}
    unpools = {n: m for n, m in model.named_modules() if isinstance(m, nn.MaxUnpool2d) and swap_unpool}
    ceil_pools = {n: m for n, m in model.named_modules() if isinstance(m, nn.MaxPool2d) and not m.return_indices
                  and m.ceil_mode and _is_plain_window(m)}
    if not (pools or unpools or ceil_pools):
        return model
    for name, pool in pools.items():
        _check_pool(name, pool)
    prepared = copy.deepcopy(model)
    for name, module in list(prepared.named_modules()):
        if name in pools:
            if _is_plain_window(module):
                replacement: nn.Module = MaskedMaxPool2d(_pair(module.kernel_size), module.ceil_mode)
            else:  # overlapping, padded or dilated windows (segexport.exporter.window_unpool)
                from segexport.exporter.window_unpool import WindowMaxPool2d

                replacement = WindowMaxPool2d(_geometry(module))
        elif name in unpools:
            replacement = _unpool_replacement(module)
        elif name in ceil_pools:
            replacement = CeilModeMaxPool2d(_pair(module.kernel_size))
        else:
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = prepared.get_submodule(parent_name) if parent_name else prepared
        setattr(parent, attr, replacement)
    return prepared.eval()


def native_translation_table() -> dict:
    """Custom ONNX translation for ``--unpool native``: ``aten.max_unpool2d`` -> ONNX ``MaxUnpool``.

    torch's exporter lowers unpooling to scatter ops; runtimes that implement ``MaxUnpool``
    (ONNX Runtime, OpenVINO) want the real op. Two mismatches are bridged here: PyTorch's
    indices count positions within each N, C plane while ONNX's count over the whole tensor
    (so each plane gets an offset of (n * C + c) * H * W), and ``aten.max_unpool2d`` carries
    no kernel size, so the output shape is passed explicitly with a unit kernel (whose implied
    default shape never exceeds it).
    """
    from onnxscript import opset18 as op
    import torch

    def max_unpool2d(self, indices, output_size):
        shape = op.Shape(self)
        nc = op.Slice(shape, [0], [2])
        hw = op.Concat(*[op.Reshape(s, [1]) for s in output_size], axis=0)
        plane = op.ReduceProd(hw, keepdims=1)
        planes = op.Squeeze(op.ReduceProd(nc, keepdims=1))
        offsets = op.Mul(op.Range(op.Constant(value_int=0), planes, op.Constant(value_int=1)), plane)
        offsets = op.Reshape(offsets, op.Concat(nc, op.Constant(value_ints=[1, 1]), axis=0))
        flat = op.Add(op.Cast(indices, to=7), offsets)  # 7 = INT64
        return op.MaxUnpool(self, flat, op.Concat(nc, hw, axis=0), kernel_shape=[1, 1], strides=[1, 1])

    return {torch.ops.aten.max_unpool2d.default: max_unpool2d}
