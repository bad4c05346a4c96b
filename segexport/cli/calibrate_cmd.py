"""``segexport calibrate``: FP16 / INT8 for TensorRT 10 and 11 from one --precision."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from segexport.cli.common import console


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)


def calibrate_command(
    model: Path = typer.Argument(..., help="The fp32 ONNX from `segexport onnx`."),
    precision: str = typer.Option("int8", "--precision", help="fp16, int8, or best (lowest precision within the budget)."),
    data: str = typer.Option("synthetic", "--data", help="Image folder, .npy/.npz, or 'synthetic'. Preprocessed by the ONNX's contract."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Label PNGs for --data images: the budget becomes an mIoU drop."),
    eval_data: Optional[str] = typer.Option(None, "--eval-data", help="Held-out images for the accuracy check (default: --data; synthetic uses another seed)."),
    eval_labels: Optional[Path] = typer.Option(None, "--eval-labels", help="Labels for --eval-data."),
    calib_count: int = typer.Option(32, "--calib-count", help="Calibration samples (seeded sampling)."),
    eval_count: Optional[int] = typer.Option(None, "--eval-count", help="Samples for the accuracy check (default: all of --eval-data; synthetic: calib-count/2, at least 8)."),
    seed: int = typer.Option(0, "--seed"),
    method: str = typer.Option("percentile", "--method", help="INT8 calibration: percentile (99.99, default), minmax, or entropy (ONNX Runtime's KL histogram)."),
    max_miou_drop: Optional[float] = typer.Option(None, "--max-miou-drop", help="Limit in mIoU points vs fp32 (needs labels; default int8 1, fp16 0.5): sensitive layers stay float to meet it."),
    max_agreement_drop: Optional[float] = typer.Option(None, "--max-agreement-drop", help="Limit in % of confident pixels whose label may change vs fp32 (default int8 1, fp16 0.1): sensitive layers stay float to meet it."),
    keep_float: Optional[list[str]] = typer.Option(None, "--keep-float", help="PyTorch module to keep in float (repeatable; glob patterns; a module includes its submodules), e.g. the one `segexport debug` names."),
    rank_by: str = typer.Option("ort-cpu", "--rank-by", help="--precision best: 'ort-cpu' (measured ONNX Runtime CPU latency, a proxy) or 'tensorrt' (int8 before fp16, TensorRT's speed order)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output ONNX (default: MODEL.<precision>.onnx)."),
    trt_cache: Optional[Path] = typer.Option(None, "--trt-cache", help="Also write a TensorRT calibration cache (TensorRT <= 10, Jetson)."),
    target: Optional[str] = typer.Option(None, "--target", help="Where the engine runs (jetpack5, jetpack6.0, jetpack6, trt10, trt11, rtx, orin-dla, xavier-dla): the cache header names its TensorRT. Default: the target recorded at export; a different one is refused."),
    trt_version: Optional[str] = typer.Option(None, "--trt-version", help="TensorRT version the cache is for (default: installed, else 10.3.0)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the accuracy/latency figures as JSON to this file."),
    force: bool = typer.Option(False, "--force", help="Replace outputs that already exist (the reduced ONNX, --trt-cache, --json)."),
) -> None:
    """Reduce MODEL to FP16 or INT8 and measure what it costs, on the CPU.

    INT8 is explicit Q/DQ (symmetric, zero point 0, per-channel weights, conv-family inputs
    only): what TensorRT 11 requires and TensorRT 10 accepts. --trt-cache writes the same
    ranges as a TensorRT calibration cache for implicit INT8 on Jetson (trtexec --int8
    --calib=FILE). FP16 keeps float32 inputs/outputs and keeps in FP32 the nodes that would
    overflow in FP16, naming their PyTorch modules. Every artefact gets a provenance sidecar.

    Accuracy gate (always on): the reduced model's labels are compared with the fp32 ONNX on
    held-out images, on the pixels where fp32 is confident (top-2 margin >= 1 logit); it fails
    (exit 1, nothing written, --json still written) when more than 1 % (int8) / 0.1 % (fp16) of
    them change, or, with labels, mIoU drops more than 1 / 0.5 point. --max-agreement-drop and
    --max-miou-drop set those limits and keep the most sensitive layers in float to meet them;
    --keep-float MODULE keeps named modules in float. A reference with no confident pixels
    (an untrained network) is "not judged": said, never shown as a pass.

    Examples:

      segexport calibrate segnet.onnx --precision int8 --data images/ --calib-count 64 --trt-cache segnet.cache

      segexport calibrate unet.onnx --precision best --data synthetic --max-miou-drop 0.5

      segexport calibrate unet.onnx --precision int8 --json unet.int8.checks.json
    """
    from segexport.api import calibrate
    from segexport.core.files import refuse_replacing

    # before the work: one rule for every command (README, "What segexport overwrites")
    targets = [out] if out is not None else [model.with_name(f"{model.stem}.{p}.onnx") for p in
                                             (("int8", "fp16") if precision == "best" else (precision,))]
    refuse_replacing([*((t, "--out") for t in targets), (trt_cache, "--trt-cache"), (json_out, "--json")], force,
                     inputs=[model])
    from segexport.errors import CheckFailed

    try:
        result = _run_with_progress(lambda progress: calibrate(
            onnx=model, precision=precision, data=data, labels=labels, eval_data=eval_data, eval_labels=eval_labels,
            calib_count=calib_count, eval_count=eval_count, seed=seed, method=method, max_miou_drop=max_miou_drop,
            max_agreement_drop=max_agreement_drop, out=out, trt_cache=trt_cache, trt_version=trt_version,
            rank_by=rank_by, keep_float=tuple(keep_float or ()), target=target, progress=progress).details)
    except CheckFailed as exc:  # the gate failed: the figures and the JSON report still say why
        if exc.result is not None:
            _print_report(exc.result, synthetic_eval=(eval_data or data) == "synthetic")
            if json_out is not None:
                from segexport.cli.common import write_json

                write_json(json_out, {"schema": 1, **calibrate_json(exc.result)})
        raise
    _print_report(result, synthetic_eval=(eval_data or data) == "synthetic")
    if json_out is not None:
        from segexport.cli.common import write_json

        write_json(json_out, {"schema": 1, **calibrate_json(result)})
    if 0 < result.calib_samples < calib_count:
        console.print(f"  [yellow]note:[/] calibrated on {result.calib_samples} samples, all that {data} holds "
                      f"(--calib-count {calib_count})")


def _run_with_progress(run):
    """One rich progress bar: the step as its description, a bar when the step has a count; in a
    log or pipe (where a bar prints nothing) one line a stage instead."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if not console.is_terminal:
        from segexport.cli.common import Stages

        with Stages("calibrating") as stages:
            return run(lambda message, done=None, total=None: stages.update(message))

    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("calibrating", total=None)

        def progress(message: str, done: int | None = None, total: int | None = None) -> None:
            bar.update(task, description=message, completed=done or 0, total=total)

        return run(progress)


