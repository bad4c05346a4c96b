"""``segexport bench``: latency and throughput of PyTorch, ONNX Runtime and TensorRT side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from segexport.cli.common import Stages, console, parse_size, print_table
from segexport.errors import UserError


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)


def bench_command(
    model: Optional[str] = typer.Option(None, "--model", help="Zoo name or module:factory (default: the one recorded in --onnx)."),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="An exported ONNX; without it only PyTorch backends run."),
    engine: Optional[Path] = typer.Option(None, "--engine", help="A TensorRT engine (backend trt)."),
    backends: str = typer.Option("torch,ort-cpu", "--backends", help="Comma-separated: torch (eager fp32), torch-channels-last, torch-compile (inductor), torch-cuda, "
                                "torch-cuda-fp16 (autocast), torch-cuda-channels-last, torch-cuda-compile, ort-cpu, ort-cuda, ort-trt, trt."),
    batch: str = typer.Option("1", "--batch", help="Batch sizes to sweep, e.g. 1,4,8 (ONNX must be dynamic in batch for >1 unless exported so)."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="HxW (default: the ONNX's or the model's)."),
    width: float = typer.Option(1.0, "--width", help="Width multiplier for --model without --onnx."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", help="With --model and no --onnx (default: 21 for the zoo, a user factory's own)."),
    warmup: int = typer.Option(5, "--warmup", help="Untimed iterations first."),
    iterations: int = typer.Option(20, "--iterations", help="Timed iterations per backend (ignored with --duration)."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Time each batch for this many seconds, all backends together, instead of --iterations."),
    trials: int = typer.Option(5, "--trials", help="Split the timed iterations into this many trials: the spread of their medians is shown."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write results as JSON (usable as a --baseline later)."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="A previous --json: fail when slower than it."),
    max_regression: str = typer.Option("10%", "--max-regression", help="Allowed p50 slowdown vs --baseline."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML: one testcase per backend x batch (the baseline gate's verdict)."),
    trust_model_code: bool = typer.Option(False, "--trust-model-code", help="Let a module:factory recorded in the ONNX's metadata be imported and run (off: only zoo names are read from a file)."),
    force: bool = typer.Option(False, "--force", help="Replace --json / --junit files that already exist."),
) -> None:
    """Measure mean/std/min/p50/p90/p99 latency, its spread and images/s per backend and batch.

    Every backend is loaded and warmed up, then all are timed together, one inference of each in
    turn, so load from other jobs falls on all alike; CUDA events on the GPU, perf_counter_ns on
    the CPU. The rounds are split into --trials trials: "trials p10-p90" is the range of the trial
    medians and "spread" its width relative to their median. A speedup marked ~ is not a ranking:
    the two backends' ranges overlap (a warning line names them). Speedups are against PyTorch eager in the same run ("speedup") and
    against the fastest PyTorch backend of the run ("vs best", e.g. torch-compile or channels-last).
    torch.compile's first call for each shape is untimed and reported as compile time, apart.
    Backends that cannot run here are listed with the reason. With --baseline, exit 1 when
    any backend's p50 got slower than --max-regression.

    Examples:

      segexport bench --onnx deeplabv1.onnx --backends torch,ort-cpu

      segexport bench --onnx segnet.onnx --backends torch,torch-channels-last,torch-compile,ort-cpu

      segexport bench --onnx unet.onnx --batch 1,4 --json now.json --baseline main.json --max-regression 10%
    """
    from segexport.core.files import refuse_replacing, require_inputs

    require_inputs([(onnx, "--onnx", "ONNX file"), (engine, "--engine", "engine"), (baseline, "--baseline", "baseline")])

    refuse_replacing([(json_out, "--json"), (junit, "--junit")], force, inputs=[onnx, engine, baseline])
    from segexport.checks.bench import BenchOptions, run_bench
    from segexport.errors import CheckFailed

    try:
        batches = tuple(int(b) for b in batch.split(",") if b.strip())
    except ValueError:
        raise UserError(f"--batch {batch!r} must be integers, e.g. 1,4,8") from None
    opts = BenchOptions(model=model, onnx=onnx, engine=engine,
                        backends=tuple(b.strip() for b in backends.split(",") if b.strip()), batch=batches,
                        input_size=parse_size(input_size) if input_size else None, width=width,
                        num_classes=num_classes, warmup=warmup, iterations=iterations, duration=duration,
                        trials=trials, json_out=json_out, baseline=baseline, max_regression=max_regression, junit=junit,
                        trust_model_code=trust_model_code)
    with Stages("bench") as status:
        try:
            result = run_bench(opts, progress=status.update)
        except CheckFailed as exc:  # a regression: the table first, then the one-line verdict
            if exc.result is not None:
                status.stop()
                _print(exc.result.stats, exc.result.skipped, exc.result.input_size)
            raise
    _print(result.stats, result.skipped, result.input_size)
    if baseline is not None:
        console.print("[green]✓[/] within baseline: " + ", ".join(result.within_baseline))


def _print(stats, skipped, size) -> None:
    from rich.markup import escape
    from rich.table import Table

    from segexport.checks.latency import ranking_warning

    kinds = {s.memory_kind for s in stats if s.memory_kind}
    memory = {"cuda-allocated": "CUDA peak allocated", "rss-delta": "process RSS growth"}
    table = Table(title=f"latency at {size[0]}x{size[1]}, ms; trials p10-p90: range of the per-trial medians; "
                        "speedup vs torch eager (~: within the spread, not a ranking); MiB: "
                        + " / ".join(memory.get(k, k) for k in sorted(kinds)), title_justify="left")
    best = sorted({s.best_torch for s in stats if s.best_torch})
    if best:
        table.title += "; vs best: against the fastest PyTorch backend (" + ", ".join(best) + ")"
    for col in ("backend", "batch", "mean", "p50", "p90", "p99", "trials p10-p90", "spread", "img/s", "speedup",
                "vs best", "MiB"):
        table.add_column(col, justify="right", no_wrap=True)
    for s in stats:
        speedup = "-" if s.speedup_vs_torch is None else _x(s.speedup_vs_torch, s.speedup_ranked) + (
            "" if s.speedup_baseline in (None, "torch") else f" vs {s.speedup_baseline}")
        trials = "-" if s.trial_p10_ms is None else f"{_num(s.trial_p10_ms)}-{_num(s.trial_p90_ms)}"
        table.add_row(s.backend, str(s.batch), *(_num(v) for v in (s.mean_ms, s.p50_ms, s.p90_ms, s.p99_ms)), trials,
                      "-" if s.spread is None else f"{s.spread:.0%}", _num(s.throughput), speedup,
                      "-" if s.speedup_vs_best_torch is None else _x(s.speedup_vs_best_torch, s.vs_best_ranked),
                      "-" if s.peak_memory_mb is None else f"{s.peak_memory_mb:.0f}")
    print_table(console, table)
    warning = ranking_warning(stats)
    if warning:
        console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    for s in stats:
        if s.compile_s is not None:
            console.print(f"[dim]{s.backend} b{s.batch}: compiled in {s.compile_s:.1f} s (first call, not in the latency)[/]")
    for name, reason in skipped.items():
        console.print(f"[dim]skipped {name}: {reason}[/]")


def _x(ratio: float, ranked: bool | None) -> str:
    """A speedup; ``~`` in front when the spread cannot tell the two backends apart (add_rankings)."""
    return ("~" if ranked is False else "") + f"{ratio:.2f}x"


def _num(v: float) -> str:
    """Three significant figures at most five characters wide, so the table fits an 80-column CI log."""
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"
