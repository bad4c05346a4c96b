"""``segexport engine``: build a TensorRT / TensorRT-RTX engine from a segexport ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from segexport.cli.common import Stages, console


def register(app: typer.Typer) -> None:
    app.command("engine")(engine_command)


def engine_command(
    model: Path = typer.Argument(..., help="ONNX file (fp32, or fp16/int8 from `segexport calibrate`)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Engine path (default: MODEL with .engine)."),
    backend: str = typer.Option("auto", "--backend", help="auto (tensorrt, else tensorrt_rtx), trt or rtx."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Default: what the ONNX holds. fp16/int8 on an fp32 ONNX = TensorRT 10 implicit precision (Jetson)."),
    calib_cache: Optional[Path] = typer.Option(None, "--calib-cache", help="TensorRT calibration cache for implicit INT8 on TensorRT 10."),
    workspace: Optional[int] = typer.Option(None, "--workspace", help="Builder workspace limit in MiB."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Timing cache file to read and update (faster rebuilds)."),
    version_compat: bool = typer.Option(False, "--version-compat", help="TensorRT: the engine also runs on later releases of the same major (lean runtime)."),
    hardware_compat: Optional[str] = typer.Option(None, "--hardware-compat", help="TensorRT: ampere+ (one engine for every Ampere or newer GPU) or same-cc."),
    target_cc: Optional[str] = typer.Option(None, "--target-cc", help="TensorRT-RTX ahead-of-time targets, comma-separated (sm86,sm89,sm120 or current); default: all."),
    target: Optional[str] = typer.Option(None, "--target", help="Where the engine runs (jetpack5, jetpack6.0, jetpack6, trt10, trt11, rtx, orin-dla, xavier-dla): refused when it contradicts the export's recorded target or the TensorRT installed here; a DLA target builds for DLA core 0 with GPU fallback. Default: the recorded target."),
    force: bool = typer.Option(False, "--force", help="Replace an engine that already exists at --out (and its .json sidecar)."),
) -> None:
    """Build a serialized engine with the optimisation profile recorded at export.

    The engine gets a JSON sidecar (<engine>.json: TensorRT version, GPU, profile, precision,
    ONNX SHA-256) so parity/bench can refuse an engine built for another GPU or version.
    TensorRT 11 and TensorRT-RTX build strongly typed: precision comes from the ONNX.

    Examples:

      segexport engine deeplabv1.onnx

      # TensorRT 10 / Jetson, implicit INT8 from a calibration cache:
      segexport engine segnet.onnx --precision int8 --calib-cache segnet.cache

      # TensorRT-RTX ahead of time, no GPU needed:
      segexport engine unet.onnx --backend rtx --target-cc sm89,sm120
    """
    from segexport.api import build_engine

    from segexport.core.files import refuse_replacing

    out = out or model.with_suffix(".engine")
    if out.suffix.lower() != ".onnx":  # never a target at all: the builder says why, which helps more than "exists"
        refuse_replacing([(out, "--out")], force, inputs=[model, calib_cache])
    with Stages(f"building {out.name}") as status:
        status.update(f"building {out.name}")
        info = build_engine(onnx=model, out=out, backend=backend, precision=precision, calib_cache=calib_cache,
                            workspace=workspace, timing_cache=timing_cache, version_compat=version_compat,
                            hardware_compat=hardware_compat, target_cc=target_cc or (), target=target).info
    console.print(f"[bold green]✓[/] wrote [bold]{out}[/] ({info.engine_bytes / 1e6:.1f} MB, {info.precision}, "
                  f"{info.backend} {info.tensorrt_version}, built in {info.build_seconds:.1f}s) + {out.name}.json")
