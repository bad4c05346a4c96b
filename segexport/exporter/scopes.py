"""Which module is running right now: a stack of qualified names kept by forward hooks.

The interpolation check and the export-failure report both need to attribute a call (an
``F.interpolate``, an aten op) to the ``nn.Module`` that made it, in the user's own names.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


def user_names(model: nn.Module) -> dict[int, str]:
    """``id(module) -> qualified name`` in the user's own names: segexport's wrappers (the output
    adapter, the ArgMax head: classes with ``wraps_user_model = True`` holding the model as
    ``.model``) add no ``model.`` prefix, and the user's root is named by its class."""
    prefix, inner = "", model
    while getattr(type(inner), "wraps_user_model", False):
        prefix, inner = prefix + "model.", inner.model
    root = type(inner).__name__
    names: dict[int, str] = {}
    for module in model.modules():  # the wrappers themselves: the user's root
        names[id(module)] = names[id(vars(module))] = root
    for name, module in inner.named_modules():
        names[id(module)] = names[id(vars(module))] = name or root
    return names


def name_of(names: dict[int, str], module: object) -> str | None:
    """The user's name of ``module`` in a :func:`user_names` map, or None when it is not the model's.

    Why the ``__dict__`` key: torch.export's non-strict trace runs submodules through proxies
    (``_ModuleStackTracer``'s AttrProxy: another object of a made-up subclass that shares the
    module's ``__dict__``), so a global forward hook sees objects whose ids the model never had;
    MONAI's SwinUNETR traced that way was named nowhere. The shared ``__dict__`` is the module's.
    """
    found = names.get(id(module))
    if found is None:
        state = getattr(module, "__dict__", None)
        found = names.get(id(state)) if state is not None else None
    return found


@contextmanager
def module_stack(model: nn.Module) -> Iterator[list[str]]:
    """Yield a list that holds, during a forward pass, the qualified names of the active modules."""
    stack: list[str] = []
    names = user_names(model)

    def enter(name: str):
        def hook(_module, _args) -> None:
            stack.append(name)
        return hook

    def leave(_module, _args, _output) -> None:  # must return None, or it would replace the output
        stack.pop()

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(enter(names[id(module)])))
        handles.append(module.register_forward_hook(leave))
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()
