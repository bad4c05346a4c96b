"""Non-overlapping ``F.unfold`` / ``F.fold`` traced as Reshape + Transpose while an export traces.

Why: torch.onnx lowers ``F.fold`` to ONNX ``Col2Im``, which TensorRT's ONNX parser does not
parse, and ``F.unfold`` to a gather of windows; Hugging Face MobileViTV2 goes between a feature
map and its patches with both (kernel == stride), so every one of its attention stages failed
lint. When the windows do not overlap (``stride == kernel_size``, ``padding == 0``,
``dilation == 1``) each input element lands in exactly one patch slot, so unfold is a crop to
whole patches, a reshape and a transpose, and fold is the inverse transpose and reshape plus the
zero margin PyTorch leaves where no patch reaches: the same elements, moved, so exact. The block
counts (``H // kh``, ``W // kw``) are integer expressions, so the rewrite follows a dynamic H and W.

Overlapping, padded or dilated windows (fold then sums overlaps) keep PyTorch's own lowering;
lint names a Col2Im that is left, with its module.

Applied by swapping ``torch.nn.functional.fold`` / ``unfold`` (which ``nn.Fold`` / ``nn.Unfold``
call) during the trace, and restoring them after.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F


def _pair(v) -> tuple:
    return (v, v) if isinstance(v, int) else tuple(v)


def non_overlapping(kernel_size, dilation=1, padding=0, stride=1) -> tuple[int, int] | None:
    """The kernel ``(kh, kw)`` when the windows tile without overlap, gaps, padding or dilation."""
    try:
        k, d, p, s = _pair(kernel_size), _pair(dilation), _pair(padding), _pair(stride)
    except TypeError:
        return None
    if not all(len(t) == 2 and all(isinstance(v, int) for v in t) for t in (k, d, p, s)):
        return None
    if d != (1, 1) or p != (0, 0) or s != k or min(k) < 1:
        return None
    return k  # type: ignore[return-value]


def unfold_patches(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """``F.unfold(x, (kh, kw), stride=(kh, kw))`` as a crop, a reshape and a transpose."""
    batched = x.dim() == 4
    if not batched:
        x = x.unsqueeze(0)
    n, c, h, w = x.shape
    bh, bw = h // kh, w // kw
    x = x[:, :, : bh * kh, : bw * kw]  # PyTorch drops the rows and columns no whole window covers
    out = x.reshape(n, c, bh, kh, bw, kw).permute(0, 1, 3, 5, 2, 4).reshape(n, c * kh * kw, bh * bw)
    return out if batched else out.squeeze(0)


def fold_patches(x: torch.Tensor, output_size, kh: int, kw: int) -> torch.Tensor:
    """``F.fold(x, output_size, (kh, kw), stride=(kh, kw))`` as a reshape, a transpose and a zero pad."""
    batched = x.dim() == 3
    if not batched:
        x = x.unsqueeze(0)
    oh, ow = _pair(output_size)
    n, ckk = x.shape[0], x.shape[1]
    bh, bw = oh // kh, ow // kw
    c = ckk // (kh * kw)
    out = x.reshape(n, c, kh, kw, bh, bw).permute(0, 1, 4, 2, 5, 3).reshape(n, c, bh * kh, bw * kw)
    pad_h, pad_w = oh - bh * kh, ow - bw * kw
    if not (isinstance(pad_h, int) and isinstance(pad_w, int) and pad_h == 0 and pad_w == 0):
        out = F.pad(out, (0, pad_w, 0, pad_h))  # where no window reaches, fold leaves zeros
    return out if batched else out.squeeze(0)


def _checkable(x: torch.Tensor, dims: tuple[int, ...]) -> bool:
    return x.dim() in dims


@contextlib.contextmanager
def patch_folds_as_reshapes() -> Iterator[None]:
    """While active, non-overlapping fold / unfold trace into Reshape + Transpose (no Col2Im)."""
    fold_fn, unfold_fn = F.fold, F.unfold

    def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
        k = non_overlapping(kernel_size, dilation, padding, stride)
        if k is None or not isinstance(input, torch.Tensor) or not _checkable(input, (3, 4)):
            return unfold_fn(input, kernel_size, dilation, padding, stride)
        return unfold_patches(input, *k)

    def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
        k = non_overlapping(kernel_size, dilation, padding, stride)
        if k is None or not isinstance(input, torch.Tensor) or not _checkable(input, (2, 3)):
            return fold_fn(input, output_size, kernel_size, dilation, padding, stride)
        ckk, blocks = input.shape[-2], input.shape[-1]
        oh, ow = _pair(output_size)
        static = all(isinstance(v, int) for v in (ckk, blocks, oh, ow))
        if static and (ckk % (k[0] * k[1]) or blocks != (oh // k[0]) * (ow // k[1])):
            return fold_fn(input, output_size, kernel_size, dilation, padding, stride)  # PyTorch's own error
        return fold_patches(input, output_size, *k)

    F.fold, F.unfold = fold, unfold  # type: ignore[assignment]
    try:
        yield
    finally:
        F.fold, F.unfold = fold_fn, unfold_fn  # type: ignore[assignment]
