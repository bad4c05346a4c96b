"""Parity and latency of the whole zoo: PyTorch (eager and at its best) vs ONNX Runtime fp32, CPU (or CUDA).

    python benchmarks/bench_zoo.py --width 1.0 --size 512 --iterations 5      # zoo_cpu.json (eager only, before torch-best)
    python benchmarks/bench_zoo.py --width 0.25 --size 256 --iterations 10 --warmup 2 --out benchmarks/results/zoo_best_cpu.json
    python benchmarks/bench_zoo.py --width 0.0625 --size 64 --iterations 2 --out /tmp/zoo.json   # smoke run
    python benchmarks/bench_zoo.py --size 512 --batches 1,8 --device cuda      # PyTorch CUDA baselines: zoo_cuda.json

Each model is exported with the real pipeline (mask unpool, lint, verify), then checked with
`segexport parity` (PyTorch rebuilt from the ONNX metadata vs ONNX Runtime, seeded inputs, the
command's own thresholds) and timed trtexec-style (warm-up, timed iterations, percentiles) for
the PyTorch backends (``--torch-backends``: eager, channels-last, torch.compile with inductor)
and ort-cpu in the same process; "vs best" is ORT's speedup over the fastest PyTorch backend of
the row, and each compile's time (first call, untimed) is in the JSON. ``--widths name=w`` runs a
model below ``--width`` where full width does not fit the time at hand; the width of every row is
in the table and the JSON. With --device cuda only the PyTorch baselines run on the GPU (eager
fp32, fp16 autocast, channels-last, torch.compile; ``--batches 1,8``; export and parity are
skipped, the fp16 row's agreement with fp32 eager is recorded instead). ``--precisions fp16,int8`` also calibrates each export
(`segexport calibrate`, synthetic data, default method) and times the reduced ONNX in ONNX
Runtime CPU as ``ort-cpu-fp16`` / ``ort-cpu-int8``, with its label agreement against the fp32
ONNX on held-out synthetic images (untrained weights: agreement, not accuracy; the accuracy
cost on trained fixtures is bench_precision.py's). Writes a JSON with the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table


def interleaved(runners: dict, feed: dict, *, batch: int, warmup: int, iterations: int) -> list:
    """All backends active at once, timed round by round (order alternating each round), so load from
    other jobs on a shared machine falls on every backend alike. Warm-up (and torch.compile's untimed
    first call) happens before the first round. No memory figure: the backends share the process."""
    from contextlib import ExitStack

    from segexport.checks.latency import summarize

    times: dict[str, list[float]] = {name: [] for name in runners}
    with ExitStack() as stack:
        for runner in runners.values():
            stack.enter_context(runner)
        for runner in runners.values():
            for _ in range(max(warmup, 1)):
                runner.infer(feed)
        names = list(runners)
        for i in range(iterations):
            for name in (names if i % 2 == 0 else names[::-1]):
                runners[name].infer(feed)
                times[name].append(runners[name].last_inference_time() * 1e3)
    stats = []
    for name, runner in runners.items():
        s = summarize(times[name], backend=name, batch=batch)
        s.compile_s = getattr(runner, "compile_s", None)
        stats.append(s)
    return stats


def main(argv: list[str] | None = None) -> int:
    import segexport
    from segexport.checks.latency import add_speedups, measure
    from segexport.checks.runners import make_runner  # timing interleaved needs the runners themselves
    from segexport.core.metrics import compare
    from segexport.errors import CheckFailed, SegexportError
    from segexport.models.loading import load_model
    from segexport.models.registry import get_spec

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="all")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--widths", default="", help="per-model overrides, e.g. deconvnet=0.5,fcdensenet103=0.5")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--torch-backends", default=None,
                   help="PyTorch backends to time (default: eager, channels-last and compile on the device)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for PyTorch and ORT alike (default: each library's own); 1 on a busy shared machine, "
                        "where multi-threaded PyTorch stalls on descheduled OpenMP threads far more than ORT")
    p.add_argument("--sequential", action="store_true",
                   help="time each backend's iterations in one block (as `segexport bench` did before issue 24) instead of interleaving "
                        "them round by round; interleaving is fairer when other jobs share the machine")
    p.add_argument("--batches", default="1", help="batch sizes, e.g. 1,8 (--device cuda only; CPU rows are batch 1)")
    p.add_argument("--precisions", default="", help="also time reduced-precision ONNX in ORT CPU, e.g. fp16,int8")
    p.add_argument("--calib-count", type=int, default=16)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    names = [s.name for s in segexport.list_models()] if args.models == "all" else args.models.split(",")
    widths = {k: float(v) for k, _, v in (w.partition("=") for w in args.widths.split(",") if w)}
    console = Console(width=None if sys.stdout.isatty() else 200)  # a log file keeps whole columns
    rows = []
    from segexport.checks.runners import available_backends
    from segexport.checks.torch_backends import add_best_torch_speedups

    default_torch = ("torch,torch-channels-last,torch-compile" if args.device == "cpu" else
                     "torch-cuda,torch-cuda-fp16,torch-cuda-channels-last,torch-cuda-compile")
    torch_backends = (args.torch_backends or default_torch).split(",")
    eager = "torch" if args.device == "cpu" else "torch-cuda"
    if eager not in torch_backends:
        p.error(f"--torch-backends must include {eager} (the eager baseline)")
    reasons = available_backends()
    unknown = [b for b in torch_backends if b not in reasons or not b.startswith("torch")]
    if unknown:
        p.error(f"--torch-backends: unknown {', '.join(unknown)}")
    if reasons[eager]:
        p.error(f"{eager}: {reasons[eager]}")
    skipped = {b: reasons[b] for b in torch_backends if reasons[b]}
    torch_backends = [b for b in torch_backends if not reasons[b]]
    for b, why in skipped.items():
        console.print(f"[dim]skipped {b}: {why}[/]")
    batches = [int(b) for b in args.batches.split(",")]
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)

    def runner_for(backend: str, onnx_path: Path):
        if backend != "ort-cpu" or args.threads is None:
            return make_runner(backend, onnx_path=onnx_path, model=model)
        import onnxruntime as ort
        from polygraphy.backend.onnxrt import OnnxrtRunner

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
        return OnnxrtRunner(ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"]), name=backend)
    if args.device == "cpu" and batches != [1]:
        p.error("--batches is for --device cuda; CPU rows are batch 1")
    backends = torch_backends + (["ort-cpu"] if args.device == "cpu" else [])
    precisions = [prec for prec in args.precisions.split(",") if prec]
    if precisions and (args.device != "cpu" or not set(precisions) <= {"fp16", "int8"}):
        p.error("--precisions takes fp16 and/or int8, on --device cpu")
    out = Path(args.out or Path(__file__).parent / "results" / f"zoo_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(complete: bool) -> None:
        """After every model too: a long run stopped early keeps the rows it measured (``complete`` says)."""
        import onnxruntime
        import torch

        out.write_text(json.dumps({
            "command": "python benchmarks/bench_zoo.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "complete": complete,
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                        "onnxruntime": onnxruntime.__version__,
                        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                        "load_average": list(os.getloadavg()), "threads": args.threads},  # a shared machine: how busy it was at the end
            "skipped": skipped, "results": rows}, indent=2, default=float) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            size = max(args.size, get_spec(name).min_size)
            width = widths.get(name, args.width)
            console.print(f"[bold]{name}[/] at {size}x{size}, width {width}")
            t0 = time.perf_counter()
            onnx_path = Path(tmp) / f"{name}.onnx"
            if args.device == "cpu":
                try:
                    segexport.export(model=name, out=onnx_path, width=width, input_size=(size, size))
                except SegexportError as exc:  # record it and go on: one failure must not lose the other rows
                    console.print(f"[red]{name}: export failed: {exc}[/]")
                    rows.append({"model": name, "size": size, "width": width, "export_error": str(exc),
                                 "parity": {"passed": False}, "latency": []})
                    write(complete=False)
                    continue
            export_s = time.perf_counter() - t0
            model = load_model(name, width=width).model
            x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
            stats = []
            for batch in batches:
                xb = np.repeat(x, batch, axis=0)
                if args.sequential:
                    for backend in backends:
                        console.print(f"  timing {backend} batch {batch}")
                        runner = runner_for(backend, onnx_path)
                        stats.append(measure(runner, {"input": xb}, backend=backend, batch=batch, warmup=args.warmup,
                                             iterations=args.iterations))
                else:
                    console.print(f"  timing {', '.join(backends)} interleaved, batch {batch}")
                    stats += interleaved({b: runner_for(b, onnx_path) for b in backends}, {"input": xb}, batch=batch,
                                         warmup=args.warmup, iterations=args.iterations)
            if args.device == "cpu":
                try:
                    report = segexport.parity(onnx=onnx_path, count=1, seed=0).report
                except CheckFailed as exc:  # a failed parity is a row of the table, not the end of the run
                    report = exc.result.report
                pair = report.pairs[0]
                m = pair.metrics
                parity = {"candidate": pair.candidate, "passed": pair.passed, "max_abs": m.max_abs,
                          "ref_max_abs": m.ref_max_abs, "abs_p99": m.abs_p99, "pixel_agreement": m.pixel_agreement,
                          "boundary_agreement": m.boundary_agreement, "held_to_floor": pair.held_to_floor,
                          "checks": {c.name: c.passed for c in pair.checks}}
            else:
                outputs = {}
                fp16 = next((b for b in backends if b.endswith("fp16")), backends[-1])
                for backend in (eager, fp16):
                    with make_runner(backend, model=model) as r:
                        outputs[backend] = np.asarray(r.infer({"input": x})["logits"])
                m = compare(outputs[eager], outputs[fp16])
                parity = {"candidate": fp16, "passed": None, "max_abs": m.max_abs, "ref_max_abs": m.ref_max_abs,
                          "pixel_agreement": m.pixel_agreement, "boundary_agreement": m.boundary_agreement}
            reduced = {}
            for prec in precisions:
                res = segexport.calibrate(onnx=onnx_path, precision=prec, calib_count=args.calib_count,
                                          eval_count=args.calib_count, out=Path(tmp) / f"{name}.{prec}.onnx").details
                stats.append(measure(runner_for("ort-cpu", res.out), {"input": x}, backend=f"ort-cpu-{prec}",
                                     batch=1, warmup=args.warmup, iterations=args.iterations))
                reduced[prec] = {"agreement_vs_fp32": res.pixel_agreement, "boundary_agreement": res.boundary_agreement}
                res.out.unlink(missing_ok=True)
            add_speedups(stats)
            add_best_torch_speedups(stats)
            rows.append({"model": name, "size": size, "width": width, "export_s": round(export_s, 1),
                         "parity": parity, "latency": [asdict(s) for s in stats],
                         **({"reduced_precision": reduced} if reduced else {})})
            onnx_path.unlink(missing_ok=True)
            write(complete=False)
    candidate = "ort-cpu" if args.device == "cpu" else None  # on CUDA: the fastest PyTorch against eager
    table = Table(title=f"zoo {args.device} (p50 ms; speedup: {candidate or 'fastest PyTorch'} over eager"
                        + (f"; vs best: {candidate} over the fastest PyTorch backend)" if candidate else ")"))
    shown = [*backends, *(f"ort-cpu-{prec}" for prec in precisions)]
    for col in ("model", "width", "size", "batch", *shown, "speedup", "vs best", "best torch", "max|Δ|", "agreement",
                "parity", *(f"{prec} agree" for prec in precisions)):
        table.add_column(col, justify="right")
    for r in rows:
        if "export_error" in r:
            table.add_row(r["model"], f"{r['width']:g}", str(r["size"]), "-", *("-" for _ in shown), "-", "-", "-", "-",
                          "-", "export FAIL", *("-" for _ in precisions))
            continue
        verdict = {True: "pass", False: "FAIL", None: "-"}[r["parity"]["passed"]]
        for batch in batches:
            lat = {s["backend"]: s for s in r["latency"] if s["batch"] == batch}
            if candidate is not None:
                cand = lat.get(candidate)
            else:
                cand = lat[min(torch_backends, key=lambda b: lat[b]["p50_ms"])] if lat else None
            sp = None if cand is None else cand["speedup_vs_torch"]
            vs_best = None if cand is None or candidate is None else cand["speedup_vs_best_torch"]
            best = None if cand is None else (cand["best_torch"] if candidate else cand["backend"])
            table.add_row(r["model"], f"{r['width']:g}", str(r["size"]), str(batch),
                          *(f"{lat[b]['p50_ms']:.1f}" if b in lat else "-" for b in shown),
                          "-" if sp is None else f"{sp:.2f}x", "-" if vs_best is None else f"{vs_best:.2f}x", best or "-",
                          f"{r['parity']['max_abs']:.1e}", f"{100 * r['parity']['pixel_agreement']:.3f} %", verdict,
                          *(f"{100 * r['reduced_precision'][prec]['agreement_vs_fp32']:.2f} %" for prec in precisions))
    console.print(table)
    write(complete=True)
    console.print(f"wrote {out}")
    failed = [r["model"] for r in rows if r["parity"]["passed"] is False]
    if failed:
        console.print(f"[red]parity failed: {', '.join(failed)}[/]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
