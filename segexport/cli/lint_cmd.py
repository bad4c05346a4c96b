"""``segexport lint``: will TensorRT take this ONNX?"""

from __future__ import annotations

from pathlib import Path

import typer

from segexport.cli.common import console, print_table


def register(app: typer.Typer) -> None:
    app.command("lint")(lint_command)


def lint_command(
    model: Path = typer.Argument(..., help="The ONNX file to check."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    build: bool = typer.Option(False, "--build", help="Also build a serialized engine with the real builder (TensorRT or TensorRT-RTX)."),
    parser: str = typer.Option("auto", "--parser", help="auto (tensorrt, else tensorrt_rtx), trt, rtx, or none (static checks only)."),
    target: str = typer.Option(None, "--target", help="jetpack5, jetpack6.0, jetpack6, trt10, trt11, rtx, orin-dla, "
                               "xavier-dla: that TensorRT's support matrix and opset (DLA boards: per-layer placement). "
                               "Default: the target recorded at export, else trt10."),
) -> None:
    """Check MODEL against TensorRT's ONNX support; exit 1 on errors.

    Static checks follow onnx-tensorrt's operator support matrix for TensorRT 10 (unsupported
    ops, MaxPool indices, Resize modes/antialias, Q/DQ zero points, constant axes, INT64
    narrowing, dynamic dims without a profile). When tensorrt or tensorrt-rtx is installed,
    NVIDIA's real parser runs too, and --build builds an engine.

    Examples:

      segexport lint deeplabv1.onnx

      segexport lint segnet.onnx --build --json > lint.json

      segexport lint unet.onnx --target orin-dla
    """
    from segexport.api import lint
    from segexport.errors import CheckFailed

    try:
        report = lint(onnx=model, parser=parser, build=build, target=target).report
    except CheckFailed as exc:  # errors found: show them all, then the one-line verdict
        if exc.result is not None:
            _show(exc.result.report, as_json)
        raise
    _show(report, as_json)


def _show(report, as_json: bool) -> None:
    if as_json:
        from segexport.core.jsonio import dumps

        print(dumps({"schema": 1, **report.to_dict()}, indent=2))
    else:
        _print(report)


def _print(report) -> None:
    from rich.table import Table

    from segexport.exporter.lint import summarize

    if report.findings:
        table = Table(title=f"lint {report.path}", title_justify="left", show_lines=False)
        for col in ("severity", "code", "node", "PyTorch module", "message"):
            table.add_column(col, overflow="fold")
        for f in report.findings:
            colour = {"error": "red", "warning": "yellow"}.get(f.severity, "blue")
            table.add_row(f"[{colour}]{f.severity}[/]", f.code, f.node, f.module, f.message)
        print_table(console, table)
    if report.dla is not None:
        _print_dla(report.dla)
    parser = report.parser or f"not run ({report.parser_skipped})"
    console.print(f"parser: {parser}")
    if report.engine_bytes is not None:
        console.print(f"engine: built in {report.build_seconds:.2f}s, {report.engine_bytes / 1e6:.1f} MB")
    status = "[green]✓[/]" if not report.errors else "[red]✗[/]"
    console.print(f"{status} {summarize(report.findings)}")


def _print_dla(dla: dict) -> None:
    """Per layer: DLA or GPU, and why (the fallbacks are also findings above)."""
    from rich.table import Table

    table = Table(title=f"DLA placement ({dla['board']}, TensorRT {dla['trt_version']})", title_justify="left")
    for col in ("node", "op", "PyTorch module", "device", "why"):
        table.add_column(col, overflow="fold")
    for p in dla["placements"]:
        colour = "green" if p["device"] == "DLA" else "yellow"
        why = p["reason"] + ("" if p["checked"] else " (not certain statically)")
        table.add_row(p["node"], p["op"], p["module"], f"[{colour}]{p['device']}[/]", why)
    print_table(console, table)
    console.print(f"{dla['on_dla']}/{dla['layers']} layers on DLA, {dla['transitions']} GPU<->DLA transition(s), "
                  f"{dla['dla_segments']} DLA part(s). Not checkable on the CPU: " + "; ".join(dla["unchecked"]))
