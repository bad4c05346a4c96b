"""``segexport deploy deepstream|triton``: bundles that load as they are on Jetson/DeepStream and Triton."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from segexport.cli.common import console

deploy_app = typer.Typer(
    help=("Deployment bundles from a segexport ONNX: DeepStream (nvinfer config, exact preprocessing, labels) "
          "and Triton model repositories, each with build_engine.sh for building the engine on the device."),
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")


_TARGET_TRT = typer.Option(None, "--target-trt", help="TensorRT version the target runs (e.g. 10.3 on JetPack 6): an --engine built by another is refused.")
_TARGET_CC = typer.Option(None, "--target-cc", help="Compute capability of the target GPU (e.g. 8.7 for Orin): an --engine built for another is refused.")
_REFERENCE = typer.Option(None, "--reference", help="A reduced (fp16/int8) MODEL: the fp32 ONNX it was calibrated from (default: the one its provenance sidecar names); it is re-checked against it before it ships.")
_MAX_AGREEMENT_DROP = typer.Option(None, "--max-agreement-drop", help="A reduced MODEL: % of confident pixels whose label may differ from fp32 (default: int8 1, fp16 0.1).")
_SELFCHECK_IMAGES = typer.Option(None, "--selfcheck-images", help="Folder of your own images for the bundle's self-check (up to 4 are taken; default: synthetic scenes). Their fp32 labels travel in selfcheck/; run python3 selfcheck/selfcheck.py on the device after building the engine.")
_MAX_MIOU_DROP = typer.Option(None, "--max-miou-drop", help="A reduced MODEL: mIoU points it may lose vs fp32 on held-out synthetic images (default: int8 1, fp16 0.5).")


def _say_selfcheck(bundle) -> None:
    check = bundle.selfcheck
    if check is None:
        return
    if check.judged:
        console.print(f"[bold green]✓[/] selfcheck/: {check.count} golden images ({check.images}); the bundle's ONNX in "
                      f"ONNX Runtime: {check.line.removeprefix('self-check ')}")
    else:
        console.print(f"[bold yellow]⚠[/] selfcheck/ written, but it cannot judge an engine: {check.line}")
    folder = getattr(bundle, "model_dir", bundle.out)  # Triton: the model's folder inside the repository
    console.print(f"  after building the engine on the device: python3 {folder}/selfcheck/selfcheck.py")


def _say_gate(gate) -> None:
    if gate is not None:
        mark = "[bold green]✓[/]" if gate.judged else "[bold yellow]⚠[/]"
        console.print(f"{mark} {gate.precision} vs its fp32 source: {gate.line}")


@deploy_app.command("deepstream")
def deepstream_command(
    model: Path = typer.Argument(..., help="ONNX from `segexport onnx` (or `segexport calibrate`)."),
    out: Path = typer.Option(..., "--out", "-o", help="New (or empty) folder for the bundle."),
    engine: Optional[Path] = typer.Option(None, "--engine", help="A TensorRT engine built from this bundle's ONNX (optional; the bundle builds one on the device)."),
    calib_cache: Optional[Path] = typer.Option(None, "--calib-cache", help="TensorRT calibration cache for INT8 from an FP32 ONNX (`segexport calibrate --trt-cache`)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32, fp16 or int8 (default: what the ONNX holds; int8 with --calib-cache)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="nvinfer batch-size (default: the export's batch)."),
    approximate: bool = typer.Option(False, "--approximate-normalization", help="Use nvinfer's single net-scale-factor instead of baking the exact normalisation into the ONNX; prints the label agreement it costs."),
    target_trt: Optional[str] = _TARGET_TRT,
    target_cc: Optional[str] = _TARGET_CC,
    reference: Optional[Path] = _REFERENCE,
    max_agreement_drop: Optional[float] = _MAX_AGREEMENT_DROP,
    max_miou_drop: Optional[float] = _MAX_MIOU_DROP,
    selfcheck_images: Optional[Path] = _SELFCHECK_IMAGES,
) -> None:
    """Write a DeepStream (Gst-nvinfer) bundle: config, ONNX, labels, deepstream-app snippet, build script.

    nvinfer has one net-scale-factor for all channels, so per-channel mean/std are baked into
    the ONNX as its first ops (exact, borders included) and checked on raw 0..255 pixels against
    exact preprocessing (>= 99.99 % label agreement) before anything is written.

    Engines for Jetson are built ON the Jetson: TensorRT engines only load on the GPU and
    TensorRT version that built them, and TensorRT-RTX targets only the architectures it lists
    (not Orin's sm87). Run the bundle's build_engine.sh (trtexec) on the device, or let
    DeepStream build the engine on first start.

    Examples:

      segexport deploy deepstream segnet.onnx --out segnet-ds --precision fp16

      # INT8 on JetPack 6 from the calibration cache segexport wrote:
      segexport deploy deepstream segnet.onnx --out segnet-ds8 --precision int8 --calib-cache segnet.cache
    """
    from segexport.deploy.bundle import parse_cc
    from segexport.deploy.deepstream import deploy_deepstream

    with console.status(f"writing {out.name}", spinner="dots"):
        bundle = deploy_deepstream(model, out, engine=engine, calib_cache=calib_cache, precision=precision,
                                   batch=batch, approximate_normalization=approximate, target_trt=target_trt,
                                   target_cc=parse_cc(target_cc), reference=reference,
                                   max_agreement_drop=max_agreement_drop, max_miou_drop=max_miou_drop,
                                   selfcheck_images=selfcheck_images)
    _say_gate(bundle.gate)
    a = bundle.agreement
    if bundle.baked:
        ties = (f"; the Softmax for nvinfer picks the other class at {a.softmax_ties} float-tied pixel(s)"
                if a.softmax_ties else "")
        console.print(f"[bold green]✓[/] exact preprocessing baked into {bundle.onnx.name}: {a.agreement:.4%} label "
                      f"agreement on {a.pixels} raw pixels ({a.images} images){ties}")
    else:
        console.print(f"[bold yellow]![/] approximate normalisation (net-scale-factor={bundle.net_scale_factor:.6g}): "
                      f"{a.agreement:.4%} label agreement with exact preprocessing, {1 - a.agreement:.4%} of labels "
                      f"change ({a.pixels} pixels, {a.images} images)")
    console.print(f"[bold green]✓[/] wrote [bold]{bundle.out}[/]: {', '.join(bundle.files)}")
    if not bundle.engine_included:
        console.print(f"  next, on the device: {bundle.out}/build_engine.sh  (writes {bundle.engine_name})")
    _say_selfcheck(bundle)


@deploy_app.command("triton")
def triton_command(
    model: Path = typer.Argument(..., help="ONNX from `segexport onnx` (or `segexport calibrate`)."),
    out: Path = typer.Option(..., "--out", "-o", help="The model repository (new, or one holding other models): MODEL goes into OUT/NAME."),
    engine: Optional[Path] = typer.Option(None, "--engine", help="A TensorRT engine built from MODEL: served as model.plan (tensorrt_plan)."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name in the repository (default: the export record's model)."),
    max_batch: Optional[int] = typer.Option(None, "--max-batch", help="max_batch_size (default: the dynamic batch range's max; static batch: 0)."),
    instances: int = typer.Option(1, "--instances", help="Model instances per GPU (instance_group count)."),
    target_trt: Optional[str] = _TARGET_TRT,
    target_cc: Optional[str] = _TARGET_CC,
    reference: Optional[Path] = _REFERENCE,
    max_agreement_drop: Optional[float] = _MAX_AGREEMENT_DROP,
    max_miou_drop: Optional[float] = _MAX_MIOU_DROP,
    force: bool = typer.Option(False, "--force", help="Replace OUT/NAME if the repository already has a model of that name."),
    selfcheck_images: Optional[Path] = _SELFCHECK_IMAGES,
) -> None:
    """Add MODEL to a Triton model repository: OUT/NAME/config.pbtxt and OUT/NAME/1/model.onnx (or model.plan).

    OUT may be new or already hold other models; only OUT/NAME is written (refused if it exists,
    unless --force), and build_engine.sh and bundle.json go inside it, beside config.pbtxt.

    Input/output names, types and dims come from the ONNX (-1 for dynamic H/W); max_batch_size
    and dynamic batching from the exported batch range; the preprocessing contract and class
    names go into parameters. A plan (--engine) must have been built from MODEL by TensorRT on
    the serving GPU; build_engine.sh builds one there.

    Examples:

      segexport deploy triton unet.onnx --out models

      segexport deploy triton segnet.onnx --out models          # a second model in the same repository

      segexport deploy triton unet.onnx --out models --engine unet.engine --instances 2 --force
    """
    from segexport.deploy.bundle import parse_cc
    from segexport.deploy.triton import deploy_triton

    with console.status(f"writing {out.name}", spinner="dots"):
        bundle = deploy_triton(model, out, engine=engine, name=name, max_batch=max_batch, instances=instances,
                               target_trt=target_trt, target_cc=parse_cc(target_cc), reference=reference,
                               max_agreement_drop=max_agreement_drop, max_miou_drop=max_miou_drop, force=force,
                               selfcheck_images=selfcheck_images)
    _say_gate(bundle.gate)
    console.print(f"[bold green]✓[/] wrote [bold]{bundle.model_dir}[/] ({bundle.platform}, max_batch_size "
                  f"{bundle.max_batch_size}, {bundle.instances} instance(s)): {', '.join(bundle.files)}")
    console.print(f"  serve: tritonserver --model-repository={bundle.out}")
    console.print(f"  a TensorRT plan, on the serving GPU: {bundle.model_dir}/build_engine.sh")
    _say_selfcheck(bundle)
