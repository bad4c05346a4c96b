"""``build_engine.sh``: the engine is built on the device that runs it.

TensorRT engines are tied to the GPU architecture and the TensorRT version that built them,
so a Jetson engine is built on the Jetson (JetPack ships ``trtexec``), and a Triton plan on
the server's GPU with the server's TensorRT. The script holds the ``trtexec`` line for the
export's recorded target (segexport.core.targets; TensorRT 10 when none) and, as a comment,
the same build with ``segexport engine``; the shapes are the optimisation profile recorded at
export, never re-derived.

Per version (each flag checked against trtexec's own option parser and help text,
``samples/common/sampleOptions.cpp`` of NVIDIA/TensorRT at tag ``8.5.2`` and branches
``release/8.6`` and ``release/10.3``; an option trtexec does not know ends the run with
"Unknown option", ``samples/trtexec/trtexec.cpp``):

- ``--stronglyTyped`` exists from TensorRT 10 on (absent from the 8.5/8.6 parsers), so for
  TensorRT 8.5/8.6 a Q/DQ graph is built with ``--int8 --fp16`` (explicit quantization) and an
  FP16 graph with ``--fp16``.
- ``--memPoolSize=workspace:N``: 8.5/8.6 read N as MiB ("poolfmt ::= pool:sizeInMiB", parsed
  with ``std::stod``, no unit suffix); 10.3 takes a base-2 suffix B/K/M/G and "if none of
  suffixes is appended, the default unit is in MiB". ``--workspace=N`` (MiB) is deprecated in
  8.5/8.6 ("deprecated by --memPoolSize") and gone from 10.3; it is not used here.
- Build without running: 8.5 has only ``--buildOnly`` (no ``--skipInference``); 8.6 adds
  ``--skipInference`` and deprecates ``--buildOnly``; 10.3 has ``--skipInference`` only.
- ``--calib=<file>`` ("Read INT8 calibration cache file"), ``--int8``, ``--fp16``,
  ``--timingCacheFile``, ``--useDLACore=N`` and ``--allowGPUFallback`` exist in all three.

A DLA target adds ``--useDLACore=N --allowGPUFallback`` (core from ``$DLA_CORE``, default 0);
DLA runs FP16/INT8 only, so an FP32 build for it is refused.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from segexport.core.targets import Target, get_target
from segexport.data.contract import ExportRecord
from segexport.errors import UserError

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
    target: Target = get_target(None)


def plan_for(record: ExportRecord, *, onnx: str, engine: str, precision: str, strongly_typed: bool,
             calib_cache: str | None, workspace_mib: int = DEFAULT_WORKSPACE_MIB) -> BuildPlan:
    shapes = record.profile_shapes() if record.dynamic else {}
    target = get_target(record.target)
    if target.dla and precision == "fp32":
        raise UserError(f"the ONNX is exported for {target.name}, whose DLA runs FP16/INT8 only: deploy with "
                        "--precision fp16 (or int8 with a calibration cache)")
    return BuildPlan(onnx, engine, precision, strongly_typed, calib_cache, shapes, workspace_mib, target)


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def build_only_flag(target: Target) -> str:
    """trtexec's "build, do not run" flag: TensorRT 8.5's parser knows only ``--buildOnly``
    (``sampleOptions.cpp`` at tag 8.5.2), 8.6 added ``--skipInference`` and deprecated
    ``--buildOnly`` (release/8.6), 10.x has ``--skipInference`` only (release/10.3)."""
    return "--buildOnly" if target.trt_version.split(".")[:2] == ["8", "5"] else "--skipInference"


def trtexec_args(plan: BuildPlan) -> list[str]:
    """trtexec arguments for the plan's target TensorRT, one flag each (the DLA core is added by
    build_script, from $DLA_CORE)."""
    args = [f"--onnx={plan.onnx}", f"--saveEngine={plan.engine}"]
    if plan.strongly_typed and plan.target.strongly_typed:
        args.append("--stronglyTyped")  # the ONNX says each tensor's precision; no builder precision flags
    elif plan.strongly_typed:  # TensorRT 8: no --stronglyTyped; Q/DQ needs --int8 to be honoured
        args += ["--int8", "--fp16"] if plan.precision == "int8" else ["--fp16"]
    elif plan.precision == "fp16":
        args.append("--fp16")
    elif plan.precision == "int8":
        args += ["--int8", "--fp16", f"--calib={plan.calib_cache}"]  # FP16 for the layers INT8 cannot take
    for flag, index in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
        if plan.shapes:
            args.append(f"{flag}=" + ",".join(f"{name}:{_dims(s[index])}" for name, s in plan.shapes.items()))
    pool = f"{plan.workspace_mib}M" if plan.target.trt_major >= 10 else str(plan.workspace_mib)  # 8.x: MiB
    args += [f"--timingCacheFile={TIMING_CACHE}", f"--memPoolSize=workspace:{pool}", build_only_flag(plan.target)]
    if plan.target.dla:
        args.append("--allowGPUFallback")  # layers DLA cannot run (see `segexport lint --target`) go to the GPU
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
    quoted = [shlex.quote(a) for a in trtexec_args(plan)]
    if plan.target.dla:
        quoted.insert(2, '"--useDLACore=${DLA_CORE:-0}"')
    trtexec = " \\\n  ".join(quoted)
    dla_note = ("\n# DLA: core $DLA_CORE (default 0); check placement with `segexport lint --target "
                f"{plan.target.name}` and the builder's --verbose log. `segexport engine` builds for the GPU only."
                if plan.target.dla else "")
    ours = " ".join(shlex.quote(a) for a in segexport_args(plan))
    return f"""#!/bin/sh
# Build the TensorRT engine ON THE DEVICE THAT RUNS IT (Jetson, or the Triton server's GPU).
# TensorRT engines only load on the GPU architecture and TensorRT version that built them, so
# an engine built elsewhere (or by TensorRT-RTX, which targets only the architectures it lists)
# will not load here. Written by segexport for target {plan.target.name}: {plan.target.description}.{dla_note}
set -eu
cd "$(dirname "$0")"
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
"$TRTEXEC" \\
  {trtexec}

# The same build with segexport (pip install segexport on the device; TensorRT's Python package):
#   {ours}
{after}"""
