"""Bilinear upsampling policy for TensorRT.

``F.interpolate`` / ``nn.Upsample`` in modes ``nearest`` and ``bilinear`` (``align_corners``
True or False, by ``size`` or ``scale_factor``) export to ONNX ``Resize`` with the matching
``coordinate_transformation_mode`` (``align_corners`` / ``half_pixel``; the dynamo exporter
computes ``sizes`` from the runtime shape, so dynamic H/W follow the input), all of which
TensorRT's Resize layer implements. Antialiased resizing and bicubic interpolation do not
map onto TensorRT exactly (no antialias; cubic uses a different kernel coefficient and edge
rule), so when they resize anything computed from the input they are refused *before* export,
naming the module, instead of surfacing as a silent accuracy loss on the GPU. When they resize
a constant (a position embedding: a parameter, nothing of the input) the result is computed
here and folded into the export (:mod:`segexport.exporter.constant_resize`).

The check runs the model once under a ``TorchFunctionMode`` that sees every torch call: it
follows which tensors derive from the input (any call with such a tensor among its arguments
makes its results derive from it too) and every ``F.interpolate``; module names come from
:func:`segexport.exporter.scopes.module_stack`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakTensorKeyDictionary

from segexport.errors import UserError
from segexport.exporter.constant_resize import Fold, call_key, describe, interpolate_arguments, is_unsafe


class _InterpolationSpy(TorchFunctionMode):
    def __init__(self, stack: list[str], example: torch.Tensor) -> None:
        super().__init__()
        self.stack = stack
        self.problems: list[str] = []
        self.folds: list[Fold] = []
        self.from_input = WeakTensorKeyDictionary()
        self.from_input[example] = True

    def _derives_from_input(self, *values: Any) -> bool:
        leaves, _ = tree_flatten(values)
        return any(isinstance(v, torch.Tensor) and v in self.from_input for v in leaves)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tainted = self._derives_from_input(args, kwargs)
        if func is torch.nn.functional.interpolate:
            arguments = interpolate_arguments(args, kwargs)
            if is_unsafe(arguments):
                where = self.stack[-1] if self.stack else "<model>"
                if not tainted:  # a constant resized: PyTorch's own result goes into the export
                    value = func(*args, **kwargs)
                    self.folds.append(Fold(where, call_key(arguments), describe(arguments), value.detach().clone()))
                    return value
                if arguments["antialias"]:
                    self.problems.append(f"{where}: {describe(arguments)} has no TensorRT equivalent; "
                                         "use antialias=False")
                else:
                    self.problems.append(f"{where}: {describe(arguments)} does not match TensorRT's Resize exactly; "
                                         "use mode='bilinear'")
        result = func(*args, **kwargs)
        if tainted:
            written = [kwargs.get("out")]  # in-place writes (x[i] = y, x.add_(y), out=) taint their target
            if args and (getattr(func, "__name__", "").endswith("_") or func is torch.Tensor.__setitem__):
                written.append(args[0])
            for leaf in tree_flatten((result, written))[0]:
                if isinstance(leaf, torch.Tensor):
                    self.from_input[leaf] = True
        return result


def find_unsafe_interpolation(model: nn.Module, example: torch.Tensor) -> tuple[list[str], list[Fold], Any]:
    """One message per interpolation call TensorRT cannot reproduce, with the calling module; the
    resizes of constants to fold; and the model's output, so the caller can check it without a
    second forward."""
    from segexport.exporter.scopes import module_stack

    with module_stack(model) as stack:
        spy = _InterpolationSpy(stack, example)
        with spy, torch.no_grad():
            output = model(example)
    return spy.problems, spy.folds, output


def check_interpolation(model: nn.Module, example: torch.Tensor) -> tuple[Any, list[Fold]]:
    """Raise a one-line UserError for the first unsafe interpolation of something computed from the
    input; return the model's output and the resizes of constants to fold."""
    problems, folds, output = find_unsafe_interpolation(model, example)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"not TensorRT-safe: {problems[0]}{more}")
    return output, folds
