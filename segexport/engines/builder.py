"""Building serialized engines, with a JSON sidecar that later steps check.

Precision policy (one ``--precision`` for every runtime):
- The ONNX carries its precision (``segexport calibrate`` writes FP16 tensors or INT8 Q/DQ).
  TensorRT 11 and TensorRT-RTX build it strongly typed: exactly what the graph says.
- TensorRT 10 builds such graphs strongly typed too. For an FP32 ONNX on TensorRT 10 (Jetson),
  ``precision="fp16"`` sets the FP16 builder flag, and ``"int8"`` sets the INT8 flag with a
  calibrator or a calibration cache (implicit quantization) -- refused on TensorRT 11, which
  removed both, with the fix (calibrate to Q/DQ first).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segexport.core.tensorrt import Flavour, find_flavour, last_error, parse_onnx
from segexport.errors import UserError
from segexport.exporter.metadata import profile_from_onnx  # noqa: F401  (re-exported; lint uses it too)

SIDECAR_SUFFIX = ".json"
SIDECAR_SCHEMA = 2  # 2: classes, preprocessing contract, tensor names and shapes; "all" target CCs
HARDWARE_LEVELS = {"ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}


@dataclass
class EngineInfo:
    """What an engine was built from and for; written next to it as ``<engine>.json``."""

    engine: str
    backend: str
    tensorrt_version: str
    precision: str
    onnx_sha256: str
    profile: dict[str, list[list[int]]]
    build_seconds: float
    engine_bytes: int
    gpu: str | None = None
    compute_capability: str | None = None
    strongly_typed: bool = True
    calibration_cache: str | None = None
    version_compatible: bool = False
    hardware_compatibility: str | None = None  # TensorRT: "ampere+" or "same-cc"; None = this GPU only
    # TensorRT-RTX ahead-of-time targets ("sm89", "current"), or "all" (every architecture the release lists);
    # [] for TensorRT, whose engines are for the GPU that built them. Schema 1 wrote [] for "all".
    target_compute_capabilities: list[str] | str = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    schema: int = 1  # sidecars without the field are schema 1
    # What the engine takes and gives, so a deployment needs nothing but the engine and this file:
    class_names: list[str] = field(default_factory=list)
    preprocess: dict[str, Any] | None = None  # the export's PreprocessContract
    input_name: str | None = None
    output_name: str | None = None
    inputs: dict[str, list[int]] = field(default_factory=dict)  # ONNX dims, -1 where dynamic
    outputs: dict[str, list[int]] = field(default_factory=dict)
    target: str | None = None  # segexport.core.targets name the engine was built for (--target or recorded)

    def targets_all(self) -> bool:
        """An RTX engine compiled for every architecture its release supports."""
        return self.backend == "rtx" and self.target_compute_capabilities in ("all", [])


def sidecar_path(engine_path: str | Path) -> Path:
    return Path(str(engine_path) + SIDECAR_SUFFIX)


def current_gpu() -> tuple[str | None, str | None]:
    """(name, "major.minor") of CUDA device 0, via torch when it has CUDA; (None, None) otherwise."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return torch.cuda.get_device_name(0), f"{major}.{minor}"
    except Exception:
        pass
    return None, None


