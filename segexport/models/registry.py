"""The model zoo registry, in the spirit of torchvision's builders.

Each family module (``fcn.py``, ``segnet.py``, ...) registers one factory per model name
with :func:`register` when it is imported, and ``segexport/models/__init__.py`` imports
every family (torchvision's ``models/_api.py`` pattern): the registry never imports a
family, so the arrows run one way. Importing any ``segexport.models`` module runs the
package first, so the zoo is always full by the time it is listed. A :class:`ModelSpec` carries everything later steps need to know
about a model *without building it*: the paper, the default input size, the
preprocessing contract, the class names, the output stride and the minimum input size.
Those facts travel into the ONNX metadata, so they are declared once, here, and never
re-derived from command-line flags.

Every factory has the signature ``factory(num_classes: int = 21, width: float = 1.0,
**kwargs) -> nn.Module`` so the CLI, the tests and user models share one calling
convention. ``width`` scales every channel count so tests run the *real* architecture
at a fraction of its size instead of a toy stand-in.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from segexport.errors import UserError

if TYPE_CHECKING:  # torch is heavy; keep `segexport --help` instant
    from torch import nn

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """What the zoo knows about one model name.

    ``paper_params`` is the parameter count the paper reports at 21 classes and full
    width (``None`` where the paper gives none); the tests hold the implementation to
    it within 2 %. ``min_size`` is the smallest H or W the network accepts; anything
    smaller is refused before PyTorch produces a cryptic shape error.
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


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a spec to the zoo; a duplicate name is a programming error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


# Listing order: the papers' chronology of ideas, as ARCHITECTURES.md presents them.
FAMILY_ORDER = ("fcn", "deconvnet", "segnet", "unet", "fcdensenet", "deeplab", "dilatednet")


def list_models() -> list[ModelSpec]:
    """All zoo specs, family by family (registration order within a family)."""
    rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
    return sorted(_REGISTRY.values(), key=lambda s: rank.get(s.family, len(rank)))


def get_spec(name: str) -> ModelSpec:
    """The spec of a zoo name; an unknown name suggests the closest ones."""
    specs = {s.name: s for s in list_models()}
    key = name.strip().lower().replace("_", "-")
    if key in specs:
        return specs[key]
    close = difflib.get_close_matches(key, specs, n=3, cutoff=0.5)
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


def build_model(name: str, num_classes: int = 21, width: float = 1.0, **kwargs) -> "nn.Module":
    """Build a zoo model in eval mode."""
    check_build_args(num_classes, width)
    spec = get_spec(name)
    model = spec.factory(num_classes=num_classes, width=width, **kwargs)
    return model.eval()
