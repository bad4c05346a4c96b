"""Reading and writing the export record in ONNX ``metadata_props``.

Keys are namespaced (``segexport.*``) so they survive next to other tools' metadata;
values are JSON so any runtime (C++, DeepStream config generators) can read them.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import onnx

from segexport.data.contract import DynamicRange, ExportRecord, PreprocessContract
from segexport.core.onnx_io import load_onnx  # noqa: F401  (re-exported)
from segexport.errors import UserError

PREFIX = "segexport."


def write_record(model: onnx.ModelProto, record: ExportRecord) -> None:
    """Replace any previous segexport metadata with ``record``."""
    kept = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in asdict(record).items():
        prop = model.metadata_props.add()
        prop.key = PREFIX + key
        prop.value = json.dumps(value, sort_keys=True)


def read_record(model: onnx.ModelProto | str | Path) -> ExportRecord:
    """The export record of a segexport ONNX; a foreign ONNX gets an error naming the fix."""
    if not isinstance(model, onnx.ModelProto):
        model = load_onnx(model)
    props = [p for p in model.metadata_props if p.key.startswith(PREFIX)]
    if not any(p.key == PREFIX + "model" for p in props):
        raise UserError(
            "this ONNX has no segexport metadata: export it with `segexport onnx` "
            "(or pass --model/--input-size so the preprocessing is known)"
        )
    try:
        raw = {p.key[len(PREFIX):]: json.loads(p.value) for p in props}
        raw["preprocess"] = PreprocessContract(**{**raw["preprocess"],
                                                  "mean": tuple(raw["preprocess"]["mean"]),
                                                  "std": tuple(raw["preprocess"]["std"]),
                                                  "input_size": tuple(raw["preprocess"]["input_size"])})
        raw["class_names"] = tuple(raw["class_names"])
        raw["dynamic"] = {k: DynamicRange(**v) for k, v in raw.get("dynamic", {}).items()}
        known = set(ExportRecord.__dataclass_fields__)
        return ExportRecord(**{k: v for k, v in raw.items() if k in known})
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # edited by hand or by another tool
        raise UserError(f"the ONNX's segexport metadata is damaged ({type(exc).__name__}: {exc}): "
                        "re-export it with `segexport onnx`") from exc


def profile_from_onnx(onnx_model) -> dict[str, tuple[tuple[int, ...], ...]]:
    """min/opt/max input shapes: from segexport metadata, else the graph's static shape.
    ``onnx_model`` is a path or an already loaded ModelProto."""
    import onnx

    try:
        return read_record(onnx_model).profile_shapes()
    except UserError:
        pass
    model = onnx_model if isinstance(onnx_model, onnx.ModelProto) else onnx.load(str(onnx_model),
                                                                                  load_external_data=False)
    shapes = {}
    for inp in model.graph.input:
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        if not all(dims):
            raise UserError(
                f"input {inp.name!r} has dynamic dims and the ONNX has no segexport profile: "
                "export it with `segexport onnx --dynamic ...` or fix the shape"
            )
        shapes[inp.name] = (tuple(dims),) * 3
    return shapes
