"""What every max-pool rewrite shares: window positions as tensors, the first maximum among them
(PyTorch's tie-break), and the padding value that never wins.

Used by the kernel == stride fast path (:mod:`segexport.exporter.unpool`) and the overlapping /
padded windows (:mod:`segexport.exporter.window_unpool`), so both break ties the same way.
"""

from __future__ import annotations

import torch

# Values this large are the pools' padding, never activations: calibration and FP16 range
# analysis skip tensors that hold them (they carry no scale and are never a layer's real input).
PADDING_MAGNITUDE = 3e38


def pair(v) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; a pair stays a pair."""
    return (v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def lowest(x: torch.Tensor) -> float:
    """Padding that never wins a max: the dtype's lowest *finite* value, not -inf.

    An infinity in the graph breaks INT8 calibration (ONNX Runtime's entropy histogram needs a
    finite range) and FP16 range analysis; a finite floor is exactly as exact for max pooling.
    """
    return float(torch.finfo(x.dtype).min)


def first_max(parts: list[torch.Tensor], ho, wo) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled max, mask) of window positions ``parts`` (each N x C x Ho x Wo, row-major window
    order). The mask, N x C*k x Ho x Wo bool, flags the *first* position equal to the max, as
    PyTorch's kernels keep the first maximum (``val > maxval`` only replaces on a strictly greater
    value): ties are common after ReLU, and this tie-break is what makes the rewrites exact."""
    top = parts[0]
    for part in parts[1:]:
        top = torch.maximum(top, part)
    flags, seen = [], None
    for part in parts:
        hit = part == top
        flags.append(hit if seen is None else hit & ~seen)
        seen = hit if seen is None else seen | hit
    mask = torch.stack(flags, dim=2)
    return top, mask.reshape(mask.shape[0], -1, ho, wo)
