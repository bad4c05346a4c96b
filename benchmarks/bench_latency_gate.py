"""Does the pipeline's latency gate fail on unchanged code? And does it catch a real slowdown?

    python benchmarks/bench_latency_gate.py            # ~2 min on 2 shared cores

Same artefact throughout (one tiny ONNX). A baseline is measured once, then:
  * 10 reruns of the *unchanged* artefact, alternating no extra load and one extra busy
    process (on top of whatever else the shared machine runs): each is judged by the
    pipeline's gate (:func:`segexport.checks.latency.judge_latency`) -> false failures;
    the old gate (one p50 of the artefact against the baseline's one p50) is judged on the
    same figures for comparison.
  * 10 reruns of the unchanged artefact on a machine 1.4x slower as a whole (both backends
    busy-wait 0.4x of each inference after it: the slow phase this VM enters for minutes at a
    time, 40 % apart) -> false failures too;
  * 10 reruns with an injected 1.5x slowdown: the ONNX Runtime runner really spends half of
    each inference's time again busy-waiting after it (so the work is 1.5x, measured by the
    same clock) -> every one must fail.
Every measurement uses the pipeline's adaptive bench (``--budget``, its ``bench_budget_s``: iterations
cut to fit the budget, trials stopped once the fastest iteration settles); ``--budget 0`` measures
the fixed counts. Writes benchmarks/results/latency_gate_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Slowed:
    """Wrap a Polygraphy runner so every inference takes ``factor`` times as long, for real."""

    def __init__(self, inner, factor: float) -> None:
        self.inner, self.factor, self._last = inner, factor, 0.0

    def __enter__(self):
        self.inner.__enter__()
        return self

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)

    def infer(self, feed):
        out = self.inner.infer(feed)
        timed = self.inner.last_inference_time()  # what the gate measures: ONNX Runtime's run
        start = time.perf_counter()
        until = start + (self.factor - 1) * timed
        while time.perf_counter() < until:  # real extra work on the CPU, timed by the same clock
            pass
        self._last = timed + (time.perf_counter() - start)
        return out

    def last_inference_time(self) -> float:
        return self._last


def _burner():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from segexport.checks.latency import judge_latency, measure_trials
    from segexport.pipeline.config import DEFAULTS
    from segexport.pipeline.steps import runner_factories, torch_threads
    from segexport.exporter.export import ExportOptions, export_onnx
    from segexport.models.registry import build_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="unet")
    p.add_argument("--width", type=float, default=0.125)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--reruns", type=int, default=10)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--max-regression", type=float, default=0.25)
    p.add_argument("--budget", type=float, default=10.0, help="measured seconds per measurement, the pipeline's "
                   "bench_budget_s (adaptive iterations, early stop once the fastest iteration settles); 0 = fixed counts")
    p.add_argument("--warmup", type=int, default=DEFAULTS.bench_warmup,
                   help="warm-up inferences of each fresh runner, every trial (the pipeline's bench_warmup)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads while timing (the pipeline's bench_threads; 0 = defaults)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latency_gate_cpu.json"))
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp())
    onnx_path = tmp / "m.onnx"
    export_onnx(ExportOptions(model=args.model, out=onnx_path, width=args.width, num_classes=4,
                              input_size=(args.size, args.size), verify=False, lint=False))
    import torch

    torch.manual_seed(0)
    model = build_model(args.model, num_classes=4, width=args.width).eval()
    feed = {"input": np.random.default_rng(0).standard_normal((1, 3, args.size, args.size), dtype=np.float32)}

    def run(factor: float = 1.0, machine: float = 1.0) -> dict:
        # the pipeline's own runners (one CPU thread each by default: see runner_factories)
        runners = runner_factories(["torch", "ort-cpu"], onnx_path, model, "logits", args.threads)
        for name in runners:
            slow = (factor if name == "ort-cpu" else 1.0) * machine
            if slow != 1.0:
                runners[name] = lambda plain=runners[name], slow=slow: Slowed(plain(), slow)
        with torch_threads(args.threads):
            return measure_trials(runners, feed, batch=1, trials=args.trials, warmup=args.warmup, iterations=args.iterations,
                                  budget_s=args.budget or None)

    base = run()
    rows = []
    for kind, factor, machine in (("unchanged", 1.0, 1.0), ("slow machine", 1.0, 1.4), ("slowed 1.5x", 1.5, 1.0)):
        for i in range(args.reruns):
            burner = _burner() if i % 2 else None
            try:
                now = run(factor, machine)
            finally:
                if burner is not None:
                    burner.terminate()
                    burner.wait()
            gate = judge_latency(now["ort-cpu"], base["ort-cpu"], backend="ort-cpu", batch=1,
                                 max_regression=args.max_regression)
            naive = now["ort-cpu"]["trial_medians_ms"][0] / base["ort-cpu"]["trial_medians_ms"][0] - 1
            rows.append({"kind": kind, "rerun": i + 1, "extra_load": bool(i % 2), "loadavg_1min": os.getloadavg()[0],
                         "passed": gate.passed, "best_ms": now["ort-cpu"]["best_ms"], "p50_ms": now["ort-cpu"]["p50_ms"],
                         "change_best": gate.change_best, "change_best_ratio": gate.change_best_ratio,
                         "change_ratio": gate.change_ratio, "noise": gate.noise,
                         "naive_change_p50": naive, "naive_passed": naive <= args.max_regression,
                         "ort_trial_medians_ms": now["ort-cpu"]["trial_medians_ms"],
                         "torch_trial_medians_ms": now["torch"]["trial_medians_ms"],
                         "torch_best_ms": now["torch"]["best_ms"],
                         "best_ratio_to_reference": now["ort-cpu"].get("best_ratio_to_reference")})
            r = rows[-1]
            ratio = "-" if r["change_ratio"] is None else f"{r['change_ratio']:+7.1%}"
            print(f"{kind:<13}#{i + 1:<2} load {'+1' if r['extra_load'] else ' 0'} (avg {os.getloadavg()[0]:4.1f})  "
                  f"fastest {r['change_best']:+7.1%}  ratio {ratio}  noise {r['noise']:6.1%}  "
                  f"gate {'pass' if r['passed'] else 'FAIL'}"
                  f"  | one-p50 gate {r['naive_change_p50']:+7.1%} {'pass' if r['naive_passed'] else 'FAIL'}", flush=True)
    unchanged = [r for r in rows if r["kind"] != "slowed 1.5x"]  # the artefact itself unchanged
    slowed = [r for r in rows if r["kind"] == "slowed 1.5x"]
    summary = {"false_failures": sum(not r["passed"] for r in unchanged), "unchanged_runs": len(unchanged),
               "caught": sum(not r["passed"] for r in slowed), "slowed_runs": len(slowed),
               # the gate before it judged the fastest iteration relative to PyTorch's: the fastest alone
               "fastest_only_false_failures": sum(r["change_best"] > args.max_regression for r in unchanged),
               "fastest_only_caught": sum(r["change_best"] > args.max_regression for r in slowed),
               "naive_false_failures": sum(not r["naive_passed"] for r in unchanged),
               "naive_caught": sum(not r["naive_passed"] for r in slowed)}
    print(json.dumps(summary))
    doc = {"command": "python benchmarks/" + Path(__file__).name + " " + " ".join(argv or sys.argv[1:]),
           "args": vars(args), "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                           "loadavg_at_end": os.getloadavg()},
           "baseline": {"ort-cpu": base["ort-cpu"], "torch": base["torch"]}, "reruns": rows, "summary": summary}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    ok = summary["false_failures"] == 0 and summary["caught"] == len(slowed)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