def build_engine(
    onnx_path: str | Path,
    out_path: str | Path,
    *,
    backend: str = "auto",
    precision: str | None = None,
    workspace_mib: int | None = None,
    timing_cache: str | Path | None = None,
    calibrator: Any = None,
    calibration_cache: str | Path | None = None,
    version_compatible: bool = False,
    hardware_compatibility: str | None = None,
    target_compute_capabilities: tuple[str, ...] = (),
    target: str | None = None,
) -> EngineInfo:
    """Parse ``onnx_path`` and write a serialized engine to ``out_path`` (temp file, then rename).

    Portability knobs, each only where its runtime has it: ``version_compatible`` (TensorRT:
    the engine runs on later TensorRT releases of the same major, with the lean runtime),
    ``hardware_compatibility`` ("ampere+" / "same-cc", TensorRT: one engine for several GPUs),
    ``target_compute_capabilities`` (TensorRT-RTX ahead-of-time targets such as "sm89"; none =
    every architecture the release supports, "current" = this machine's GPU).

    ``target`` (a segexport.core.targets name; default: the one recorded at export) must agree with
    the recorded one and with the TensorRT installed here, since an engine only loads on the
    TensorRT that built it; a DLA target builds for DLA core 0 with GPU fallback (FP16/INT8 only).
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    from segexport.core.onnx_io import load_onnx

    model = load_onnx(onnx_path)  # a missing or non-ONNX file: one line here, not a parser error later
    _check_engine_paths(onnx_path, out_path, timing_cache, workspace_mib)
    from segexport.core.files import refuse_overwriting_inputs
    from segexport.core.onnx_io import check_external_data

    refuse_overwriting_inputs(
        {"--out": out_path, "--out sidecar": sidecar_path(out_path), "--timing-cache": timing_cache},
        [onnx_path, *check_external_data(model, onnx_path), calibration_cache,
         calibration_cache and Path(str(calibration_cache) + ".json")])
    if calibration_cache is not None:
        from segexport.calib.provenance import check_matches

        check_matches(calibration_cache, onnx_path)  # a stale cache builds silently and ruins accuracy
    chosen = _engine_target(model, onnx_path, target)
    flavour = find_flavour(backend)
    if flavour is None:
        raise UserError("neither tensorrt nor tensorrt_rtx is importable: pip install tensorrt (GPU machine) or tensorrt-rtx")
    if chosen is not None:
        from segexport.core.targets import builder_mismatch

        why = builder_mismatch(chosen, flavour.backend, flavour.version)
        if why:
            raise UserError(why)
    from segexport.core.graph import held_precision

    onnx_precision = held_precision(model)
    if precision is None and (calibrator is not None or calibration_cache is not None):
        precision = "int8"  # a calibration cache only means INT8; ignoring it would build FP32 silently
    precision = precision or onnx_precision
    assert precision is not None  # for the checker: onnx_precision is a str
    if precision != onnx_precision and onnx_precision != "fp32":
        raise UserError(f"{onnx_path.name} already holds {onnx_precision.upper()} (from `segexport calibrate`): drop "
                        f"--precision {precision}, or calibrate the FP32 export to {precision.upper()} instead")
    implicit = precision != onnx_precision
    if implicit and flavour.strongly_typed_only:
        raise UserError(
            f"{flavour.label} has no implicit {precision.upper()} (builder flags/calibrators were removed): "
            f"put the precision in the ONNX with `segexport calibrate {onnx_path} --precision {precision}`"
        )
    if implicit and precision == "int8" and calibrator is None and calibration_cache is None:
        raise UserError("implicit INT8 on TensorRT 10 needs --calib-cache FILE (from `segexport calibrate --trt-cache`)")

    _check_portability(flavour, version_compatible, hardware_compatibility, target_compute_capabilities)
    if chosen is not None and chosen.dla and precision == "fp32":
        raise UserError(f"--target {chosen.name} runs on DLA, which has FP16/INT8 only: pass --precision fp16 (or "
                        "int8 with --calib-cache)")

    parsed = parse_onnx(onnx_path, flavour, strongly_typed=not implicit)
    if not parsed.ok:
        node, msg = parsed.errors[0]
        raise UserError(f"{flavour.label} cannot parse {onnx_path.name}: node {node}: {msg} (run `segexport lint` for all findings)")
    if TYPE_CHECKING:  # checked against TensorRT 10's stubs; at run time tensorrt or tensorrt_rtx
        import tensorrt as trt
    else:
        trt = flavour.module
    config = parsed.builder.create_builder_config()
    if workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    profile_shapes = profile_from_onnx(model)
    profile = parsed.builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes.items():
        profile.set_shape(name, trt.Dims(list(lo)), trt.Dims(list(opt)), trt.Dims(list(hi)))
    config.add_optimization_profile(profile)
    if implicit:
        config.set_flag(trt.BuilderFlag.FP16)  # FP16 is the fallback for layers INT8 cannot take
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            if calibrator is None:
                from segexport.calib.trt10_calibrator import cache_only_calibrator

                assert calibration_cache is not None  # refused above when both are missing
                calibrator = cache_only_calibrator(trt, calibration_cache)
            config.int8_calibrator = calibrator
            config.set_calibration_profile(profile)
    if chosen is not None and chosen.dla:  # DLA core 0; layers DLA cannot run go to the GPU (lint --target says which)
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = 0
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if hardware_compatibility:
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, HARDWARE_LEVELS[hardware_compatibility])
    if target_compute_capabilities:
        # TensorRT-RTX only (refused for TensorRT above): not in TensorRT 10's API, hence the ignores
        config.num_compute_capabilities = len(target_compute_capabilities)  # type: ignore[attr-defined]
        for i, cc in enumerate(target_compute_capabilities):
            config.set_compute_capability(getattr(trt.ComputeCapability, cc.upper()), i)  # type: ignore[attr-defined]
    cache_obj = None
    if timing_cache is not None and hasattr(config, "create_timing_cache"):
        blob = Path(timing_cache).read_bytes() if Path(timing_cache).exists() else b""
        try:
            cache_obj = config.create_timing_cache(blob)
            ok = cache_obj is not None and config.set_timing_cache(cache_obj, ignore_mismatch=False) is not False
        except Exception:  # a truncated or foreign file: TensorRT raises from C++
            ok = False
        from segexport.core.interrupts import raise_if_interrupted

        raise_if_interrupted()
        if not ok:
            raise UserError(f"--timing-cache {str(timing_cache)!r} is damaged or from another TensorRT: delete it "
                            "(it is rebuilt on the next build)")

    start = time.perf_counter()
    serialized = parsed.builder.build_serialized_network(parsed.network, config)
    seconds = time.perf_counter() - start
    from segexport.core.interrupts import raise_if_interrupted

    raise_if_interrupted()  # swallowed inside a TensorRT callback: stop here, write nothing
    if serialized is None:
        error = last_error(parsed.logger)
        if any(w in error.lower() for w in ("cuda", "driver", "no device", "gpu")):
            hint = "this build needs a GPU and its driver here (TensorRT-RTX builds without one unless --target-cc current)"
        elif any(w in error.lower() for w in ("memory", "workspace", "tactic")):
            hint = "try a larger --workspace"
        else:
            hint = "run `segexport lint --build` for every finding"
        raise UserError(f"{flavour.label} failed to build an engine from {onnx_path.name}: {error}; {hint}")
    data = bytes(serialized)
    gpu, gpu_cc = current_gpu()
    # TensorRT engines are tuned for the GPU they were built on; TensorRT-RTX ones only with "current".
    for_this_gpu = flavour.backend == "trt" or [t.lower() for t in target_compute_capabilities] == ["current"]
    from segexport.core.hashing import sha256_file

    info = EngineInfo(
        engine=out_path.name, backend=flavour.backend, tensorrt_version=flavour.version, precision=precision,
        onnx_sha256=sha256_file(onnx_path), profile={k: [list(s) for s in v] for k, v in profile_shapes.items()},
        build_seconds=round(seconds, 3), engine_bytes=len(data), gpu=gpu if for_this_gpu else None,
        compute_capability=gpu_cc if for_this_gpu else None, strongly_typed=not implicit,
        calibration_cache=os.path.relpath(calibration_cache, out_path.parent) if calibration_cache else None,  # relative: moves with the engine
        version_compatible=version_compatible, hardware_compatibility=hardware_compatibility,
        target_compute_capabilities=([t.lower() for t in target_compute_capabilities]
                                     if target_compute_capabilities or flavour.backend != "rtx" else "all"),
        schema=SIDECAR_SCHEMA, target=chosen.name if chosen is not None else None, **_self_description(model),
    )
    from segexport.core.files import atomic_outputs

    # the engine and its sidecar land together; the old sidecar goes first and the new one comes
    # last, so a kill between the renames never pairs a new sidecar with an old engine
    side = sidecar_path(out_path)
    timing_out = Path(timing_cache) if cache_obj is not None and timing_cache is not None else None
    targets = [(out_path, "--out")] + ([(timing_out, "--timing-cache")] if timing_out is not None else [])
    with atomic_outputs(targets, sidecars=[(side, "--out")]) as staged:
        staged[out_path].write_bytes(data)
        # no build time in the sidecar: two builds of the same ONNX give the same bytes, so a
        # content-addressed cache and SHA256SUMS see the same artefact (the time is returned)
        staged[side].write_text(json.dumps({k: v for k, v in asdict(info).items() if k != "build_seconds"},
                                           indent=2, allow_nan=False) + "\n")
        if timing_out is not None:
            staged[timing_out].write_bytes(bytes(config.get_timing_cache().serialize()))
    return info


def _self_description(model) -> dict[str, Any]:
    """Classes, preprocessing contract and tensor names/shapes for the sidecar, from the ONNX."""
    from dataclasses import asdict as _asdict

    def dims(v) -> list[int]:
        return [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]

    inits = {t.name for t in model.graph.initializer}
    out: dict[str, Any] = {
        "inputs": {v.name: dims(v) for v in model.graph.input if v.name not in inits},
        "outputs": {v.name: dims(v) for v in model.graph.output},
    }
    from segexport.exporter.metadata import read_record

    try:
        record = read_record(model)
    except UserError:  # a foreign ONNX: names and shapes only
        return out
    return {**out, "class_names": list(record.class_names), "preprocess": _asdict(record.preprocess),
            "input_name": record.input_name, "output_name": record.output_name}


def _check_engine_paths(onnx_path: Path, out_path: Path, timing_cache, workspace_mib) -> None:
    """Before minutes of building: the engine and the timing cache must not overwrite the ONNX
    (or each other) and must be writable; the workspace must be a size."""
    from segexport.core.files import check_output_path

    check_output_path(out_path, "--out")
    if out_path.resolve() == onnx_path.resolve() or out_path.suffix.lower() == ".onnx":
        raise UserError(f"--out {str(out_path)!r} would write an engine over an ONNX file: name it .engine "
                        "(e.g. --out model.engine)")
    if timing_cache is not None:
        cache = check_output_path(timing_cache, "--timing-cache")
        if cache.resolve() in (onnx_path.resolve(), out_path.resolve()) or cache.suffix.lower() in (".onnx", ".engine"):
            raise UserError(f"--timing-cache {str(cache)!r} names the ONNX or an engine: give the cache its own "
                            "file (e.g. --timing-cache timing.cache)")
    if workspace_mib is not None and workspace_mib < 1:
        raise UserError(f"--workspace must be >= 1 MiB, got {workspace_mib} (leave it out for no limit)")


def _check_portability(flavour: Flavour, version_compatible: bool, hardware: str | None,
                       targets: tuple[str, ...]) -> None:
    """Refuse a portability option the flavour lacks, before minutes of building."""
    trt = flavour.module  # Any: only membership tests, valid for either package
    if hardware is not None and hardware not in HARDWARE_LEVELS:
        raise UserError(f"hardware compatibility {hardware!r} is not one of {', '.join(HARDWARE_LEVELS)}")
    if flavour.backend == "rtx":
        if hardware or version_compatible:
            raise UserError("TensorRT-RTX has no version/hardware compatibility levels (its engines compile for the "
                            "GPU at load): choose ahead-of-time targets with --target-cc instead")
        known = {m.lower() for m in trt.ComputeCapability.__members__} - {"none"}
        bad = [cc for cc in targets if cc.lower() not in known]
        if bad:
            raise UserError(f"--target-cc {', '.join(bad)} unknown to {flavour.label}: use {', '.join(sorted(known))}")
        if "current" in [cc.lower() for cc in targets] and len(targets) > 1:
            raise UserError("--target-cc current builds for this GPU only: give it alone")
    elif targets:
        raise UserError("--target-cc is a TensorRT-RTX option: on TensorRT use --hardware-compat ampere+ for "
                        "one engine across GPUs")
    elif hardware and not hasattr(trt, "HardwareCompatibilityLevel"):
        raise UserError(f"{flavour.label} has no hardware compatibility (TensorRT 8.6+): upgrade TensorRT")


def _engine_target(model, onnx_path: Path, flag: str | None):
    """The --target (checked against the one the export recorded), else the recorded one, else None."""
    from segexport.core.targets import resolve_target
    from segexport.exporter.metadata import read_record

    try:
        recorded = read_record(model).target
    except UserError:  # an ONNX from elsewhere records nothing
        recorded = None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return resolve_target(flag, recorded, onnx_path.name, opset=opset)


def read_engine_info(engine_path: str | Path) -> EngineInfo:
    side = sidecar_path(engine_path)
    if not side.exists():
        raise UserError(f"{side.name} is missing: segexport cannot tell which GPU/TensorRT {Path(engine_path).name} "
                        "was built for; rebuild it with `segexport engine`")
    try:
        raw = json.loads(side.read_text())
        raw.setdefault("build_seconds", None)  # not written since sidecars became reproducible
        known = set(EngineInfo.__dataclass_fields__)
        info = EngineInfo(**{k: v for k, v in raw.items() if k in known})
        for key in ("backend", "tensorrt_version", "precision"):
            if not isinstance(getattr(info, key), str):
                raise TypeError(f"{key} is not a string")
    except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as exc:  # truncated or hand-edited
        raise UserError(f"{side.name} is damaged ({type(exc).__name__}): rebuild {Path(engine_path).name} "
                        "with `segexport engine`") from exc
    return info


def check_engine_compatible(engine_path: str | Path, flavour: Flavour | None = None) -> EngineInfo:
    """Refuse an engine built by another TensorRT version or for another GPU architecture.

    TensorRT engines are specific to both; deserialising a mismatched one fails at best with
    an obscure message and at worst after minutes of user time.
    """
    info = read_engine_info(engine_path)
    name = Path(engine_path).name
    flavour = flavour or find_flavour(info.backend)
    if flavour is not None and not _version_ok(info, flavour.version):
        raise UserError(f"{name} was built with TensorRT {info.tensorrt_version}, this is "
                        f"{flavour.label}: rebuild it with `segexport engine`")
    _, cc = current_gpu()
    if cc is None:
        return info
    if info.targets_all():
        return info
    if info.target_compute_capabilities and "current" not in info.target_compute_capabilities:
        if "sm" + cc.replace(".", "") not in info.target_compute_capabilities:
            raise UserError(f"{name} was built for {', '.join(list(info.target_compute_capabilities))}, this GPU is sm"
                            f"{cc.replace('.', '')}: rebuild it with `segexport engine --target-cc sm{cc.replace('.', '')}`")
        return info
    if info.compute_capability and cc != info.compute_capability:
        if info.hardware_compatibility == "ampere+" and _cc_tuple(cc) >= (8, 0):
            return info
        raise UserError(f"{name} was built for compute capability {info.compute_capability} "
                        f"({info.gpu}), this GPU is {cc}: rebuild it on this machine with `segexport engine`")
    return info


def _cc_tuple(cc: str) -> tuple[int, ...]:
    return tuple(int(x) for x in cc.split("."))


def _version_ok(info: EngineInfo, runtime_version: str) -> bool:
    """Exact match, or for a version-compatible engine any later release of the same major."""
    if runtime_version == info.tensorrt_version:
        return True
    if not info.version_compatible:
        return False
    try:
        built = tuple(int(x) for x in info.tensorrt_version.split(".")[:3])
        runtime = tuple(int(x) for x in runtime_version.split(".")[:3])
    except ValueError:
        return False
    return built[0] == runtime[0] and runtime >= built
