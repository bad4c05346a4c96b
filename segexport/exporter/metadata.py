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


def load_onnx(path: str | Path, *, external_data: bool = False) -> onnx.ModelProto:
    """Load an ONNX file given on the command line, or fail with one line.

    Why not plain ``onnx.load``: protobuf parses almost any short byte string as an empty
    ModelProto, so a PNG or a text file passed by mistake "loads", lints clean, and only
    fails later as a TensorRT "network must have at least one output". A model without
    graph outputs is refused here instead.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ONNX file {str(path)!r} not found" if not path.is_dir()
                        else f"{str(path)!r} is a directory: give the .onnx file")
    try:
        model = onnx.load(str(path), load_external_data=external_data)
    except Exception as exc:
        if external_data:  # the graph may be fine and only its weights file missing
            try:
                graph_only = onnx.load(str(path), load_external_data=False)
            except Exception:
                graph_only = None
            if graph_only is not None:
                files = sorted({e.value for t in graph_only.graph.initializer for e in t.external_data
                                if e.key == "location"})
                raise UserError(f"{str(path)!r} keeps its weights in {', '.join(files) or 'an external file'}, which "
                                f"cannot be read beside it ({type(exc).__name__}): keep the .onnx and its data "
                                "file(s) in one folder") from exc
        raise UserError(f"{str(path)!r} is not an ONNX model ({type(exc).__name__}): "
                        "pass the .onnx written by `segexport onnx`") from exc
    if not model.graph.output:
        raise UserError(f"{str(path)!r} is not an ONNX model (no graph outputs): "
                        "pass the .onnx written by `segexport onnx`")
    return model


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
