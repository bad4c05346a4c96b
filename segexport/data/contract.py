"""The preprocessing contract: how pixels become the network's input tensor.

Written once into the ONNX metadata at export and read back by calibration, parity and
benchmarking, so an INT8 calibration never sees differently normalised images than the
model was exported for. Never re-derive it from flags downstream.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class PreprocessContract:
    """``x = (pixel / scale - mean) / std`` in ``layout`` and ``color`` order.

    ``resize`` is how an image of another size meets ``input_size``: ``"stretch"``
    (bilinear resize to exactly H x W), the simplest policy that is identical in every
    runtime. ``input_size`` is the (H, W) the graph was exported for (the opt size when
    dynamic).
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int]
    scale: float = 255.0
    layout: str = "NCHW"
    color: str = "RGB"
    resize: str = "stretch"
    dtype: str = "float32"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "PreprocessContract":
        raw: dict[str, Any] = json.loads(text)
        for key in ("mean", "std", "input_size"):
            raw[key] = tuple(raw[key])
        return cls(**raw)


@dataclass(frozen=True)
class DynamicRange:
    """min/opt/max of one dynamic axis, kept for TensorRT optimisation profiles."""

    min: int
    opt: int
    max: int


@dataclass(frozen=True)
class ExportRecord:
    """What ``segexport onnx`` wrote into ``metadata_props`` (one JSON string a key).

    ``dynamic`` maps an input axis name (``batch``, ``height``, ``width``) to its range;
    it is empty for a static export. Later steps read this instead of flags. ``output_key``
    is data, not code: it only ever selects an entry of the model's output.
    """

    model: str
    num_classes: int
    class_names: tuple[str, ...]
    preprocess: PreprocessContract
    batch: int
    opset: int
    unpool: str
    argmax: bool
    segexport_version: str
    weights_sha256: str | None
    precision: str = "fp32"
    width: float = 1.0
    dynamic: dict[str, DynamicRange] = field(default_factory=dict)
    input_name: str = "input"
    output_name: str = "logits"
    source_onnx_sha256: str | None = None
    # How the model's own output became the logits (models.contract.OutputAdapter): the key or
    # attribute taken (torchvision "out", Hugging Face "logits"), and whether a bilinear resize to
    # the input size was appended. Parity and bench rebuild the reference with the same adapter.
    output_key: str | None = None
    upsample_logits: bool = False
    # The deployment target (segexport.core.targets) the export was made for; None in files from
    # before targets existed, read as TensorRT 10. Later steps take the TensorRT version from it.
    target: str | None = None
    # Where the checkpoint of ``weights_sha256`` was at export, relative to the working directory
    # then (never absolute: the bytes must not depend on where a checkout lives). A hint only:
    # `segexport parity` follows it when the file there still has weights_sha256, and only ever
    # opens it as a checkpoint (torch.load(weights_only=True)).
    weights_path: str | None = None

    def profile_shapes(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """(min, opt, max) NCHW shapes of the input for a TensorRT optimisation profile."""
        h, w = self.preprocess.input_size
        dims = {"batch": DynamicRange(self.batch, self.batch, self.batch),
                "height": DynamicRange(h, h, h), "width": DynamicRange(w, w, w)}
        dims.update(self.dynamic)
        shape = lambda k: (getattr(dims["batch"], k), 3, getattr(dims["height"], k), getattr(dims["width"], k))  # noqa: E731
        return {self.input_name: (shape("min"), shape("opt"), shape("max"))}
