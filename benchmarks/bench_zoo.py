"""Parity and latency of the whole zoo: PyTorch eager vs ONNX Runtime fp32, CPU (or CUDA).

    python benchmarks/bench_zoo.py --width 1.0 --size 512 --iterations 5      # what results/ holds
    python benchmarks/bench_zoo.py --width 0.0625 --size 64 --iterations 2 --out /tmp/zoo.json   # smoke run
    python benchmarks/bench_zoo.py --models unet,segnet --widths deconvnet=0.5 --device cuda

Each model is exported with the real pipeline (mask unpool, lint, verify), then checked with
`segexport parity` (PyTorch rebuilt from the ONNX metadata vs ONNX Runtime, seeded inputs, the
command's own thresholds) and timed trtexec-style (warm-up, timed iterations, percentiles) for
torch and ort-cpu in the same process. ``--widths name=w`` runs a model below ``--width`` where
full width does not fit the time at hand; the width of every row is in the table and the JSON.
With --device cuda only the PyTorch baselines run on the GPU (torch-cuda fp32 and fp16
autocast; export and parity are skipped). ``--precisions fp16,int8`` also calibrates each export
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


def main(argv: list[str] | None = None) -> int:
    import segexport
    from segexport.checks.latency import add_speedups  # speedups across the fp32 and reduced-precision runs
    from segexport.errors import CheckFailed, SegexportError
    from segexport.models.registry import get_spec

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="all")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--widths", default="", help="per-model overrides, e.g. deconvnet=0.5,fcdensenet103=0.5")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--precisions", default="", help="also time reduced-precision ONNX in ORT CPU, e.g. fp16,int8")
    p.add_argument("--calib-count", type=int, default=16)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    names = [s.name for s in segexport.list_models()] if args.models == "all" else args.models.split(",")
    widths = {k: float(v) for k, _, v in (w.partition("=") for w in args.widths.split(",") if w)}
    console = Console(width=None if sys.stdout.isatty() else 200)  # a log file keeps whole columns
    rows = []
    backends = ["torch", "ort-cpu"] if args.device == "cpu" else ["torch-cuda", "torch-cuda-fp16"]
    precisions = [prec for prec in args.precisions.split(",") if prec]
    if precisions and (args.device != "cpu" or not set(precisions) <= {"fp16", "int8"}):
        p.error("--precisions takes fp16 and/or int8, on --device cpu")
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
                    continue
            export_s = time.perf_counter() - t0
            timing = dict(backends=backends, input_size=(size, size), warmup=args.warmup, iterations=args.iterations)
            if args.device == "cpu":
                stats = list(segexport.bench(onnx=onnx_path, **timing).stats)
            else:  # no ONNX on the GPU path: PyTorch at this width only
                stats = list(segexport.bench(model=name, width=width, **timing).stats)
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
                from segexport.checks.runners import make_runner
                from segexport.core.metrics import compare
                from segexport.models.loading import load_model

                model = load_model(name, width=width).model
                x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
                outputs = {}
                for backend in backends:
                    with make_runner(backend, model=model) as r:
                        outputs[backend] = np.asarray(r.infer({"input": x})["logits"])
                m = compare(outputs[backends[0]], outputs[backends[1]])
                parity = {"candidate": backends[1], "passed": None, "max_abs": m.max_abs, "ref_max_abs": m.ref_max_abs,
                          "pixel_agreement": m.pixel_agreement, "boundary_agreement": m.boundary_agreement}
            reduced = {}
            for prec in precisions:
                res = segexport.calibrate(onnx=onnx_path, precision=prec, calib_count=args.calib_count,
                                          eval_count=args.calib_count, out=Path(tmp) / f"{name}.{prec}.onnx").details
                (timed,) = segexport.bench(onnx=res.out, backends=("ort-cpu",), input_size=(size, size),
                                           warmup=args.warmup, iterations=args.iterations).stats
                timed.backend = f"ort-cpu-{prec}"
                stats.append(timed)
                reduced[prec] = {"agreement_vs_fp32": res.pixel_agreement, "boundary_agreement": res.boundary_agreement}
                res.out.unlink(missing_ok=True)
            add_speedups(stats)
            rows.append({"model": name, "size": size, "width": width, "export_s": round(export_s, 1),
                         "parity": parity, "latency": [asdict(s) for s in stats],
                         **({"reduced_precision": reduced} if reduced else {})})
            onnx_path.unlink(missing_ok=True)
    table = Table(title=f"zoo {args.device} (p50 ms, batch 1)")
    shown = [*backends, *(f"ort-cpu-{prec}" for prec in precisions)]
    for col in ("model", "width", "size", *shown, "speedup", "max|Δ|", "agreement", "parity",
                *(f"{prec} agree" for prec in precisions)):
        table.add_column(col, justify="right")
    for r in rows:
        if "export_error" in r:
            table.add_row(r["model"], f"{r['width']:g}", str(r["size"]), *("-" for _ in shown), "-", "-", "-",
                          "export FAIL", *("-" for _ in precisions))
            continue
        lat = {s["backend"]: s["p50_ms"] for s in r["latency"]}
        sp = next((s["speedup_vs_torch"] for s in r["latency"] if s["backend"] == backends[1]), None)
        verdict = {True: "pass", False: "FAIL", None: "-"}[r["parity"]["passed"]]
        table.add_row(r["model"], f"{r['width']:g}", str(r["size"]), *(f"{lat[b]:.1f}" for b in shown),
                      "-" if sp is None else f"{sp:.2f}x", f"{r['parity']['max_abs']:.1e}",
                      f"{100 * r['parity']['pixel_agreement']:.3f} %", verdict,
                      *(f"{100 * r['reduced_precision'][prec]['agreement_vs_fp32']:.2f} %" for prec in precisions))
    console.print(table)
    import onnxruntime
    import torch

    out = Path(args.out or Path(__file__).parent / "results" / f"zoo_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": "python benchmarks/bench_zoo.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__,
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "results": rows}, indent=2, default=float) + "\n")
    console.print(f"wrote {out}")
    failed = [r["model"] for r in rows if r["parity"]["passed"] is False]
    if failed:
        console.print(f"[red]parity failed: {', '.join(failed)}[/]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
