"""Tensors built from sizes, kept symbolic while a ``--dynamic hw`` export traces.

Why: flow-alignment decoders (SFNet's FAM, AlignSeg) build a sampling grid from the map's size:
``norm = torch.tensor([[[[w, h]]]])`` and ``torch.linspace(-1.0, 1.0, h)``. Under ``torch.export``
both specialise the size to the traced number (``torch.tensor`` reads a ``SymInt`` as a Python
int; ``linspace`` takes its ``steps`` as one), so the export was refused ("module 'fam' fixes
height to 64"), although the same arithmetic on tensors follows the input.

How, per call, only when an argument is a symbolic size (every other call is the original):

- ``torch.tensor(data)`` with ``SymInt``/``SymFloat`` leaves: each leaf becomes a 0-d tensor
  ``ones(()) * size`` and the nesting is rebuilt with ``torch.stack``, with the dtype
  ``torch.tensor`` itself would infer (int64 for ints, the default float dtype once any leaf is a
  float) unless one is given. The values are the same numbers.
- ``torch.linspace(start, end, steps)`` with a symbolic ``steps``: ATen's own formula,
  ``start + i * step`` for the first half and ``end - (steps - 1 - i) * step`` for the second
  with ``step = (end - start) / (steps - 1)``, over ``arange(steps)``, in the same dtype: the
  points agree with PyTorch's kernel to one float32 ulp (exact at 2, 3 and 17 points, 6e-8 off at
  64 and 101: tests/exporter/test_size_tensors.py), far inside what verification allows.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

_SYMBOLIC = (torch.SymInt, torch.SymFloat)


def _any_leaf(data: Any, kinds: tuple[type, ...]) -> bool:
    """Whether some leaf of the nested lists/tuples ``data`` is one of ``kinds``."""
    if isinstance(data, (list, tuple)):
        return any(_any_leaf(d, kinds) for d in data)
    return isinstance(data, kinds)


def _stacked(data: Any, dtype: torch.dtype, device) -> torch.Tensor:
    if isinstance(data, (list, tuple)):
        return torch.stack([_stacked(d, dtype, device) for d in data])
    return torch.ones((), dtype=dtype, device=device) * data


def _linspace(start: float, end: float, steps, dtype: torch.dtype, device) -> torch.Tensor:
    i = torch.arange(steps, device=device).to(dtype)
    step = (end - start) / (steps - 1)
    return torch.where(i < steps // 2, start + i * step, end - (steps - 1 - i) * step)


@contextlib.contextmanager
def tensors_of_sizes() -> Iterator[None]:
    """While active, ``torch.tensor`` and ``torch.linspace`` of symbolic sizes keep them symbolic."""
    tensor_fn, linspace_fn = torch.tensor, torch.linspace

    def tensor(data, *args, dtype=None, device=None, requires_grad=False, **kwargs):
        if args or kwargs or requires_grad or not _any_leaf(data, _SYMBOLIC):
            return tensor_fn(data, *args, dtype=dtype, device=device, requires_grad=requires_grad, **kwargs)
        inferred = torch.get_default_dtype() if _any_leaf(data, (float, torch.SymFloat)) else torch.int64
        return _stacked(data, dtype or inferred, device)

    def linspace(start, end, steps, *args, dtype=None, device=None, **kwargs):
        if args or kwargs or not isinstance(steps, torch.SymInt) or isinstance(start, torch.Tensor) \
                or isinstance(end, torch.Tensor):
            return linspace_fn(start, end, steps, *args, dtype=dtype, device=device, **kwargs)
        return _linspace(float(start), float(end), steps, dtype or torch.get_default_dtype(), device)

    torch.tensor, torch.linspace = tensor, linspace  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.tensor, torch.linspace = tensor_fn, linspace_fn  # type: ignore[assignment]
