"""Which module is running right now: a stack of qualified names kept by forward hooks.

The interpolation check and the export-failure report both need to attribute a call (an
``F.interpolate``, an aten op) to the ``nn.Module`` that made it, in the user's own names.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def module_stack(model: nn.Module) -> Iterator[list[str]]:
    """Yield a list that holds, during a forward pass, the qualified names of the active modules."""
    stack: list[str] = []

    def enter(name: str):
        def hook(_module, _args) -> None:
            stack.append(name)
        return hook

    def leave(_module, _args, _output) -> None:  # must return None, or it would replace the output
        stack.pop()

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(enter(name or type(model).__name__)))
        handles.append(module.register_forward_hook(leave))
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()
