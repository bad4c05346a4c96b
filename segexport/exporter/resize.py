"""Bilinear upsampling policy for TensorRT.

``F.interpolate`` / ``nn.Upsample`` in modes ``nearest`` and ``bilinear`` (``align_corners``
True or False, by ``size`` or ``scale_factor``) export to ONNX ``Resize`` with the matching
``coordinate_transformation_mode`` (``align_corners`` / ``half_pixel``; the dynamo exporter
computes ``sizes`` from the runtime shape, so dynamic H/W follow the input), all of which
TensorRT's Resize layer implements. Antialiased resizing and bicubic interpolation do not
map onto TensorRT exactly (no antialias; cubic uses a different kernel coefficient and edge
rule), so they are refused *before* export, naming the module, instead of surfacing as a
silent accuracy loss on the GPU.

The check runs the model once under a ``TorchFunctionMode`` that sees every
``F.interpolate`` call; module names come from :func:`segexport.exporter.scopes.module_stack`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from segexport.errors import UserError

SAFE_MODES = ("nearest", "bilinear", "linear")


class _InterpolationSpy(TorchFunctionMode):
    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.problems: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.interpolate:
            mode = kwargs.get("mode", args[3] if len(args) > 3 else "nearest")
            antialias = kwargs.get("antialias", args[6] if len(args) > 6 else False)
            where = self.stack[-1] if self.stack else "<model>"
            if antialias:
                self.problems.append(f"{where}: interpolate(mode={mode!r}, antialias=True) has no TensorRT equivalent; "
                                     "use antialias=False")
            elif mode not in SAFE_MODES:
                self.problems.append(f"{where}: interpolate(mode={mode!r}) does not match TensorRT's Resize exactly; "
                                     "use mode='bilinear'")
        return func(*args, **kwargs)


def find_unsafe_interpolation(model: nn.Module, example: torch.Tensor) -> tuple[list[str], Any]:
    """One message per interpolation call TensorRT cannot reproduce, with the calling module;
    and the model's output, so the caller can check it without a second forward."""
    from segexport.exporter.scopes import module_stack

    with module_stack(model) as stack:
        spy = _InterpolationSpy(stack)
        with spy, torch.no_grad():
            output = model(example)
    return spy.problems, output


def check_interpolation(model: nn.Module, example: torch.Tensor) -> Any:
    """Raise a one-line UserError for the first unsafe interpolation; return the model's output."""
    problems, output = find_unsafe_interpolation(model, example)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"not TensorRT-safe: {problems[0]}{more}")
    return output
