"""The model zoo registry, in the spirit of torchvision's builders, importable without torch.

Every zoo name is declared once in :mod:`segexport.models.zoo` with what later steps need to
know about it *without building it* (:class:`~segexport.models.spec.ModelSpec`: the paper, the
default input size, the preprocessing contract, the class names, the output stride and the
minimum input size), and a lazy :class:`~segexport.models.spec.Builder` for its network. So
``segexport models``, ``onnx --model``, ``parity``, ``bench`` and ``predict`` answer a wrong name
or ``--width`` in well under a second, before torch is imported; the family module is imported
only by :func:`build_model` (or a spec's ``factory``).

Every factory has the signature ``factory(num_classes: int = 21, width: float = 1.0,
**kwargs) -> nn.Module`` so the CLI, the tests and user models share one calling
convention. ``width`` scales every channel count so tests run the *real* architecture
at a fraction of its size instead of a toy stand-in.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from segexport.errors import UserError
from segexport.models.spec import ModelSpec
from segexport.models.zoo import ZOO

if TYPE_CHECKING:  # torch is heavy; keep `segexport --help` and name checks instant
    from torch import nn

ZOO_NUM_CLASSES = 21  # PASCAL VOC, what the zoo's papers train on; user factories keep their own default

_REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in ZOO}
if len(_REGISTRY) != len(ZOO):  # a duplicate name is a programming error
    raise ValueError("a zoo name is declared twice in segexport/models/zoo.py")


def list_models() -> list[ModelSpec]:
    """All zoo specs in the catalogue's order: the papers' chronology of ideas, as ARCHITECTURES.md presents them."""
    return list(_REGISTRY.values())


def get_spec(name: str) -> ModelSpec:
    """The spec of a zoo name; an unknown name suggests the closest ones."""
    key = name.strip().lower().replace("_", "-")
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, _REGISTRY, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "run `segexport models` to list them"
    raise UserError(
        f"unknown model {name!r}: {hint} (or pass your own as package.module:factory)"
    )


def is_zoo_name(name: str) -> bool:
    """True for a zoo name, False for a ``module:factory`` reference."""
    return ":" not in name


UNTRAINED = "random initialisation (no --weights)"


def is_untrained(model: str, weights_sha256: str | None) -> bool:
    """A zoo model built or exported without --weights: the graph and every export check are real,
    its labels are noise. A user factory may load its own weights, so only the zoo is known untrained."""
    return is_zoo_name(model) and weights_sha256 is None


def check_build_args(num_classes: int, width: float) -> None:
    from segexport.core.limits import MAX_NUM_CLASSES

    if num_classes < 1:
        raise UserError(f"--num-classes must be >= 1, got {num_classes}")
    if num_classes > MAX_NUM_CLASSES:  # a 10^8-class head allocates for minutes, then the kernel kills it
        raise UserError(f"--num-classes {num_classes} is too many: at most {MAX_NUM_CLASSES}")
    if not 0 < width <= 4:
        raise UserError(f"--width must be in (0, 4], got {width}")


def check_model_request(ref: str | None, num_classes: int | None, width: float) -> None:
    """Refuse what can be refused without building: a zoo name that does not exist, ``--width`` or
    ``--num-classes`` out of range (``ref=None``: no model named, the flags alone). Imports no torch,
    so every command that takes ``--model`` calls it before its heavy imports and a typo costs a
    fraction of a second, not the torch import."""
    check_build_args(ZOO_NUM_CLASSES if num_classes is None else num_classes, width)
    if ref is not None and is_zoo_name(ref):
        get_spec(ref)


def build_model(name: str, num_classes: int = 21, width: float = 1.0, **kwargs) -> "nn.Module":
    """Build a zoo model in eval mode."""
    check_build_args(num_classes, width)
    spec = get_spec(name)
    model = spec.factory(num_classes=num_classes, width=width, **kwargs)
    return model.eval()
