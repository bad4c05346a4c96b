"""trtexec-style latency: warm-up, then timed iterations (or a duration), percentiles, throughput.

Each iteration's time is the runner's own ``last_inference_time()``: CUDA events for PyTorch on
the GPU, ``perf_counter_ns`` on the CPU, Polygraphy's timing of ``session.run`` / engine
execution for ONNX Runtime and TensorRT. Host-side feed preparation is outside the timing.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from segexport.errors import CheckFailed, UserError


@dataclass
class LatencyStats:
    backend: str
    batch: int
    iterations: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput: float  # images per second at p50
    speedup_vs_torch: float | None = None
    peak_memory_mb: float | None = None
    memory_kind: str | None = None  # "cuda-allocated" or "process-rss"


def measure(runner, feed: dict[str, np.ndarray], *, backend: str, batch: int, warmup: int = 5,
            iterations: int | None = 50, duration: float | None = None) -> LatencyStats:
    """Time ``runner.infer(feed)``; ``duration`` (s) overrides ``iterations`` when given."""
    if warmup < 0 or (iterations is not None and iterations < 1) or (duration is not None and duration <= 0):
        raise UserError("--warmup must be >= 0, --iterations >= 1 and --duration > 0")
    times: list[float] = []
    cuda_mem = backend.startswith("torch-cuda")
    with runner:
        if cuda_mem:
            import torch

            torch.cuda.reset_peak_memory_stats()
        for _ in range(warmup):
            runner.infer(feed)
        deadline = time.perf_counter() + duration if duration else None
        while True:
            runner.infer(feed)
            times.append(runner.last_inference_time() * 1e3)
            if deadline is not None:
                if time.perf_counter() >= deadline:
                    break
            elif len(times) >= (iterations or 1):
                break
        peak, kind = None, None
        if cuda_mem:
            import torch

            peak, kind = torch.cuda.max_memory_allocated() / 2**20, "cuda-allocated"
        else:
            peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process-rss"
    a = np.asarray(times)
    p50 = float(np.percentile(a, 50))
    return LatencyStats(
        backend=backend, batch=batch, iterations=len(times), mean_ms=float(a.mean()), std_ms=float(a.std()),
        min_ms=float(a.min()), p50_ms=p50, p90_ms=float(np.percentile(a, 90)), p99_ms=float(np.percentile(a, 99)),
        throughput=batch / (p50 / 1e3) if p50 > 0 else float("inf"), peak_memory_mb=peak, memory_kind=kind,
    )


def add_speedups(stats: list[LatencyStats]) -> None:
    """Speedup of each backend over PyTorch eager (CPU) at the same batch, from the same run."""
    base = {s.batch: s.p50_ms for s in stats if s.backend == "torch"}
    for s in stats:
        if s.batch in base and s.p50_ms > 0:
            s.speedup_vs_torch = base[s.batch] / s.p50_ms


def parse_regression(text: str) -> float:
    """``"10%"`` or ``"0.1"`` -> 0.10."""
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise UserError(f"--max-regression {text!r} is not a number: write e.g. 10%") from None
    if value < 0:
        raise UserError("--max-regression must be >= 0")
    return value


def check_baseline(stats: list[LatencyStats], baseline_path: str | Path, max_regression: float) -> list[str]:
    """Compare p50 per (backend, batch) with a previous ``--json``; raise CheckFailed on regressions."""
    path = Path(baseline_path)
    if not path.is_file():
        raise UserError(f"baseline {str(path)!r} not found: write one with `segexport bench ... --json FILE`")
    try:
        rows = json.loads(path.read_text())["results"]
        base = {(r["backend"], int(r["batch"])): float(r["p50_ms"]) for r in rows}
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"baseline {str(path)!r} is not a `segexport bench --json` file ({exc})") from exc
    regressions, compared = [], []
    for s in stats:
        key = (s.backend, s.batch)
        if key not in base:
            continue
        change = s.p50_ms / base[key] - 1
        compared.append(f"{s.backend} b{s.batch}: {change:+.1%}")
        if change > max_regression:
            regressions.append(f"{s.backend} batch {s.batch} p50 {s.p50_ms:.2f} ms vs baseline {base[key]:.2f} ms "
                               f"({change:+.1%} > {max_regression:.0%})")
    if not compared:
        raise UserError(f"baseline {str(path)!r} shares no (backend, batch) with this run")
    if regressions:
        raise CheckFailed(f"latency regression: {regressions[0]}" + (f" (+{len(regressions) - 1} more)" if len(regressions) > 1 else ""))
    return compared


def to_json(stats: list[LatencyStats], meta: dict) -> str:
    return json.dumps({**meta, "results": [asdict(s) for s in stats]}, indent=2) + "\n"
