"""The forward contract every model segexport ships must keep.

A segmentation network here takes a float ``N x 3 x H x W`` image batch and returns one
tensor of logits ``N x num_classes x H x W`` at the input size. Every later step relies on
it: the ``--argmax`` head, parity against labels, calibration accuracy, the class names in
the ONNX metadata. Zoo models keep it by construction (their tests prove it); a user
factory may not, and without this check the mistake surfaces far away as an ONNX Runtime
shape error or a traceback in the parity metrics. So the first forward of a user model is
checked here and each breach becomes one line that says what to change in the model.
"""

from __future__ import annotations

from typing import Any

import torch

from segexport.errors import UserError, exception_line


def forward_error(name: str, example: torch.Tensor, exc: BaseException) -> UserError:
    """A model's own forward failed on the image batch segexport feeds it."""
    return UserError(
        f"{name} failed on a {_shape(example)} float image batch ({exception_line(exc)}): "
        "segexport feeds N x 3 x H x W RGB tensors; make the model's forward take that"
    )


def check_segmentation_output(name: str, example: torch.Tensor, output: Any, num_classes: int) -> None:
    """Refuse an output that is not ``N x num_classes x H x W`` logits at the input size."""
    if not isinstance(output, torch.Tensor):
        found = type(output).__name__
        if isinstance(output, dict):
            found += f" with keys {', '.join(map(str, list(output)[:4]))}"
        raise UserError(
            f"{name} returned a {found}, not one logits tensor: make forward return N x classes x H x W "
            "(for a torchvision segmentation model, wrap it so forward returns model(x)['out'])"
        )
    n, _, h, w = example.shape
    if output.dim() != 4 or output.shape[0] != n or tuple(output.shape[-2:]) != (h, w):
        fix = ("upsample inside the model, e.g. F.interpolate(logits, size=x.shape[-2:], mode='bilinear')"
               if output.dim() == 4 and output.shape[0] == n else "return the logits unflattened, one map per class")
        raise UserError(
            f"{name} returned {_shape(output)} for a {_shape(example)} input: segmentation logits must be "
            f"{n} x classes x {h} x {w}; {fix}"
        )
    if not output.is_floating_point():
        raise UserError(f"{name} returned {output.dtype} values, not float logits: return the scores before argmax "
                        "(segexport adds the argmax itself with --argmax)")
    if output.shape[1] != num_classes:
        raise UserError(
            f"{name} returned {output.shape[1]} class channels but --num-classes is {num_classes}: "
            f"pass --num-classes {output.shape[1]}"
        )


def check_forward(name: str, model: torch.nn.Module, size: tuple[int, int], num_classes: int) -> None:
    """Run ``model`` once on a 1 x 3 x H x W batch and hold it to the contract; for commands
    that do not already run a forward of their own before the real work."""
    example = torch.randn(1, 3, *size)
    try:
        with torch.no_grad():
            output = model(example)
    except Exception as exc:
        raise forward_error(name, example, exc) from exc
    check_segmentation_output(name, example, output, num_classes)


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape)
