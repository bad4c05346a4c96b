"""Latency and throughput of PyTorch, ONNX Runtime and TensorRT side by side: the library half
of ``segexport bench`` (the CLI parses flags and prints the table; :func:`segexport.bench`
calls this).

Every bad input is refused before a model loads or a timer starts, in the order the CLI has
always checked them, so a typo in the last flag costs nothing.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from segexport.errors import CheckFailed, UserError


@dataclass
class BenchOptions:
    model: str | None = None
    onnx: Path | None = None
    engine: Path | None = None
    backends: tuple[str, ...] = ("torch", "ort-cpu")
    batch: tuple[int, ...] = (1,)
    input_size: tuple[int, int] | None = None
    width: float = 1.0
    num_classes: int | None = None  # with --model alone: 21 for the zoo, a user factory's own
    warmup: int = 5
    iterations: int = 20
    duration: float | None = None
    trials: int = 5  # the iterations (or duration) split into this many trials: their medians' spread
    json_out: Path | None = None
    junit: Path | None = None
    baseline: Path | None = None
    max_regression: str | float = "10%"
    trust_model_code: bool = False  # a module:factory recorded in the ONNX's metadata may run (the user said so)


@dataclass
class BenchResult:
    stats: list[Any]  # segexport.checks.latency.LatencyStats, one per (backend, batch)
    skipped: dict[str, str]  # backend (or "backend bN") -> why it did not run here
    input_size: tuple[int, int]
    meta: dict[str, Any]
    json_out: Path | None = None
    junit: Path | None = None
    within_baseline: list[str] = field(default_factory=list)  # rows compared with --baseline
    passed: bool = True
    warning: str | None = None  # latency.ranking_warning: which backends the spread cannot rank


def _torch_models(model, names: list[str]) -> dict:
    """name -> the PyTorch model each torch backend runs: a copy for every one after the first.
    Why: the backends are active together while timed interleaved, and a runner moves its model
    in place (to CUDA, to channels-last), which would change the model under the others."""
    import copy

    return {name: model if i == 0 else copy.deepcopy(model) for i, name in enumerate(names)}


def run_bench(opts: BenchOptions, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Time every backend that can run here; raise CheckFailed (``.result`` set) on a regression."""
    from segexport.models.registry import check_model_request

    check_model_request(opts.model, opts.num_classes, opts.width)  # before torch is imported: a typo costs no wait
    import numpy as np

    from segexport.checks.latency import (add_rankings, add_speedups, check_baseline, check_same_work, check_timing,
                                          measure_interleaved, parse_regression, ranking_warning, read_baseline,
                                          to_json)
    from segexport.checks.torch_backends import add_best_torch_speedups
    from segexport.checks.runners import available_backends, make_runner
    from segexport.core.files import atomic_output, check_output_path

    say = progress or (lambda _m: None)
    model, onnx, engine = opts.model, opts.onnx, opts.engine
    if onnx is None and model is None:
        raise UserError("give --model, --onnx or both (e.g. segexport bench --model deeplabv1)")
    record = None
    if onnx is not None:
        from segexport.exporter.metadata import read_record

        record = read_record(onnx)
    batches = sorted(set(opts.batch))
    from segexport.core.limits import MAX_BATCH, MAX_ITERATIONS, check_elements

    if not batches or min(batches) < 1 or max(batches) > MAX_BATCH:
        raise UserError(f"--batch values must be 1..{MAX_BATCH}")
    check_timing(opts.warmup, opts.iterations, opts.duration)  # before models load: a bad count costs nothing
    if not 1 <= opts.trials <= MAX_ITERATIONS:
        raise UserError("--trials must be >= 1 (5 by default: the iterations are split into trials to measure the spread)")
    if max(opts.warmup, opts.iterations or 0) > MAX_ITERATIONS:
        raise UserError(f"--warmup and --iterations must be at most {MAX_ITERATIONS} (use --duration for long runs)")
    names = list(opts.backends)
    if engine is not None:  # an engine given is an engine to time, as in parity
        engine = Path(engine)
        if not engine.is_file():
            raise UserError(f"engine {str(engine)!r} not found: build one with `segexport engine`")
        if "trt" not in names:
            names.append("trt")
    size = opts.input_size or (record.preprocess.input_size if record else None)
    regression = parse_regression(opts.max_regression) if isinstance(opts.max_regression, str) else opts.max_regression
    json_out = Path(opts.json_out) if opts.json_out is not None else None
    if json_out is not None:
        check_output_path(json_out, "--json")
    if opts.junit is not None:
        check_output_path(opts.junit, "--junit")
    base = read_baseline(opts.baseline) if opts.baseline is not None else None  # a bad baseline costs no timing run
    if base is not None and json_out is not None and json_out.resolve() == base.path.resolve():
        raise UserError("--json and --baseline are the same file: the run would be compared with itself; "
                        "write the new results elsewhere (e.g. --json now.json)")
    from segexport.core.files import refuse_overwriting_inputs

    refuse_overwriting_inputs({"--json": json_out}, [onnx, engine, engine and Path(str(engine) + ".json"), opts.baseline])
    if record is not None and model is not None and model != record.model:
        raise UserError(f"--model {model} is not the model {Path(onnx).name} was exported from ({record.model}): "
                        "drop --model, bench reads it from the ONNX")
    torch_model = None
    if any(n.startswith("torch") for n in names):
        from segexport.models.contract import check_forward
        from segexport.models.loading import check_input_size, load_model

        from segexport.models.loading import model_from_file

        ref = model or model_from_file(record.model, f"{Path(onnx).name}'s metadata",
                                       trust_model_code=opts.trust_model_code)
        loaded = load_model(ref, num_classes=record.num_classes if record else opts.num_classes,
                            width=record.width if record else opts.width,
                            output_key=record.output_key if record else None,
                            upsample_logits=record.upsample_logits if record else False)
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
    precision = record.precision if record else None
    if base is not None:
        check_same_work(base, {"model": model or (record.model if record else None), "input_size": list(size),
                               "precision": precision})
    reasons = available_backends()
    stats: list = []
    skipped: dict[str, str] = {}
    runnable: list[str] = []
    for name in names:
        if name not in reasons:
            raise UserError(f"unknown backend {name!r}: choose from {', '.join(reasons)}")
        if reason := reasons[name]:
            skipped[name] = reason
        elif name.startswith("ort") and onnx is None:
            skipped[name] = "needs --onnx"
        elif name == "trt" and engine is None:
            skipped[name] = "needs --engine"
        else:
            runnable.append(name)
    models = _torch_models(torch_model, [n for n in runnable if n.startswith("torch")])
    rng = np.random.default_rng(0)
    for b in batches:
        here = []
        for name in runnable:
            if record is not None and not name.startswith("torch"):
                rng_b = record.dynamic.get("batch")
                if rng_b is None and b != record.batch:
                    skipped[f"{name} b{b}"] = f"ONNX batch is fixed at {record.batch} (export with --dynamic batch)"
                    continue
                if rng_b is not None and not rng_b.min <= b <= rng_b.max:
                    skipped[f"{name} b{b}"] = f"ONNX batch range is {rng_b.min}..{rng_b.max} (re-export with a wider --batch-range)"
                    continue
            here.append(name)
        if not here:
            continue
        feed = {"input": rng.standard_normal((b, 3, *size), dtype=np.float32)}  # the same input for every backend
        runners = {name: make_runner(name, onnx_path=onnx, engine_path=engine, model=models.get(name),
                                     output_name=record.output_name if record else "logits") for name in here}
        say(f"timing {', '.join(here)} interleaved, batch {b}")
        stats += measure_interleaved(runners, feed, batch=b, warmup=opts.warmup, iterations=opts.iterations,
                                     duration=opts.duration, trials=opts.trials)
    if not stats:
        raise UserError("no backend could run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    add_speedups(stats)
    add_best_torch_speedups(stats)
    add_rankings(stats)
    warning = ranking_warning(stats)
    meta = {"model": model or (record.model if record else None), "input_size": list(size),
            "precision": precision, "warmup": opts.warmup, "iterations": None if opts.duration else opts.iterations,
            "duration_s": opts.duration, "trials": opts.trials, "spread_warning": warning,
            "machine": {"platform": platform.platform(), "processor": platform.processor()},
            "skipped": skipped}
    result = BenchResult(stats, skipped, tuple(size), meta, json_out=json_out, warning=warning)
    if json_out is not None:
        with atomic_output(json_out) as tmp:
            tmp.write_text(to_json(stats, meta))
    if opts.junit is not None:  # before the gate raises: a failed gate must show in the JUnit
        from segexport.checks.reports import write_bench_junit

        write_bench_junit(stats, skipped, base.p50_ms if base is not None else None, regression, opts.junit, meta)
    if base is not None:
        try:
            result.within_baseline = check_baseline(stats, base, regression, meta=meta)
        except CheckFailed as exc:
            result.passed = False
            exc.result = result
            raise
    return result
