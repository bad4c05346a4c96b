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
from segexport.core.jsonio import no_constant
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
        prop.value = json.dumps(value, sort_keys=True, allow_nan=False)  # NaN/Infinity are not JSON


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
        for p in props:
            if len(p.value) > MAX_VALUE_CHARS:
                raise ValueError(f"{p.key} is {len(p.value)} characters long")
        raw = {p.key[len(PREFIX):]: json.loads(p.value, parse_constant=no_constant) for p in props}
        raw["preprocess"] = PreprocessContract(**{**raw["preprocess"],
                                                  "mean": tuple(raw["preprocess"]["mean"]),
                                                  "std": tuple(raw["preprocess"]["std"]),
                                                  "input_size": tuple(raw["preprocess"]["input_size"])})
        raw["class_names"] = tuple(raw["class_names"])
        raw["dynamic"] = {k: DynamicRange(**v) for k, v in raw.get("dynamic", {}).items()}
        known = set(ExportRecord.__dataclass_fields__)
        record = ExportRecord(**{k: v for k, v in raw.items() if k in known})
        check_record(record)
        _check_graph_agrees(model, record)
        return record
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:  # edited by hand or by another tool
        detail = " ".join(str(exc).split())[:160]
        raise UserError(f"the ONNX's segexport metadata is damaged ({type(exc).__name__}: {detail}): "
                        "re-export it with `segexport onnx`") from exc


MAX_VALUE_CHARS = 1 << 20  # class names of a few thousand classes fit; a megabyte of metadata is hostile


def _check_graph_agrees(model: onnx.ModelProto, record: ExportRecord) -> None:
    """The record must describe this graph: a static input dimension that contradicts the
    recorded batch or size (metadata copied from another export, or edited) would otherwise
    surface as a runtime's shape error deep inside parity or bench. Raises ValueError."""
    inputs = [i for i in model.graph.input if i.name == record.input_name]
    if not inputs:
        raise ValueError(f"input_name {record.input_name[:40]!r} is not an input of the graph")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        return
    h, w = record.preprocess.input_size
    for axis, static, want in (("batch", dims[0], record.batch), ("height", dims[2], h), ("width", dims[3], w)):
        if static is not None and axis not in record.dynamic and static != want:
            raise ValueError(f"the graph's {axis} is {static}, the metadata says {want}")


def check_record(record: ExportRecord) -> None:
    """Every field a later step computes with, held to its type and range: the record comes from
    a file, and a NaN std, a batch of 0 or a 10^9-pixel size must fail here, in one line, not as
    a traceback (or an allocation the size of the disk) three steps later. Raises ValueError."""
    from segexport.core.limits import MAX_BATCH, MAX_NUM_CLASSES, MAX_SIDE, check_label, check_tensor_name, finite_number

    def integer(value, key: str, lo: int, hi: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"{key} = {str(value)[:40]!r} is not an integer in {lo}..{hi}")

    if not isinstance(record.model, str) or not record.model or len(record.model) > 1024:
        raise ValueError("model is not a model name")
    integer(record.num_classes, "num_classes", 1, MAX_NUM_CLASSES)
    integer(record.batch, "batch", 1, MAX_BATCH)
    integer(record.opset, "opset", 1, 1000)
    if not isinstance(record.argmax, bool):
        raise ValueError("argmax is not true/false")
    finite_number(record.width, "width", positive=True)
    if record.precision not in ("fp32", "fp16", "int8"):
        raise ValueError(f"precision {str(record.precision)[:20]!r} is not fp32, fp16 or int8")
    for key in ("unpool", "segexport_version"):
        if not isinstance(getattr(record, key), str):
            raise ValueError(f"{key} is not a string")
    for key in ("input_name", "output_name"):  # written into Triton, nvinfer and trtexec files
        check_tensor_name(getattr(record, key), key)
    if record.target is not None:
        from segexport.core.targets import TARGETS

        if record.target not in TARGETS:
            raise ValueError(f"target {str(record.target)[:40]!r} is not one of {', '.join(TARGETS)}")
    for key in ("weights_sha256", "source_onnx_sha256"):
        if getattr(record, key) is not None and not isinstance(getattr(record, key), str):
            raise ValueError(f"{key} is not a string")
    wp = record.weights_path
    if wp is not None and (not isinstance(wp, str) or not wp or len(wp) > 4096 or "\0" in wp):
        raise ValueError("weights_path is not a file path")
    for i, name in enumerate(record.class_names):
        check_label(name, f"class_names[{i}]")
    pre = record.preprocess
    if len(pre.mean) != 3 or len(pre.std) != 3 or len(pre.input_size) != 2:
        raise ValueError("preprocess needs 3 mean, 3 std and 2 input_size values")
    for v in pre.mean:
        finite_number(v, "preprocess.mean")
    for v in pre.std:
        finite_number(v, "preprocess.std", positive=True)
    finite_number(pre.scale, "preprocess.scale", positive=True)
    for v in pre.input_size:
        integer(v, "preprocess.input_size", 1, MAX_SIDE)
    for axis, r in record.dynamic.items():
        if axis not in ("batch", "height", "width"):
            raise ValueError(f"dynamic axis {str(axis)[:20]!r} is not batch, height or width")
        hi = MAX_BATCH if axis == "batch" else MAX_SIDE
        for v in (r.min, r.opt, r.max):
            integer(v, f"dynamic.{axis}", 1, hi)
        if not r.min <= r.opt <= r.max:
            raise ValueError(f"dynamic.{axis} is not min <= opt <= max")
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
