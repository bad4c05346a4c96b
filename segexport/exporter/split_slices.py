"""``torch.split`` / ``torch.chunk`` into Python lists, traced as slices while an export traces.

Why: torch.onnx lowers ``aten.split`` / ``aten.split_with_sizes`` / ``aten.chunk`` (a list of
tensors) to ``SplitToSequence`` + ``SequenceAt``; TensorRT has no sequences, so every attention
block that splits its ``qkv`` projection (Hugging Face MobileViTV2: 78 such nodes) failed lint.
When the split sizes are known at trace time (the usual case: channel splits), each piece is a
``Slice`` of the input along the axis -- the same elements, copied, so exact -- and TensorRT runs
Slice natively. Sections that are sizes of a dynamic input (``[h, w]``) are pieces too; a split
into pieces of a fixed size along a dynamic axis (their number depends on H or W) keeps PyTorch's
own lowering.

Applied by swapping ``torch.split``, ``torch.chunk`` and the ``Tensor`` methods of the same names
during the trace, and restoring them after.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def _pieces(x: torch.Tensor, sizes: list[int], dim: int) -> tuple[torch.Tensor, ...]:
    out, start = [], 0
    for size in sizes:
        out.append(x.narrow(dim, start, size))
        start += size
    return tuple(out)


def _length(x: torch.Tensor, dim: int):
    n = x.shape[dim]
    return n if isinstance(n, int) else None


def split_sizes(x: torch.Tensor, split_size_or_sections, dim: int = 0) -> list | None:
    """PyTorch's piece sizes for ``split``, or None when they are not plain numbers.

    Sections given as sizes of the input (coordinate attention: ``torch.split(y, [h, w], dim=2)``
    with ``h, w = x.shape[2:]`` of a dynamic export) are pieces too: their number is fixed, each
    ``narrow`` keeps its symbolic bounds, and eager PyTorch (what verification runs) still
    refuses sections that do not add up."""
    if not isinstance(split_size_or_sections, int):
        sections = list(split_size_or_sections)
        if any(isinstance(s, torch.SymInt) for s in sections) and all(isinstance(s, (int, torch.SymInt))
                                                                      for s in sections):
            return sections
    n = _length(x, dim)
    if n is None:
        return None
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        if step <= 0:
            return None
        return [min(step, n - s) for s in range(0, n, step)] or [0]
    sections = list(split_size_or_sections)
    if not all(isinstance(s, int) for s in sections) or sum(sections) != n:
        return None
    return sections


def chunk_sizes(x: torch.Tensor, chunks: int, dim: int = 0) -> list[int] | None:
    """PyTorch's piece sizes for ``chunk`` (ceil(n / chunks) each, fewer pieces when they run out)."""
    n = _length(x, dim)
    if n is None or not isinstance(chunks, int) or chunks <= 0:
        return None
    step = -(-n // chunks) if n else 1
    return [min(step, n - s) for s in range(0, n, step)] or [0]


@contextlib.contextmanager
def splits_as_slices() -> Iterator[None]:
    """While active, splits and chunks with static sizes trace into one Slice per piece."""
    split_fn, chunk_fn = torch.split, torch.chunk
    split_method, chunk_method = torch.Tensor.split, torch.Tensor.chunk

    def split(tensor, split_size_or_sections, dim=0):
        sizes = split_sizes(tensor, split_size_or_sections, dim)
        return split_fn(tensor, split_size_or_sections, dim) if sizes is None else _pieces(tensor, sizes, dim)

    def chunk(input, chunks, dim=0):
        sizes = chunk_sizes(input, chunks, dim)
        return chunk_fn(input, chunks, dim) if sizes is None else _pieces(input, sizes, dim)

    def split_m(self, split_size, dim=0):
        sizes = split_sizes(self, split_size, dim)
        return split_method(self, split_size, dim) if sizes is None else _pieces(self, sizes, dim)

    def chunk_m(self, chunks, dim=0):
        sizes = chunk_sizes(self, chunks, dim)
        return chunk_method(self, chunks, dim) if sizes is None else _pieces(self, sizes, dim)

    torch.split, torch.chunk = split, chunk  # type: ignore[assignment]
    torch.Tensor.split, torch.Tensor.chunk = split_m, chunk_m  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        torch.split, torch.chunk = split_fn, chunk_fn  # type: ignore[assignment]
        torch.Tensor.split, torch.Tensor.chunk = split_method, chunk_method  # type: ignore[method-assign]
