"""Python casts and branches on sizes that freeze a dimension, said so the size stays symbolic
while a ``--dynamic hw`` export traces.

Why, per construct:

- **A tracing-aware int cast** (Hugging Face's ``torch_int``: ``x.to(int64)`` under
  ``torch.jit.trace``, ``int(x)`` otherwise). ``torch.export`` is not ``jit.trace``, so a symbolic
  size goes through ``int()``, which specialises it to the traced number: BEiT's relative
  position bias (``interpolate(size=(torch_int(2*h//16 - 1), ...))``) guards ``Eq(2*(h//16) - 1, 7)``
  and the export is frozen at 64x64; DPT's ``torch_int(sqrt(seq_len))`` reshape to the patch grid
  keeps the traced grid and ONNX Runtime fails in a Reshape elsewhere. The cast of a ``SymInt``
  is the ``SymInt`` itself (it already is an integer), and of a ``SymFloat`` is ``torch.sym_int``
  (the same truncation, kept as an expression): exact at every size.
- **Patch unfolding that resizes only when the map is not a multiple of the patch**
  (Hugging Face MobileViT's ``unfolding``: ``new = int(math.ceil(h / p) * p)`` then
  ``if new != h: interpolate(size=new)``, and ``folding`` resizes back when it did). The Python
  ``if`` takes the traced size's branch, so a trace at a multiple of the patch never resizes and
  the export is wrong at the other sizes (and ``int()`` of the ceiling freezes it anyway).
  Resizing always, to ``(h + p - 1) // p * p``, is the same computation: a bilinear
  resize (``align_corners=False``) to the map's own size samples every pixel at its own centre
  with weight 1, which is the identity bit for bit, in PyTorch and in ONNX Runtime's Resize.

- **A method memoised by** ``functools.lru_cache`` **on a size** (BEiT's
  ``generate_relative_position_index(window_size)``, cached by transformers except under
  ``torch.compile``): called with symbolic sizes, the cache keeps the traced (fake) tensor, and the
  next trace of the same export (a retry with other dimension specs) finds it: "We found a fake
  tensor in the exported program constant's list". The uncached function computes the same
  tensor, as transformers itself does under ``torch.compile``.

Applied only while a dynamic-H/W export traces: the module-level ``torch_int`` of the modules
that define the model's classes is swapped and restored, and the ``unfolding`` of each module
that has ``unfolding``, ``folding``, ``patch_height`` and ``patch_width`` (and an ``unfolding``
that calls ``ceil`` and ``interpolate``) is replaced on the instance by the same cut into patches, and an ``lru_cache``-memoised method of
a model class is its uncached function (the library itself is never edited). Static exports keep the model's own code.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F


def _module_namespaces(model) -> list[dict]:
    """The globals of the Python modules defining the model's classes (as their ``forward`` sees them)."""
    seen: dict[int, dict] = {}
    for module in model.modules():
        namespace = getattr(type(module).forward, "__globals__", None)
        if isinstance(namespace, dict) and id(namespace) not in seen:
            seen[id(namespace)] = namespace
    return list(seen.values())


def _symbolic_int_cast(original):
    def torch_int(x):
        if isinstance(x, torch.SymInt):
            return x
        if isinstance(x, torch.SymFloat):
            return torch.sym_int(x)
        return original(x)

    torch_int.__wrapped__ = original  # type: ignore[attr-defined]
    return torch_int


def _lru_cached(attr):
    """The uncached function behind a class attribute memoised by ``functools.lru_cache`` (directly, or
    inside a wrapper that falls back to the cache, as transformers' ``compile_compatible_method_lru_cache``),
    else None."""
    func = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
    inner = getattr(func, "__wrapped__", None)
    if inner is None:
        return None
    if hasattr(func, "cache_clear"):
        return inner
    cells = getattr(func, "__closure__", None) or ()
    for cell in cells:
        try:
            held = cell.cell_contents
        except ValueError:
            continue
        if hasattr(held, "cache_clear") and getattr(held, "__wrapped__", None) is inner:
            return inner
    return None


def _always_resizing(module):
    """MobileViT's ``unfolding`` said with symbolic sizes: the map resized to the next multiple of
    the patch at every size (the identity where it already is one), cut into patches as the
    library does, and ``folding`` told to resize back (the identity again where nothing changed)."""
    ph, pw = int(module.patch_height), int(module.patch_width)

    def unfolding(features):
        batch, channels, h, w = features.shape
        nh, nw = (h + ph - 1) // ph * ph, (w + pw - 1) // pw * pw
        features = F.interpolate(features, size=(nh, nw), mode="bilinear", align_corners=False)
        rows, cols = nh // ph, nw // pw
        patches = features.reshape(batch * channels * rows, ph, cols, pw).transpose(1, 2)
        patches = patches.reshape(batch, channels, rows * cols, ph * pw).transpose(1, 3)
        patches = patches.reshape(batch * ph * pw, rows * cols, -1)
        return patches, {"orig_size": (h, w), "batch_size": batch, "channels": channels, "interpolate": True,
                         "num_patches": rows * cols, "num_patches_width": cols, "num_patches_height": rows}

    return unfolding


def _unfolds_to_patches(module) -> bool:
    """A MobileViT-style layer: ``unfolding`` / ``folding`` over ``patch_height x patch_width`` patches,
    whose ``unfolding`` takes ``math.ceil`` of the size and resizes (MobileViTV2's, which calls
    ``F.unfold`` and needs no resize, is left alone)."""
    if not all(hasattr(module, a) for a in ("unfolding", "folding", "patch_height", "patch_width")):
        return False
    code = getattr(getattr(module.unfolding, "__func__", None), "__code__", None)
    names = set(getattr(code, "co_names", ()))
    return {"ceil", "interpolate"} <= names and "unfold" not in names


@contextlib.contextmanager
def symbolic_size_casts(model) -> Iterator[None]:
    """While active, ``torch_int`` of a size and MobileViT-style patch unfolding keep H and W symbolic."""
    swapped: list[tuple[dict, object]] = []
    for namespace in _module_namespaces(model):
        cast = namespace.get("torch_int")
        if callable(cast) and not hasattr(cast, "__wrapped__"):
            swapped.append((namespace, cast))
            namespace["torch_int"] = _symbolic_int_cast(cast)
    uncached: list[tuple[type, str, object]] = []
    for cls in {type(m) for m in model.modules()}:
        for name, attr in list(vars(cls).items()):
            inner = _lru_cached(attr)
            if inner is not None:
                uncached.append((cls, name, attr))
                setattr(cls, name, type(attr)(inner) if isinstance(attr, (staticmethod, classmethod)) else inner)
    wrapped = []
    for module in model.modules():
        if _unfolds_to_patches(module) and "unfolding" not in vars(module):
            module.unfolding = _always_resizing(module)
            wrapped.append(module)
    try:
        yield
    finally:
        for namespace, cast in swapped:
            namespace["torch_int"] = cast
        for module in wrapped:
            del module.unfolding
        for cls, name, attr in uncached:
            setattr(cls, name, attr)
