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
autocast; export and parity are skipped). Writes a JSON with the command line.
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
    from segexport.checks.latency import add_speedups, measure
    from segexport.checks.metrics import compare
    from segexport.checks.parity import ParityOptions, run_parity
    from segexport.checks.runners import make_runner
    from segexport.errors import SegexportError
    from segexport.exporter.export import ExportOptions, export_onnx
    from segexport.models.loading import load_model
    from segexport.models.registry import get_spec, list_models

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="all")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--widths", default="", help="per-model overrides, e.g. deconvnet=0.5,fcdensenet103=0.5")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    names = [s.name for s in list_models()] if args.models == "all" else args.models.split(",")
    widths = {k: float(v) for k, _, v in (w.partition("=") for w in args.widths.split(",") if w)}
    console = Console(width=None if sys.stdout.isatty() else 140)  # a log file keeps whole columns
    rows = []
    backends = ["torch", "ort-cpu"] if args.device == "cpu" else ["torch-cuda", "torch-cuda-fp16"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            size = max(args.size, get_spec(name).min_size)
            width = widths.get(name, args.width)
            console.print(f"[bold]{name}[/] at {size}x{size}, width {width}")
            t0 = time.perf_counter()
            onnx_path = Path(tmp) / f"{name}.onnx"
            if args.device == "cpu":
                try:
                    export_onnx(ExportOptions(model=name, out=onnx_path, width=width, input_size=(size, size)))
                except SegexportError as exc:  # record it and go on: one failure must not lose the other rows
                    console.print(f"[red]{name}: export failed: {exc}[/]")
                    rows.append({"model": name, "size": size, "width": width, "export_error": str(exc),
                                 "parity": {"passed": False}, "latency": []})
                    continue
            export_s = time.perf_counter() - t0
            model = load_model(name, width=width).model
            x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
            stats = []
            for backend in backends:
                runner = make_runner(backend, onnx_path=onnx_path, model=model)
                stats.append(measure(runner, {"input": x}, backend=backend, batch=1, warmup=args.warmup,
                                     iterations=args.iterations))
            if args.device == "cpu":
                report = run_parity(ParityOptions(onnx=onnx_path, count=1, seed=0))
                pair = report.pairs[0]
                m = pair.metrics
                parity = {"candidate": pair.candidate, "passed": pair.passed, "max_abs": m.max_abs,
                          "ref_max_abs": m.ref_max_abs, "pixel_agreement": m.pixel_agreement,
                          "boundary_agreement": m.boundary_agreement,
                          "checks": {c.name: c.passed for c in pair.checks}}
            else:
                outputs = {}
                for backend in backends:
                    with make_runner(backend, model=model) as r:
                        outputs[backend] = np.asarray(r.infer({"input": x})["logits"])
                m = compare(outputs[backends[0]], outputs[backends[1]])
                parity = {"candidate": backends[1], "passed": None, "max_abs": m.max_abs, "ref_max_abs": m.ref_max_abs,
                          "pixel_agreement": m.pixel_agreement, "boundary_agreement": m.boundary_agreement}
            add_speedups(stats)
            rows.append({"model": name, "size": size, "width": width, "export_s": round(export_s, 1),
                         "parity": parity, "latency": [asdict(s) for s in stats]})
            onnx_path.unlink(missing_ok=True)
    table = Table(title=f"zoo {args.device} (p50 ms, batch 1)")
    for col in ("model", "width", "size", *backends, "speedup", "max|Δ|", "agreement", "parity"):
        table.add_column(col, justify="right")
    for r in rows:
        if "export_error" in r:
            table.add_row(r["model"], f"{r['width']:g}", str(r["size"]), *("-" for _ in backends), "-", "-", "-",
                          "export FAIL")
            continue
        lat = {s["backend"]: s["p50_ms"] for s in r["latency"]}
        sp = next((s["speedup_vs_torch"] for s in r["latency"] if s["backend"] == backends[1]), None)
        verdict = {True: "pass", False: "FAIL", None: "-"}[r["parity"]["passed"]]
        table.add_row(r["model"], f"{r['width']:g}", str(r["size"]), *(f"{lat[b]:.1f}" for b in backends),
                      "-" if sp is None else f"{sp:.2f}x", f"{r['parity']['max_abs']:.1e}",
                      f"{100 * r['parity']['pixel_agreement']:.3f} %", verdict)
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
