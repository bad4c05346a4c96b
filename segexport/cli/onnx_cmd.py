"""``segexport onnx``: export a model to TensorRT-ready ONNX and prove it matches PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from segexport.cli.common import Stages, console, parse_model_args, parse_size, print_table
from segexport.errors import UserError


def register(app: typer.Typer) -> None:
    app.command("onnx")(onnx_command)


def _parse_range(text: str | None, flag: str, parse) -> tuple | None:
    if text is None:
        return None
    lo, sep, hi = text.partition(":")
    if not sep:
        raise UserError(f"{flag} {text!r} must be MIN:MAX, e.g. {'256x256:1024x1024' if 'hw' in flag else '1:8'}")
    return parse(lo), parse(hi)


def _int(flag: str):
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise UserError(f"{flag} value {text!r} is not an integer") from None
    return parse


def onnx_command(
    model: str = typer.Option("deeplabv1", "--model", "-m", help="Zoo name (see `segexport models`) or package.module:factory / path/file.py:factory."),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Checkpoint (state_dict) loaded with torch.load(weights_only=True)."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", help="Number of classes the network predicts (default: 21 for the zoo; a user factory's own default, its checkpoint's head, or its output)."),
    width: float = typer.Option(1.0, "--width", help="Channel width multiplier (1.0 = the paper's network)."),
    model_arg: Optional[List[str]] = typer.Option(None, "--model-arg", help="key=value passed to the model factory (repeatable)."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="HxW to export at (default: the model's). With --dynamic this is the profile's opt size."),
    batch: int = typer.Option(1, "--batch", help="Batch size (the opt batch when --dynamic batch)."),
    dynamic: Optional[str] = typer.Option(None, "--dynamic", help="Dynamic axes: hw, batch or batch,hw. Min/opt/max are recorded for TensorRT profiles."),
    hw_range: Optional[str] = typer.Option(None, "--hw-range", help="MINxMIN:MAXxMAX for --dynamic hw (default: half to double --input-size)."),
    batch_range: Optional[str] = typer.Option(None, "--batch-range", help="MIN:MAX for --dynamic batch (default 1:max(8, batch))."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset (18..22; 18 parses in TensorRT 10.x and 11). With a TensorRT 8 --target the export is converted to its opset (17)."),
    target: Optional[str] = typer.Option(None, "--target", help="Where the engine runs: jetpack5 (TensorRT 8.5.2), jetpack6.0 (8.6.2), jetpack6 (10.3), trt10, trt11, rtx, orin-dla, xavier-dla. Sets the opset and lint matrix; recorded for calibrate and deploy."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output path (default: <model>.onnx in the current directory)."),
    output: Optional[str] = typer.Option(None, "--output", help="Which entry of a dict/tuple/object output to export (default: 'out' of a torchvision dict, 'logits' of a Hugging Face output; an index for a tuple)."),
    upsample_logits: bool = typer.Option(False, "--upsample-logits", help="Append a bilinear resize (align_corners=False) of low-resolution logits to the input size, as Hugging Face's post-processing does; recorded in the metadata."),
    argmax: bool = typer.Option(False, "--argmax", help="Append an ArgMax head: output int32 N x H x W labels instead of N x C x H x W logits."),
    unpool: str = typer.Option("mask", "--unpool", help="mask: rewrite MaxPool-indices + MaxUnpool with TensorRT-safe ops (bit-exact); native: keep ONNX MaxUnpool (ONNX Runtime only)."),
    no_slim: bool = typer.Option(False, "--no-slim", help="Skip onnxslim graph simplification."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the ONNX Runtime vs PyTorch check."),
    no_lint: bool = typer.Option(False, "--no-lint", help="Skip the TensorRT op-support lint (--unpool native skips it by itself)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the verification inputs."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, or fp16/int8/best: also write <out>.<precision>.onnx via `segexport calibrate` (TensorRT 11 style)."),
    calib_data: str = typer.Option("synthetic", "--calib-data", help="With --precision fp16/int8/best: image folder, .npy/.npz, or 'synthetic'."),
    calib_count: int = typer.Option(32, "--calib-count", help="With --precision: calibration samples."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the checks (verification, lint, calibration) as JSON to this file."),
    force: bool = typer.Option(False, "--force", help="Replace outputs that already exist (the ONNX, <out>.<precision>.onnx, --json)."),
) -> None:
    """Export MODEL to ONNX that TensorRT parses, and verify it against PyTorch.

    The export is linted against TensorRT's ONNX support and run in ONNX Runtime on seeded
    inputs (plus the min/max shapes when dynamic); it fails (exit 1) when pixel agreement is
    below 99.99 % or max-abs exceeds 1e-4 x max|reference|, unless PyTorch itself fails those
    checks against its own float32-jittered input: then the export is held to that noise floor
    (labels at most 0.5 pt below PyTorch's own worst jittered sample, the 99th percentile of
    |diff| at most twice the floor's and never looser than 1e-4; the maximum is reported, not
    gated), and its row reads "pass, held to floor" (docs/export.md, "noise floor"). Nothing is written
    unless all checks pass. With --precision fp16/int8 the reduced ONNX must also pass
    calibrate's accuracy gate (see `segexport calibrate --help`).

    Examples:

      segexport onnx --model deeplabv1

      segexport onnx --model segnet --dynamic hw --input-size 360x480 --hw-range 240x320:720x960

      segexport onnx --model mypkg.nets:build --model-arg in_channels=3 --weights best.pt

      segexport onnx --model nets.py:segformer --upsample-logits --input-size 64x64   # HF-style .logits at 1/4

      segexport onnx --model nets.py:deeplabv3 --output aux    # a torchvision dict's other head

      segexport onnx --model unet --width 0.25 --precision int8 --json unet.checks.json
    """
    from segexport.api import ExportResult, default_export_path, export
    from segexport.cli.common import check_output_path
    from segexport.core.files import refuse_replacing, require_inputs
    from segexport.errors import CheckFailed

    source = model.rpartition(":")[0]
    require_inputs([(weights, "--weights", "weights file"),
                    (source if source.endswith(".py") else None, "--model", "model file")])

    out_path = out if out is not None else default_export_path(model)
    reduced_path = out_path.with_name(f"{out_path.stem}.{precision}.onnx") if precision in ("fp16", "int8") else None
    refuse_replacing([(out_path, "--out"), (reduced_path, "--out"), (json_out, "--json")], force,
                     inputs=[weights, model.partition(":")[0] if model.partition(":")[0].endswith(".py") else None])
    if json_out is not None:
        check_output_path(json_out, "--json")  # before the work: a typo costs nothing
    if unpool == "native" and not no_lint:
        console.print("[yellow]note:[/] --unpool native keeps ONNX MaxUnpool, which TensorRT cannot parse; lint skipped")
    with Stages("exporting") as status:
        try:
            result = export(
                model=model, out=out, weights=weights, num_classes=num_classes, width=width,
                output_key=output, upsample_logits=upsample_logits,
                model_args=parse_model_args(model_arg), input_size=parse_size(input_size) if input_size else None,
                batch=batch, dynamic=dynamic or (),
                hw_range=_parse_range(hw_range, "--hw-range", lambda t: parse_size(t, "--hw-range")),
                batch_range=_parse_range(batch_range, "--batch-range", _int("--batch-range")),
                opset=opset, target=target, argmax=argmax, unpool=unpool, slim=not no_slim, verify=not no_verify, lint=not no_lint,
                seed=seed, precision=precision, calib_data=calib_data, calib_count=calib_count,
                progress=status.update)
        except CheckFailed as exc:  # calibration failed after a good export: say what was written first
            if isinstance(exc.result, ExportResult) and exc.result.onnx is not None:
                status.stop()
                _print_result(exc.result.details)
                if exc.result.calibration is not None:
                    console.print(f"[bold red]✗[/] {exc.result.calibration.out} not written: it fails the accuracy gate")
                _write_json(json_out, exc.result)
            raise
    _print_result(result.details)
    _say_if_untrained(result.details.record)
    if result.calibration is not None:
        reduced = result.calibration
        gate = reduced.gate
        mark, tail = ("[bold yellow]⚠[/]", "accuracy not judged") if gate is not None and not gate.judged else \
            ("[bold green]✓[/]", "accuracy gate passed")
        console.print(f"{mark} wrote [bold]{reduced.out}[/] ({reduced.precision}; label agreement with fp32 "
                      f"{100 * reduced.pixel_agreement:.2f} %, {tail}; details: segexport calibrate --help)")
    _write_json(json_out, result)


def _write_json(json_out, result) -> None:
    """The export's checks, and the calibration's (passed or not), when --json asks for them."""
    if json_out is None:
        return
    from segexport.cli.calibrate_cmd import calibrate_json
    from segexport.cli.common import write_json

    doc = export_json(result.details)
    if result.calibration is not None:
        doc["calibrate"] = calibrate_json(result.calibration)
    write_json(json_out, doc)


def _say_if_untrained(record) -> None:
    from segexport.models.registry import UNTRAINED, is_untrained

    if is_untrained(record.model, record.weights_sha256):
        console.print(f"  [yellow]note:[/] {UNTRAINED}: the graph and its checks are real, its labels are noise "
                      "until you export with --weights")


def export_json(result) -> dict:
    """The export's checks as data (``schema`` bumps on an incompatible change)."""
    from dataclasses import asdict

    from segexport.exporter.export import unchecked_shapes

    lint = result.lint
    return {
        "schema": 1, "onnx": str(result.path), "sha256": _sha(result.path), "record": asdict(result.record),
        "nodes": sum(result.onnx_ops.values()), "ops": result.onnx_ops, "seconds": result.seconds,
        "lint": None if lint is None else {"errors": len(lint.errors), "warnings": len(lint.warnings),
                                           "parser": lint.parser, "findings": [asdict(f) for f in lint.findings]},
        "verify": None if result.verify is None else [
            {"shape": list(r.shape), "input": r.input, "metrics": asdict(r.metrics), "passed": r.passed,
             "checks_nothing": r.checks_nothing, "held_to_floor": r.held_to_floor,
             "checks": [asdict(c) for c in r.checks],
             "noise_floor": None if r.noise_floor is None else asdict(r.noise_floor)} for r in result.verify],
        "passed": not any(r.failed for r in result.verify or []) and not unchecked_shapes(result.verify or [])
        and not (lint and lint.errors),
    }