def _print_report(result, synthetic_eval: bool = False) -> None:
    from rich.table import Table

    gate = result.gate
    if gate is not None and not gate.passed:
        console.print(f"[bold red]✗[/] {result.out} ({result.precision}) not written: it fails the accuracy gate")
    elif gate is not None and not gate.judged:
        console.print(f"[bold yellow]⚠[/] wrote [bold]{result.out}[/] ({result.precision}) + {result.out.name}.json, "
                      "accuracy not judged")
    else:
        console.print(f"[bold green]✓[/] wrote [bold]{result.out}[/] ({result.precision}) + {result.out.name}.json")
    if gate is not None and gate.passed:
        console.print(f"  {'[yellow]note:[/] ' if not gate.judged else ''}{gate.line}")
    if result.trt_cache:
        console.print(f"  TensorRT calibration cache: {result.trt_cache} (+ .json sidecar)")
    if result.candidates:
        table = Table(title="--precision best: candidates (ORT CPU latency is a proxy for TensorRT's)")
        for col in ("precision", f"cost ({result.cost_kind})", "within budget", "ORT CPU ms", "layers kept float"):
            table.add_column(col, justify="right")
        for row in result.candidates:
            table.add_row(row["precision"], f"{row['cost']:.3f}", "yes" if row["within_budget"] else "no",
                          f"{row['ort_cpu_ms']:.2f}", str(row["kept_float"]))
        from segexport.cli.common import print_table

        print_table(console, table)
    if result.cost is not None:
        boundary = (f", boundary band {100 * result.boundary_agreement:.2f} %"
                    if result.boundary_agreement is not None else "")
        console.print(f"  accuracy cost: {result.cost:.3f} {result.cost_kind} vs fp32; label agreement with fp32 "
                      f"{100 * result.pixel_agreement:.2f} %{boundary}")
    if result.miou:
        synthetic = " (synthetic images: a check of the pipeline, not of accuracy)" if synthetic_eval else ""
        console.print("  mIoU (points of 100): " + ", ".join(f"{k} {v:.2f}" for k, v in result.miou.items()) + synthetic)
    lat = result.latency_ms
    gain = lat["fp32"] / lat[result.precision] if lat.get(result.precision) else float("nan")
    console.print(f"  ORT CPU latency (proxy, not a GPU figure): fp32 {lat['fp32']:.2f} ms, "
                  f"{result.precision} {lat[result.precision]:.2f} ms ({gain:.2f}x)")
    forced = sorted({k.module or k.node for k in result.kept_float if k.reason == "--keep-float"})
    if forced:
        console.print(f"  kept in float (--keep-float): {', '.join(forced)}")
    for k in result.kept_float:
        if k.reason != "--keep-float":
            console.print(f"  kept in float: {k.module or k.node} (recovers {k.recovered:.3f} {result.cost_kind} alone)")
    if result.range_fallback:
        # constant / all-zero tensors are mostly broadcast parameters (a GroupNorm's expanded
        # weight); the narrow-range ones are activations, which the user may want to look at
        flat = [k for k, v in result.range_fallback.items() if v in ("constant", "all zero")]
        narrow = [(k, v) for k, v in result.range_fallback.items() if v not in ("constant", "all zero")]
        listed = ", ".join(f"{k} ({v})" for k, v in narrow[:3]) + (f" (+{len(narrow) - 3} more)" if len(narrow) > 3 else "")
        console.print(f"  [yellow]note:[/] {len(result.range_fallback)} tensor(s) calibrated by minmax instead of "
                      f"histograms (exact for them): {len(flat)} constant or all zero"
                      + (f"; {len(narrow)} with a range too narrow to bin: {escape(listed)}" if narrow else "")
                      + f" (all named in {result.out.name}.json)")
    for r in result.fp16_blocked:
        console.print(f"  kept in FP32: {r.module or r.node} ({r.reason})")


def calibrate_json(result) -> dict:
    """The calibration's figures as data; paths as written (the sidecars hold relative ones)."""
    from dataclasses import asdict, is_dataclass

    plain = lambda v: asdict(v) if is_dataclass(v) else v  # noqa: E731
    return {"onnx": str(result.out), "precision": result.precision, "cost": result.cost, "cost_kind": result.cost_kind,
            "pixel_agreement": result.pixel_agreement, "boundary_agreement": result.boundary_agreement,
            "miou": result.miou, "latency_ms": result.latency_ms, "calib_samples": result.calib_samples,
            "kept_float": [plain(k) for k in result.kept_float], "fp16_blocked": [plain(b) for b in result.fp16_blocked],
            "candidates": result.candidates, "lint_warnings": result.lint_warnings,
            "trt_cache": None if result.trt_cache is None else str(result.trt_cache),
            "gate": None if result.gate is None else result.gate.to_dict(),
            "passed": result.gate is None or result.gate.passed}
