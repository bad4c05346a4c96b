"""``F.max_pool2d(..., return_indices=True)`` + ``F.max_unpool2d``, rewritten while an export traces.

Why: :func:`segexport.exporter.unpool.prepare_for_export` swaps ``nn.MaxPool2d`` /
``nn.MaxUnpool2d`` modules, but many ports call the functions (ENet and SegNet ports,
``F.max_pool2d(x, 2, 2, return_indices=True)`` in a forward); those reached the graph as
``MaxPool`` with an ``Indices`` output and a scatter, which TensorRT does not parse, and only lint
said so. Swapping the functions of ``torch.nn.functional`` during the trace (as
:mod:`segexport.exporter.adaptive_pool` does for adaptive pooling) reaches every call that looks
them up at run time, modules included, so the same mask rewrite applies however the pair is
written: kernel == stride windows take the fast path of :mod:`segexport.exporter.unpool`, any
other window :mod:`segexport.exporter.window_unpool`.

The "indices" a rewritten pool returns are the bool one-hot mask, so the unpool that receives
them recognises them by dtype (real indices are int64 and go to PyTorch's own unpool). A model
that does anything with indices other than unpool (a gather, arithmetic) is not rewritable this
way; the trace then fails naming the op. A model that imported the functions under its own name
before export (``from torch.nn.functional import max_pool2d``) is not reached: lint then names the
``MaxPool`` with two outputs.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F

from segexport.exporter.window_unpool import Geometry, WindowMaxPool2d, WindowMaxUnpool2d, check_geometry


def _plain(g: Geometry) -> bool:
    return g.k == g.s and g.p == (0, 0) and g.d == (1, 1)


def masked_pool(x: torch.Tensor, g: Geometry):
    """``(pooled, mask)`` for one pool, by the fast path when its windows do not overlap."""
    from segexport.exporter.unpool import MaskedMaxPool2d

    check_geometry(g, "F.max_pool2d")
    return MaskedMaxPool2d(g.k, g.ceil_mode)(x) if _plain(g) else WindowMaxPool2d(g)(x)


def masked_unpool(x: torch.Tensor, mask: torch.Tensor, g: Geometry, output_size=None) -> torch.Tensor:
    from segexport.exporter.unpool import MaskedMaxUnpool2d

    return MaskedMaxUnpool2d(g.k)(x, mask, output_size) if _plain(g) else WindowMaxUnpool2d(g)(x, mask, output_size)


@contextlib.contextmanager
def functional_unpooling() -> Iterator[None]:
    """While active, functional max pooling with indices and unpooling trace into the mask rewrite."""
    pool, pool_indices, unpool = F.max_pool2d, F.max_pool2d_with_indices, F.max_unpool2d

    def max_pool2d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                                return_indices=True):
        return masked_pool(input, Geometry(kernel_size, stride, padding, dilation, ceil_mode))

    def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        if not return_indices:
            return pool(input, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode)
        return max_pool2d_with_indices(input, kernel_size, stride, padding, dilation, ceil_mode)

    def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
        if indices.dtype != torch.bool:  # real indices (a pool this context did not make)
            return unpool(input, indices, kernel_size, stride, padding, output_size)
        return masked_unpool(input, indices, Geometry(kernel_size, stride, padding), output_size)

    F.max_pool2d, F.max_pool2d_with_indices, F.max_unpool2d = max_pool2d, max_pool2d_with_indices, max_unpool2d  # type: ignore[assignment]
    try:
        yield
    finally:
        F.max_pool2d, F.max_pool2d_with_indices, F.max_unpool2d = pool, pool_indices, unpool  # type: ignore[assignment]