def _sha(path) -> str:
    from segexport.core.hashing import sha256_file

    return sha256_file(path)


def _print_result(result) -> None:
    from rich.table import Table

    from segexport.core.noise_floor import SLACK_ABS, SLACK_AGREEMENT

    from rich.markup import escape

    rec = result.record
    for note in getattr(result, "notes", ()):  # duck-typed results (tests, API users) may carry none
        console.print("[yellow]note:[/] " + escape(note))
    console.print(f"[bold green]✓[/] wrote [bold]{result.path}[/] ({result.path.stat().st_size / 1e6:.1f} MB, "
                  f"{sum(result.onnx_ops.values())} nodes, opset {rec.opset})")
    if rec.dynamic:
        console.print("  dynamic: " + ", ".join(f"{k} {v.min}/{v.opt}/{v.max}" for k, v in rec.dynamic.items()) + " (min/opt/max)")
    if result.lint is not None:
        console.print(f"  lint: {len(result.lint.errors)} errors, {len(result.lint.warnings)} warnings"
                      + ("" if not result.lint.warnings else "  (details: segexport lint " + str(result.path) + ")"))
    if result.verify:
        table = Table(title="ONNX Runtime vs PyTorch (fp32)", title_justify="left")
        for col in ("input", "max |diff|", "max |ref|", "pixel agreement", "result"):
            table.add_column(col, justify="right")
        for row in result.verify:
            m = row.metrics
            fmt = lambda v: "-" if v is None else f"{v:.2e}"  # noqa: E731 - argmax exports have no logits
            table.add_row("x".join(map(str, row.shape)) + f" {row.input}", fmt(m.max_abs), fmt(m.ref_max_abs),
                          f"{100 * m.pixel_agreement:.4f} %",
                          "[red]FAIL[/]" if row.failed else "[yellow]checks nothing[/]" if row.checks_nothing
                          else "[yellow]pass, held to floor[/]" if row.held_to_floor else "[green]pass[/]")
        print_table(console, table)
        for why in dict.fromkeys(r.checks_nothing for r in result.verify if r.checks_nothing):
            seen = ", ".join("x".join(map(str, r.shape)) + f" {r.input}" for r in result.verify if r.checks_nothing == why)
            console.print(f"  [yellow]note:[/] {seen}: {why}, so a wrong graph would match it too; the other rows "
                          "did the checking")
        for row in result.verify:
            if row.noise_floor is not None:
                f = row.noise_floor
                verdict = ("it is unstable at float32, so the export was held to that noise floor (labels within "
                           f"{100 * SLACK_AGREEMENT:g} pt of it, p99 |diff| within {SLACK_ABS:g}x its own; the maximum is "
                           "reported, not gated)" if row.held_to_floor else "it is stable, so the strict contract stands")
                console.print(f"  [yellow]note:[/] at {'x'.join(map(str, row.shape))} ({row.input}) PyTorch against itself under "
                              f"float32-level input jitter: {100 * f.pixel_agreement:.3f} % labels, max-abs {fmt(f.max_abs)}; "
                              + verdict)
    steps = ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items())
    console.print(f"  {sum(result.seconds.values()):.1f} s ({steps})")  # one line at 80 columns
