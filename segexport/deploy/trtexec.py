"""``build_engine.sh``: the engine is built on the device that runs it.

TensorRT engines are tied to the GPU architecture and the TensorRT version that built them,
so a Jetson engine is built on the Jetson (JetPack ships ``trtexec``), and a Triton plan on
the server's GPU with the server's TensorRT. The script holds the ``trtexec`` line for
TensorRT 10 and, as a comment, the same build with ``segexport engine``; the shapes are the
optimisation profile recorded at export, never re-derived.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from segexport.data.contract import ExportRecord

DEFAULT_WORKSPACE_MIB = 1024
TIMING_CACHE = "timing.cache"


@dataclass(frozen=True)
class BuildPlan:
    """What one engine build needs: the ONNX and engine file names inside the bundle, the precision
    flags, the optimisation profile (only for dynamic inputs: trtexec refuses shapes for static ones)."""

    onnx: str
    engine: str
    precision: str  # fp32, fp16, int8
    strongly_typed: bool  # the ONNX carries its precision (Q/DQ or FP16 tensors)
    calib_cache: str | None
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
    workspace_mib: int = DEFAULT_WORKSPACE_MIB


def plan_for(record: ExportRecord, *, onnx: str, engine: str, precision: str, strongly_typed: bool,
             calib_cache: str | None, workspace_mib: int = DEFAULT_WORKSPACE_MIB) -> BuildPlan:
    shapes = record.profile_shapes() if record.dynamic else {}
    return BuildPlan(onnx, engine, precision, strongly_typed, calib_cache, shapes, workspace_mib)


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def trtexec_args(plan: BuildPlan) -> list[str]:
    """trtexec (TensorRT 10) arguments, one flag each."""
    args = [f"--onnx={plan.onnx}", f"--saveEngine={plan.engine}"]
    if plan.strongly_typed:
        args.append("--stronglyTyped")  # the ONNX says each tensor's precision; no builder precision flags
    elif plan.precision == "fp16":
        args.append("--fp16")
    elif plan.precision == "int8":
        args += ["--int8", "--fp16", f"--calib={plan.calib_cache}"]  # FP16 for the layers INT8 cannot take
    for flag, index in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
        if plan.shapes:
            args.append(f"{flag}=" + ",".join(f"{name}:{_dims(s[index])}" for name, s in plan.shapes.items()))
    args += [f"--timingCacheFile={TIMING_CACHE}", f"--memPoolSize=workspace:{plan.workspace_mib}M", "--skipInference"]
    return args


def segexport_args(plan: BuildPlan) -> list[str]:
    """The same build with ``segexport engine`` (TensorRT's Python package, e.g. JetPack's)."""
    args = ["segexport", "engine", plan.onnx, "--out", plan.engine, "--backend", "trt"]
    if not plan.strongly_typed and plan.precision != "fp32":
        args += ["--precision", plan.precision]
    if plan.calib_cache and not plan.strongly_typed:
        args += ["--calib-cache", plan.calib_cache]
    args += ["--timing-cache", TIMING_CACHE, "--workspace", str(plan.workspace_mib)]
    return args


def build_script(plan: BuildPlan, *, after: str = "") -> str:
    """The shell script text; ``after`` is a closing comment (what to do with the engine)."""
    trtexec = " \\\n  ".join(shlex.quote(a) for a in trtexec_args(plan))
    ours = " ".join(shlex.quote(a) for a in segexport_args(plan))
    return f"""#!/bin/sh
# Build the TensorRT engine ON THE DEVICE THAT RUNS IT (Jetson, or the Triton server's GPU).
# TensorRT engines only load on the GPU architecture and TensorRT version that built them, so
# an engine built elsewhere (or by TensorRT-RTX, which targets only the architectures it lists)
# will not load here. Written by segexport for TensorRT 10 (JetPack 6: TensorRT 10.3).
set -eu
cd "$(dirname "$0")"
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
"$TRTEXEC" \\
  {trtexec}

# The same build with segexport (pip install segexport on the device; TensorRT's Python package):
#   {ours}
{after}"""
