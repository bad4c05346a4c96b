"""Adaptive pooling that stays right when H and W are dynamic.

Why: PyTorch lowers ``adaptive_avg_pool2d`` / ``adaptive_max_pool2d`` for export into index
gathers whose shapes come from Python branches on the input size (``in_size % out_size``, the
longest kernel). ``torch.export`` follows the branch of the traced size and freezes it, so a
dynamic export of a pyramid pooling module (PSPNet's ``AdaptiveAvgPool2d((1, 2, 3, 6))``,
UperNet's PPM) runs only at sizes that take the same branch; ONNX Runtime fails elsewhere with
"indices element out of data bounds". ONNX has no adaptive pooling op and neither has
TensorRT, so the only fix is to say the same computation in ops whose shapes follow the input.

How: PyTorch's bins along an axis of ``n`` inputs pooled to ``o`` outputs are
``[floor(i*n/o), ceil((i+1)*n/o))``. With ``n`` symbolic, each bound is an integer expression
``torch.export`` keeps, so each bin is a ``Slice`` with computed ends. The output is ``o_h``
row reductions then ``o_w`` column reductions of those slices: a bin is a rectangle, and the
mean of a rectangle is the mean of its row means (every column has the same number of rows);
the max of maxes is the max. Values agree with PyTorch's kernel to float rounding (the mean
sums in a different order; the max is exact), which export verification measures.

Scope: applied only while a dynamic-H/W export traces (static exports keep PyTorch's own
lowering, which is right at the one size they run at), by swapping the two functions of
``torch.nn.functional`` that ``nn.AdaptiveAvgPool2d`` / ``nn.AdaptiveMaxPool2d`` and model code
call, and restoring them afterwards. Swapping the function rather than the modules also covers
models that keep their pooling layers in plain Python lists (Hugging Face's UperNet), which a
module swap would miss. An axis asked as ``None`` (strip pooling, coordinate attention:
``(None, 1)``, ``(1, None)``) is kept as it is, pooled along the other axis only. Global pooling (output 1x1) is left to PyTorch: it exports as a
``ReduceMean`` over the whole map, right at every size. A model that imported the function
under its own name before export is not reached; verification at the profile's corners then
refuses the export with a one-line reason.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F


def _bins(n, o: int) -> list[tuple]:
    """PyTorch's adaptive bins of ``n`` inputs into ``o`` outputs (``n`` may be symbolic)."""
    return [((i * n) // o, ((i + 1) * n + o - 1) // o) for i in range(o)]


def _sizes(output_size) -> tuple[int | None, int | None]:
    """The asked (rows, columns); None keeps that axis as it is (``AdaptiveAvgPool2d((None, 1))``)."""
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    return (None if oh is None else int(oh)), (None if ow is None else int(ow))


def _pooled(x: torch.Tensor, output_size, reduce) -> torch.Tensor:
    """Row bins, then column bins. An axis asked as None is left alone: its bins would be one per
    input row, and their number is the symbolic size itself, which a Python loop would freeze
    (strip pooling and coordinate attention pool ``(None, 1)`` and ``(1, None)``)."""
    oh, ow = _sizes(output_size)
    rows = x if oh is None else torch.cat([reduce(x[..., s:e, :], -2) for s, e in _bins(x.shape[-2], oh)], dim=-2)
    return rows if ow is None else torch.cat([reduce(rows[..., s:e], -1) for s, e in _bins(x.shape[-1], ow)], dim=-1)


def _is_global(output_size) -> bool:
    if isinstance(output_size, int):
        return output_size == 1
    return tuple(output_size) == (1, 1)


@contextlib.contextmanager
def shape_following_adaptive_pooling() -> Iterator[None]:
    """While active, 2-D adaptive pooling traces into slices whose bounds follow H and W."""
    avg, mx = F.adaptive_avg_pool2d, F.adaptive_max_pool2d

    def adaptive_avg_pool2d(input, output_size):
        if _is_global(output_size):
            return avg(input, output_size)
        return _pooled(input, output_size, lambda t, d: t.mean(dim=d, keepdim=True))

    def adaptive_max_pool2d(input, output_size, return_indices=False):
        if return_indices or _is_global(output_size):  # indices: no model of the zoo's kind uses them
            return mx(input, output_size, return_indices)
        return _pooled(input, output_size, lambda t, d: t.amax(dim=d, keepdim=True))

    F.adaptive_avg_pool2d, F.adaptive_max_pool2d = adaptive_avg_pool2d, adaptive_max_pool2d  # type: ignore[assignment]
    try:
        yield
    finally:
        F.adaptive_avg_pool2d, F.adaptive_max_pool2d = avg, mx  # type: ignore[assignment]
