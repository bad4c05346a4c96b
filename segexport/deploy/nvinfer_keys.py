"""The Gst-nvinfer ``[property]`` keys this project writes, with each value's documented type and range.

Source: NVIDIA DeepStream SDK documentation, "Gst-nvinfer" -> "Gst-nvinfer File Configuration
Specifications" -> "Gst-nvinfer Property Group Supported Keys"
(https://docs.nvidia.com/metropolis/deepstream/dev-guide/text/DS_plugin_gst-nvinfer.html, the current
edition) and the key names in ``gstnvinfer_property_parser.h`` (DeepStream SDK API reference). Only keys from that
table may appear in a generated config; :func:`check_config` enforces it, and the types and
ranges below are the table's (e.g. ``network-mode``: 0=FP32, 1=INT8, 2=FP16; ``network-type``:
0 detector, 1 classifier, 2 segmentation, 3 instance segmentation, 100 other).

Checked against the nvinfer sources DeepStream ships (public copies; the DeepStream release of
each copy is not stated in it, so the 6.2/6.3/7.x property tables themselves were not compared):

- ``sources/includes/nvdsinfer_context.h``: ``NvDsInferNetworkMode_FP32, _INT8, _FP16`` in that
  order, so ``network-mode`` 0=FP32, 1=INT8, 2=FP16; the property parser refuses any other value
  ("Invalid value for network-mode"). A ``NvDsInferNetworkMode_BEST`` appears only in newer
  headers (seen in a third-party binding, not in NVIDIA's text), hence 3 is allowed, never written.
- ``gstnvinfer_property_parser.cpp``: ``enable-dla`` is read as a boolean, ``use-dla-core`` as
  an int, ``int8-calib-file``/``onnx-file``/``model-engine-file`` as paths relative to the config.
- ``nvdsinfer_model_builder.cpp``: DLA is used only when ``enable-dla`` is set *and*
  ``use-dla-core`` >= 0, which is why both are written.

Why hand-written: DeepStream ships no schema or Python validator for these files (GKeyFile INI).
"""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Callable

Check = Callable[[str], str | None]  # value -> problem, or None when fine


def _int(lo: int, hi: int | None = None) -> Check:
    def check(v: str) -> str | None:
        try:
            n = int(v)
        except ValueError:
            return f"{v!r} is not an integer"
        if n < lo or (hi is not None and n > hi):
            return f"{n} outside {lo}..{'' if hi is None else hi}"
        return None
    return check


def _choice(*allowed: int) -> Check:
    def check(v: str) -> str | None:
        try:
            n = int(v)
        except ValueError:
            return f"{v!r} is not an integer"
        return None if n in allowed else f"{n} not one of {allowed}"
    return check


def _float(lo: float | None = None, hi: float | None = None) -> Check:
    def check(v: str) -> str | None:
        try:
            x = float(v)
        except ValueError:
            return f"{v!r} is not a number"
        if x != x or (lo is not None and x < lo) or (hi is not None and x > hi):
            return f"{x} outside {lo}..{hi}"
        return None
    return check


def _floats(count: int) -> Check:
    def check(v: str) -> str | None:
        parts = [p for p in v.split(";") if p.strip()]
        if len(parts) != count:
            return f"{v!r} needs {count} ';'-separated numbers"
        return next((problem for p in parts if (problem := _float()(p))), None)
    return check


def _dims(v: str) -> str | None:
    parts = v.split(";")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        return f"{v!r} is not C;H;W with positive integers"
    return None


def _names(v: str) -> str | None:
    names = [n for n in v.split(";") if n]
    return None if names and all(n.strip() == n for n in names) else f"{v!r} is not ';'-separated tensor names"


def _path(v: str) -> str | None:
    return None if v and "\n" not in v else "empty path"


NVINFER_PROPERTIES: dict[str, Check] = {
    "gpu-id": _int(0),
    "gie-unique-id": _int(1),
    "process-mode": _choice(1, 2),  # 1 primary (full frame), 2 secondary (objects)
    "onnx-file": _path,
    "model-engine-file": _path,
    "int8-calib-file": _path,
    "labelfile-path": _path,
    "network-type": _choice(0, 1, 2, 3, 100),
    "network-mode": _choice(0, 1, 2, 3),  # 0 FP32, 1 INT8, 2 FP16 (nvdsinfer_context.h); 3 BEST: newer only
    "num-detected-classes": _int(1),
    "batch-size": _int(1),
    "infer-dims": _dims,
    "model-color-format": _choice(0, 1, 2),  # 0 RGB, 1 BGR, 2 GRAY
    "net-scale-factor": _float(0.0),
    "offsets": _floats(3),
    "output-blob-names": _names,
    "segmentation-threshold": _float(0.0),
    "segmentation-output-order": _choice(0, 1),  # 0 NCHW, 1 NHWC
    "maintain-aspect-ratio": _choice(0, 1),
    "symmetric-padding": _choice(0, 1),
    "scaling-filter": _int(0, 6),  # NvBufSurfTransform_Inter: 0 nearest, 1 bilinear, ...
    "output-tensor-meta": _choice(0, 1),
    "workspace-size": _int(1),
    "interval": _int(0),
    "enable-dla": _choice(0, 1),  # run on the Deep Learning Accelerator (Jetson)
    "use-dla-core": _int(0, 1),  # which DLA core (Xavier and AGX Orin have two; -1 would mean GPU)
}


def check_config(text: str, bundle: Path | None = None) -> list[str]:
    """Problems with an nvinfer config: unknown groups or keys, bad values, files it names that are
    missing from ``bundle`` (the engine file is built on the device, so it may be absent)."""
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",), delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive in GKeyFile
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        return [f"not a key file: {exc}"]
    problems = [f"unknown group [{s}]" for s in parser.sections() if s != "property"]
    if "property" not in parser:
        return problems + ["no [property] group"]
    for key, value in parser["property"].items():
        check = NVINFER_PROPERTIES.get(key)
        if check is None:
            problems.append(f"{key}: not a documented Gst-nvinfer property")
            continue
        problem = check(value)
        if problem:
            problems.append(f"{key}: {problem}")
        elif bundle is not None and key in ("onnx-file", "int8-calib-file", "labelfile-path"):
            if not (bundle / value).is_file():
                problems.append(f"{key}: {value} is not in the bundle")
    return problems
