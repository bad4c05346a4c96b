"""``segexport bench``: latency and throughput of PyTorch, ONNX Runtime and TensorRT side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from segexport.cli.common import console, parse_size
from segexport.errors import UserError


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)


def bench_command(
    model: Optional[str] = typer.Option(None, "--model", help="Zoo name or module:factory (default: the one recorded in --onnx)."),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="An exported ONNX; without it only PyTorch backends run."),
    engine: Optional[Path] = typer.Option(None, "--engine", help="A TensorRT engine (backend trt)."),
    backends: str = typer.Option("torch,ort-cpu", "--backends", help="Comma-separated: torch, torch-cuda, torch-cuda-fp16, ort-cpu, ort-cuda, ort-trt, trt."),
    batch: str = typer.Option("1", "--batch", help="Batch sizes to sweep, e.g. 1,4,8 (ONNX must be dynamic in batch for >1 unless exported so)."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="HxW (default: the ONNX's or the model's)."),
    width: float = typer.Option(1.0, "--width", help="Width multiplier for --model without --onnx."),
    num_classes: int = typer.Option(21, "--num-classes"),
    warmup: int = typer.Option(5, "--warmup", help="Untimed iterations first."),
    iterations: int = typer.Option(20, "--iterations", help="Timed iterations (ignored with --duration)."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Time for this many seconds instead of --iterations."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write results as JSON (usable as a --baseline later)."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="A previous --json: fail when slower than it."),
    max_regression: str = typer.Option("10%", "--max-regression", help="Allowed p50 slowdown vs --baseline."),
    trust_model_code: bool = typer.Option(False, "--trust-model-code", help="Let a module:factory recorded in the ONNX's metadata be imported and run (off: only zoo names are read from a file)."),
) -> None:
    """Measure mean/std/min/p50/p90/p99 latency and images/s per backend and batch.

    Timing is trtexec-style: warm-up, then timed iterations; CUDA events on the GPU,
    perf_counter_ns on the CPU. Speedups are against PyTorch eager (CPU) in the same run.
    Backends that cannot run here are listed with the reason. With --baseline, exit 1 when
    any backend's p50 got slower than --max-regression.

    Examples:

      segexport bench --onnx deeplabv1.onnx --backends torch,ort-cpu

      segexport bench --onnx unet.onnx --batch 1,4 --json now.json --baseline main.json --max-regression 10%
    """
    import platform

    import numpy as np

    from segexport.checks.latency import (add_speedups, check_baseline, check_same_work, check_timing, measure,
                                          parse_regression, read_baseline, to_json)
    from segexport.checks.runners import available_backends, make_runner
    from segexport.cli.common import check_output_path
    from segexport.models.contract import check_forward
    from segexport.models.loading import check_input_size, load_model

    if onnx is None and model is None:
        raise UserError("give --model, --onnx or both (e.g. segexport bench --model deeplabv1)")
    record = None
    if onnx is not None:
        from segexport.exporter.metadata import read_record

        record = read_record(onnx)
    try:
        batches = sorted({int(b) for b in batch.split(",") if b.strip()})
    except ValueError:
        raise UserError(f"--batch {batch!r} must be integers, e.g. 1,4,8") from None
    from segexport.core.limits import MAX_BATCH, check_elements

    if not batches or min(batches) < 1 or max(batches) > MAX_BATCH:
        raise UserError(f"--batch values must be 1..{MAX_BATCH}")
    check_timing(warmup, iterations, duration)  # before models load: a bad count costs nothing
    from segexport.core.limits import MAX_ITERATIONS

    if max(warmup, iterations) > MAX_ITERATIONS:
        raise UserError(f"--warmup and --iterations must be at most {MAX_ITERATIONS} (use --duration for long runs)")
    names = [b.strip() for b in backends.split(",") if b.strip()]
    if engine is not None:  # an engine given is an engine to time, as in parity
        if not engine.is_file():
            raise UserError(f"engine {str(engine)!r} not found: build one with `segexport engine`")
        if "trt" not in names:
            names.append("trt")
    size = parse_size(input_size) if input_size else (record.preprocess.input_size if record else None)
    regression = parse_regression(max_regression)
    if json_out is not None:
        check_output_path(json_out, "--json")
    base = read_baseline(baseline) if baseline is not None else None  # a bad baseline costs no timing run
    if base is not None and json_out is not None and json_out.resolve() == base.path.resolve():
        raise UserError("--json and --baseline are the same file: the run would be compared with itself; "
                        "write the new results elsewhere (e.g. --json now.json)")
    from segexport.core.files import refuse_overwriting_inputs

    refuse_overwriting_inputs({"--json": json_out}, [onnx, engine, engine and Path(str(engine) + ".json"), baseline])
    if record is not None and model is not None and model != record.model:
        raise UserError(f"--model {model} is not the model {Path(onnx).name} was exported from ({record.model}): "
                        "drop --model, bench reads it from the ONNX")
    torch_model = None
    if any(n.startswith("torch") for n in names):
        from segexport.models.loading import model_from_file

        ref = model or model_from_file(record.model, f"{Path(onnx).name}'s metadata", trust_model_code=trust_model_code)
        loaded = load_model(ref, num_classes=record.num_classes if record else num_classes,
                            width=record.width if record else width)
        torch_model = loaded.model
        size = size or loaded.spec.default_input_size
        check_input_size(loaded.spec, size)
        if loaded.spec.family == "user":  # zoo models keep the contract by construction (and their tests)
            check_forward(loaded.name, torch_model, size, loaded.num_classes)
    if size is None:  # only ONNX backends, and no record to read a size from
        raise UserError("give --input-size HxW (e.g. 512x512)")
    if record is not None and tuple(size) != tuple(record.preprocess.input_size) and not (
            {"height", "width"} <= set(record.dynamic)):
        h, w = record.preprocess.input_size
        raise UserError(f"the ONNX is static at {h}x{w}, --input-size is {size[0]}x{size[1]}: drop --input-size "
                        "or re-export with --dynamic hw")
    if record is not None:
        for axis, value in zip(("height", "width"), size):
            r = record.dynamic.get(axis)
            if r is not None and not r.min <= value <= r.max:
                raise UserError(f"--input-size {size[0]}x{size[1]}: the ONNX's {axis} range is {r.min}..{r.max}; "
                                "stay inside it or re-export with a wider --hw-range")
    check_elements((max(batches), 3, *size), "a --batch input")
    if base is not None:
        check_same_work(base, {"model": model or (record.model if record else None), "input_size": list(size)})
    reasons = available_backends()
    stats, skipped = [], {}
    rng = np.random.default_rng(0)
    for name in names:
        if name not in reasons:
            raise UserError(f"unknown backend {name!r}: choose from {', '.join(reasons)}")
        if reasons[name]:
            skipped[name] = reasons[name]
            continue
        if name.startswith("ort") and onnx is None:
            skipped[name] = "needs --onnx"
            continue
        if name == "trt" and engine is None:
            skipped[name] = "needs --engine"
            continue
        for b in batches:
            if record is not None and not name.startswith("torch"):
                rng_b = record.dynamic.get("batch")
                if rng_b is None and b != record.batch:
                    skipped[f"{name} b{b}"] = f"ONNX batch is fixed at {record.batch} (export with --dynamic batch)"
                    continue
                if rng_b is not None and not rng_b.min <= b <= rng_b.max:
                    skipped[f"{name} b{b}"] = f"ONNX batch range is {rng_b.min}..{rng_b.max} (re-export with a wider --batch-range)"
                    continue
            feed = {"input": rng.standard_normal((b, 3, *size), dtype=np.float32)}
            runner = make_runner(name, onnx_path=onnx, engine_path=engine, model=torch_model,
                                 output_name=record.output_name if record else "logits")
            with console.status(f"timing {name} batch {b}", spinner="dots"):
                stats.append(measure(runner, feed, backend=name, batch=b, warmup=warmup,
                                     iterations=iterations, duration=duration))
    if not stats:
        raise UserError("no backend could run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    add_speedups(stats)
    _print(stats, skipped, size)
    meta = {"model": model or (record.model if record else None), "input_size": list(size),
            "warmup": warmup, "iterations": None if duration else iterations, "duration_s": duration,
            "machine": {"platform": platform.platform(), "processor": platform.processor()},
            "skipped": skipped}
    if json_out is not None:
        from segexport.cli.common import atomic_output

        with atomic_output(json_out) as tmp:
            tmp.write_text(to_json(stats, meta))
    if baseline is not None:
        compared = check_baseline(stats, base, regression, meta=meta)
        console.print("[green]✓[/] within baseline: " + ", ".join(compared))


def _print(stats, skipped, size) -> None:
    from rich.table import Table

    kinds = {s.memory_kind for s in stats if s.memory_kind}
    memory = {"cuda-allocated": "CUDA peak allocated", "rss-delta": "process RSS growth"}
    table = Table(title=f"latency at {size[0]}x{size[1]}, ms; speedup vs torch eager; MiB: "
                        + " / ".join(memory.get(k, k) for k in sorted(kinds)), title_justify="left")
    for col in ("backend", "batch", "mean", "p50", "p90", "p99", "img/s", "speedup", "MiB"):
        table.add_column(col, justify="right", no_wrap=True)
    for s in stats:
        speedup = "-" if s.speedup_vs_torch is None else f"{s.speedup_vs_torch:.2f}x" + (
            "" if s.speedup_baseline in (None, "torch") else f" vs {s.speedup_baseline}")
        table.add_row(s.backend, str(s.batch), *(_num(v) for v in (s.mean_ms, s.p50_ms, s.p90_ms, s.p99_ms, s.throughput)),
                      speedup, "-" if s.peak_memory_mb is None else f"{s.peak_memory_mb:.0f}")
    console.print(table)
    for name, reason in skipped.items():
        console.print(f"[dim]skipped {name}: {reason}[/]")


def _num(v: float) -> str:
    """Three significant figures at most five characters wide, so the table fits an 80-column CI log."""
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"
