"""Deployment targets: the TensorRT a device really has, named once on the command line.

A target fixes what every later step must agree on: the TensorRT version (its ONNX parser's
support matrix, the header of a calibration cache, the flags its ``trtexec`` takes), the
highest opset that parser reads, and, for a DLA board, which accelerator the engine is built
for. It is recorded in the ONNX metadata at export, so calibrate, lint and deploy read it
instead of flags.

Versions are those NVIDIA ships: JetPack 5.1.x carries TensorRT 8.5.2 (the last JetPack a
Jetson Xavier can run), JetPack 6.0 TensorRT 8.6.2, JetPack 6.1/6.2 TensorRT 10.3. The opset
limit of TensorRT 8.5/8.6 is 17 (onnx-tensorrt ``docs/operators.md`` of the 8.5-GA and 8.6-GA
branches: "supports operators up to Opset 17"); TensorRT 10.0's table reads "opset 9 to 20".
DLA was dropped after TensorRT 10.7 (TensorRT 11 "Working with DLA"), so only 8.x/10.x targets
name a DLA board.
"""

from __future__ import annotations

from dataclasses import dataclass

from segexport.errors import UserError


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    trt_version: str  # the version a calibration cache header must carry, e.g. "8.5.2"
    matrix: str  # which support matrix the lint applies: "8.5", "8.6", "10"
    opset_max: int  # highest opset the target's ONNX parser accepts
    strict_opset: bool  # True: an ONNX above opset_max is refused (not just warned about)
    jetpack: str | None = None  # the JetPack release that ships this TensorRT
    dla: str | None = None  # "orin" | "xavier": build for the Deep Learning Accelerator
    dla_cores: int = 0
    flavour: str = "trt"  # "trt" | "rtx": which builder the bundle's script runs

    @property
    def trt_major(self) -> int:
        return int(self.trt_version.split(".")[0])

    @property
    def strongly_typed(self) -> bool:
        """trtexec --stronglyTyped exists from TensorRT 10 (and TensorRT-RTX) on; 8.x builds a
        Q/DQ or FP16 graph with --int8/--fp16 instead."""
        return self.trt_major >= 10


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("jetpack5", "JetPack 5.1 (Xavier, Orin): TensorRT 8.5.2", "8.5.2", "8.5", 17, True, jetpack="5.1"),
    Target("jetpack6.0", "JetPack 6.0 (Orin): TensorRT 8.6.2", "8.6.2", "8.6", 17, True, jetpack="6.0"),
    Target("jetpack6", "JetPack 6.1/6.2 (Orin): TensorRT 10.3", "10.3.0", "10", 20, False, jetpack="6.1"),
    Target("trt10", "TensorRT 10.x on a desktop or server GPU", "10.3.0", "10", 20, False),
    Target("trt11", "TensorRT 11 on a desktop or server GPU", "11.0.0", "10", 22, False),
    Target("rtx", "TensorRT-RTX on an RTX card", "10.3.0", "10", 22, False, flavour="rtx"),
    Target("orin-dla", "Jetson Orin DLA, JetPack 6.1/6.2: TensorRT 10.3, GPU fallback", "10.3.0", "10", 20, False,
           jetpack="6.1", dla="orin", dla_cores=2),
    Target("xavier-dla", "Jetson Xavier DLA, JetPack 5.1: TensorRT 8.5.2, GPU fallback", "8.5.2", "8.5", 17, True,
           jetpack="5.1", dla="xavier", dla_cores=2),
)}
DEFAULT_TARGET = "trt10"


def get_target(name: str | None, flag: str = "--target") -> Target:
    """The target called ``name`` (None: the TensorRT 10 default); an unknown name is a UserError."""
    if name is None:
        return TARGETS[DEFAULT_TARGET]
    try:
        return TARGETS[name]
    except (KeyError, TypeError):
        raise UserError(f"{flag} {str(name)[:40]!r} is not a known target: use one of {', '.join(TARGETS)}") from None


def resolve_target(flag: str | None, recorded: str | None, what: str, *, opset: int | None = None) -> Target | None:
    """The target a later step (calibrate, engine, the pipeline) works for: ``--target``, else the
    one recorded at export, else None (TensorRT 10, nothing target-specific).

    A ``--target`` that contradicts the recorded one is refused: the ONNX was converted, linted and
    verified for the recorded one (its opset, its support matrix), so building or calibrating it for
    another would be a file that claims one TensorRT and was made for another. On an ONNX that records
    no target, a TensorRT 8 target still refuses an opset its parser cannot read.
    """
    if flag is None:
        return None if recorded is None else get_target(recorded)
    chosen = get_target(flag)
    if recorded is not None and recorded != chosen.name:
        raise UserError(f"--target {chosen.name} contradicts the target {recorded} recorded in {what} at export: drop "
                        f"--target, or re-export with `segexport onnx --target {chosen.name}`")
    if recorded is None and opset is not None and chosen.strict_opset and opset > chosen.opset_max:
        raise UserError(f"{what} is opset {opset}, newer than --target {chosen.name} (TensorRT {chosen.trt_version}) "
                        f"parses (<= {chosen.opset_max}): re-export with `segexport onnx --target {chosen.name}`")
    return chosen


def builder_mismatch(target: Target, backend: str, version: str) -> str | None:
    """Why an engine built here by ``backend`` ("trt" / "rtx") ``version`` would not load on
    ``target``, or None. Engines load only on the TensorRT that built them: a Jetson target needs
    that JetPack's TensorRT to the minor version (build on the board); a desktop target its major."""
    if target.flavour == "rtx":
        return None if backend == "rtx" else f"--target {target.name} is TensorRT-RTX: use --backend rtx"
    if backend == "rtx":
        return (f"--target {target.name} runs TensorRT {target.trt_version}, which does not load TensorRT-RTX engines: "
                "build with TensorRT (on the device: the bundle's build_engine.sh)")
    want = target.trt_version.split(".")[: 2 if target.jetpack else 1]
    if version.split(".")[: len(want)] != want:
        where = "on the device (the bundle's build_engine.sh)" if target.jetpack else "with that TensorRT"
        return (f"--target {target.name} runs TensorRT {'.'.join(want)}{'.x' if len(want) == 1 else ''}, this is "
                f"TensorRT {version}: an engine only loads on the TensorRT that built it; build it {where}")
    return None
