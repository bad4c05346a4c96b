"""Size-taking calls that PyTorch lowers with the traced size frozen, said with ops whose shapes
follow the input while a ``--dynamic hw`` export traces.

Why, per construct:

- **Global pooling by the input's size** (BiSeNet's attention refinement,
  ``F.avg_pool2d(x, x.size()[2:])``, also ``kernel_size=x.shape[2:]`` and the max form, the usual
  way to write global pooling before ``adaptive_avg_pool2d(1)``): ``aten.avg_pool2d`` takes its
  kernel as plain integers, so the symbolic size becomes the traced number and the graph pools a
  256x256 window at every size. A window that *is* the whole map is a mean (or max) over H and
  W: ``ReduceMean`` / ``ReduceMax``, right at every size.
- **Transposed convolutions with** ``output_size`` (ENet's upsampling bottlenecks and final full
  convolution, U-Net/FCN ports for odd sizes): ``nn.ConvTranspose2d`` turns ``output_size`` into
  an ``output_padding`` computed from the input size, and ONNX's ``ConvTranspose`` attribute
  must be a constant ("Unsupported attribute type: list"). The same values come from the
  unpadded transposed convolution (every position any input reaches), cropped by ``padding`` on
  the top/left and to the asked size on the bottom/right (zero-extended by at most ``stride - 1``
  where ``output_padding`` reaches past it), then the bias: the terms of each output are the
  same, only their summation order may differ (verification measures it).

Applied by swapping the functions of ``torch.nn.functional`` (which the modules call too) only
while a dynamic-H/W export traces, and only when the arguments are symbolic: static exports and
constant arguments keep PyTorch's own lowering.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F


def _symbolic(v) -> bool:
    return isinstance(v, torch.SymInt)


def _is_whole_map(x: torch.Tensor, kernel_size, stride, padding) -> bool:
    """The window is the input's own (symbolic) H x W, with no padding and no second window."""
    from torch.fx.experimental.symbolic_shapes import statically_known_true

    if isinstance(kernel_size, int) or len(kernel_size) != 2 or not any(_symbolic(k) for k in kernel_size):
        return False
    if padding not in (0, (0, 0), [0, 0]):
        return False
    if stride not in (None, [], ()) and tuple(stride) != tuple(kernel_size):
        return False
    return all(statically_known_true(k == n) for k, n in zip(kernel_size, x.shape[-2:]))


def _pair(v) -> tuple:
    return (v, v) if isinstance(v, (int, torch.SymInt)) else tuple(v)


@contextlib.contextmanager
def shape_following_sizes() -> Iterator[None]:
    """While active, global pooling by the input's size and ``output_size`` transposed
    convolutions trace into ops whose shapes follow H and W."""
    avg, mx, tconv = F.avg_pool2d, F.max_pool2d, F.conv_transpose2d

    def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                   divisor_override=None):
        if divisor_override is None and _is_whole_map(input, kernel_size, stride, padding):
            return input.mean(dim=(-2, -1), keepdim=True)
        return avg(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)

    def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        if not return_indices and dilation in (1, (1, 1), [1, 1]) and _is_whole_map(input, kernel_size, stride, padding):
            return input.amax(dim=(-2, -1), keepdim=True)
        return mx(input, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode, return_indices=return_indices)

    def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        extra = _pair(output_padding)
        if not any(_symbolic(e) for e in extra):
            return tconv(input, weight, bias, stride, padding, output_padding, groups, dilation)
        (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
        full = tconv(input, weight, None, (sh, sw), 0, 0, groups, (dh, dw))
        kh, kw = weight.shape[-2], weight.shape[-1]
        h = (input.shape[-2] - 1) * sh - 2 * ph + dh * (kh - 1) + 1 + extra[0]
        w = (input.shape[-1] - 1) * sw - 2 * pw + dw * (kw - 1) + 1 + extra[1]
        # PyTorch: output_padding < max(stride, dilation); one more, so the crop below is a real crop at
        # every size (a Slice that keeps everything at the traced size would hold for that size's parity only)
        full = F.pad(full, (0, max(sw, dw), 0, max(sh, dh)))
        out = full[:, :, ph: ph + h, pw: pw + w]
        return out if bias is None else out + bias.reshape(1, -1, 1, 1)

    F.avg_pool2d, F.max_pool2d, F.conv_transpose2d = avg_pool2d, max_pool2d, conv_transpose2d  # type: ignore[assignment]
    try:
        yield
    finally:
        F.avg_pool2d, F.max_pool2d, F.conv_transpose2d = avg, mx, tconv  # type: ignore[assignment]
