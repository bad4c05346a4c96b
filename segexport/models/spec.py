"""What the zoo knows about a model *without building it*, and the lazy reference to its builder.

A :class:`ModelSpec` carries everything later steps need before (or instead of) building the
network: the paper, the default input size, the preprocessing contract, the class names, the
output stride and the minimum input size. Those facts travel into the ONNX metadata, so they are
declared once (``segexport/models/zoo.py`` for the zoo) and never re-derived from flags.

This module imports no torch: a wrong zoo name or ``--width`` is answered in well under a second,
and the network's own module (which does import torch) is imported by :class:`Builder` only when
the model is really built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # torch is heavy; keep name and width checks instant
    from torch import nn

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Builder:
    """A zoo factory named by its family module and function, imported on the first call.

    Only segexport's own families are named this way, in code (``zoo.py``); nothing read from a
    file becomes a Builder. Calling it has the factory convention ``(num_classes=21, width=1.0,
    **kwargs) -> nn.Module``.
    """

    module: str  # e.g. "segexport.models.unet"
    attr: str  # e.g. "build_unet"

    def resolve(self) -> Callable[..., "nn.Module"]:
        return getattr(importlib.import_module(self.module), self.attr)

    def __call__(self, *args: Any, **kwargs: Any) -> "nn.Module":
        return self.resolve()(*args, **kwargs)


@dataclass(frozen=True)
class ModelSpec:
    """What the zoo knows about one model name.

    ``paper_params`` is the parameter count the paper reports at 21 classes and full
    width (``None`` where the paper gives none); the tests hold the implementation to
    it within 2 %. ``min_size`` is the smallest H or W the network accepts; anything
    smaller is refused before PyTorch produces a cryptic shape error. ``factory`` is a
    :class:`Builder` for the zoo and the user's own callable for ``module:factory``.
    """

    name: str
    family: str
    factory: Callable[..., "nn.Module"]
    paper: str
    default_input_size: tuple[int, int]
    output_stride: int
    min_size: int
    paper_params: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    class_names: tuple[str, ...] = VOC_CLASSES
    description: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_names_for(self, num_classes: int) -> tuple[str, ...]:
        """The class names for ``num_classes``: the dataset's own when it matches (one output
        channel is binary, so it matches two names)."""
        if max(num_classes, 2) == len(self.class_names):
            return self.class_names
        if num_classes == 1:
            return ("background", "foreground")
        return tuple(f"class_{i}" for i in range(num_classes))
