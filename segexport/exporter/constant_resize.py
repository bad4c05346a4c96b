"""Antialiased or bicubic resizes of *constants* (a position embedding), folded at export time.

Why: a ViT encoder run at a size other than its pretraining grid resizes its position embedding
(an ``nn.Parameter``) with ``F.interpolate(pos, size=grid, mode="bicubic", antialias=True)``
(timm's ``resample_abs_pos_embed``, which segmentation_models_pytorch's DPT uses). TensorRT's
Resize has neither antialiasing nor PyTorch's cubic kernel, so such a call is refused when it
resizes features. But the input here depends on the weights only, and at a static export size
so does the size: the result is a constant. PyTorch computes it once, in the interpolation check
before export (:mod:`segexport.exporter.resize`), and the trace uses that very tensor, which
torch.export lifts into an initializer -- exact, since it is PyTorch's own result.

Matching: the check and the trace run the same Python code at the same static size, so the k-th
such call of the check is the k-th of each traced forward pass (counted from the root module's
entry); its input shape and resize arguments must agree too, or the export is refused. Where
the size follows a dynamic input (``--dynamic hw``) the result is not a constant: refused in one
line naming the module, with the two ways out.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from segexport.errors import UserError
from segexport.exporter.scopes import name_of, user_names

SAFE_MODES = ("nearest", "bilinear", "linear")
_SIGNATURE = inspect.signature(F.interpolate)


def interpolate_arguments(args: tuple, kwargs: dict) -> dict[str, Any]:
    """``F.interpolate``'s arguments by name, defaults filled in, however the call wrote them."""
    bound = _SIGNATURE.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def is_unsafe(arguments: dict[str, Any]) -> bool:
    """A resize TensorRT cannot reproduce: antialiased, or a mode other than nearest/(bi)linear."""
    return bool(arguments["antialias"]) or arguments["mode"] not in SAFE_MODES


def describe(arguments: dict[str, Any]) -> str:
    return f"interpolate(mode={arguments['mode']!r}{', antialias=True' if arguments['antialias'] else ''})"


def _plain(value: Any) -> Any:
    """Sizes as hashable plain values; SymInts stay SymInts (callers test for them)."""
    if isinstance(value, (list, tuple, torch.Size)):
        return tuple(_plain(v) for v in value)
    return value


def call_key(arguments: dict[str, Any]) -> tuple:
    """What must agree between the check's call and the traced one for the fold to hold."""
    return (tuple(arguments["input"].shape), _plain(arguments["size"]), _plain(arguments["scale_factor"]),
            arguments["mode"], arguments["align_corners"], arguments["recompute_scale_factor"],
            bool(arguments["antialias"]))


def _symbolic(key: tuple) -> bool:
    def walk(v: Any) -> bool:
        if isinstance(v, tuple):
            return any(walk(x) for x in v)
        return isinstance(v, (torch.SymInt, torch.SymFloat))
    return walk(key)


@dataclass
class Fold:
    """One resize of a constant, as the check computed it."""

    module: str  # the calling module, in the user's names
    key: tuple
    what: str  # e.g. interpolate(mode='bicubic', antialias=True)
    value: torch.Tensor


def _calling_module(names: dict[int, str]) -> str:
    """The innermost module of the traced model on the Python stack (the record's name is the
    user's own; this is the fallback when the check saw no such call)."""
    frame: Any = sys._getframe(2)
    while frame is not None:
        owner = frame.f_locals.get("self")
        name = name_of(names, owner) if owner is not None else None
        if name is not None:
            return name
        frame = frame.f_back
    return "<model>"


@contextlib.contextmanager
def folded_constant_resizes(model: torch.nn.Module, folds: list[Fold]) -> Iterator[None]:
    """While active, the k-th unsafe ``F.interpolate`` of each forward pass of ``model`` returns
    the k-th fold's tensor. One whose sizes are symbolic, or that no fold matches, is traced as
    it is and refused when the block ends: raised inside the trace, torch would wrap it and log
    its own error line first."""
    original = F.interpolate
    names = user_names(model)
    count = [0]
    refusals: list[str] = []

    def restart(_module, _args) -> None:
        count[0] = 0

    def interpolate(*args, **kwargs):
        arguments = interpolate_arguments(args, kwargs)
        if not is_unsafe(arguments):
            return original(*args, **kwargs)
        index, count[0] = count[0], count[0] + 1
        fold = folds[index] if index < len(folds) else None
        key = call_key(arguments)
        where = fold.module if fold is not None else _calling_module(names)
        if _symbolic(key):
            refusals.append(
                f"--dynamic: module {where!r} resizes a constant (a position embedding or other parameter) with "
                f"{describe(arguments)} to a size that follows the input, and TensorRT's Resize has no such mode: "
                "export without --dynamic (the resize is then folded into a constant), or resize it in the "
                "model with mode='bilinear', antialias=False")
        elif fold is None or fold.key != key:
            refusals.append(f"not TensorRT-safe: module {where!r} calls {describe(arguments)} differently when "
                            "traced than when run, so its result cannot be folded: use mode='bilinear', "
                            "antialias=False")
        else:
            return fold.value
        return original(*args, **kwargs)

    handle = model.register_forward_pre_hook(restart)
    F.interpolate = interpolate  # type: ignore[assignment]
    try:
        yield
    except Exception as exc:
        if refusals:
            raise UserError(refusals[0]) from exc
        raise
    finally:
        F.interpolate = original  # type: ignore[assignment]
        handle.remove()
    if refusals:
        raise UserError(refusals[0])
