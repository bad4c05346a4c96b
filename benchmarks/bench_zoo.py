"""Parity and latency of the whole zoo: PyTorch eager vs ONNX Runtime fp32, CPU (or CUDA).

    python benchmarks/bench_zoo.py --width 1.0 --size 512 --iterations 5      # what results/ holds
    python benchmarks/bench_zoo.py --models unet,segnet --width 0.25 --device cuda

Each model is exported with the real pipeline (mask unpool, lint, verify), then `segexport
parity` metrics on seeded inputs and trtexec-style latency (warm-up, timed iterations,
percentiles) for torch and ort-cpu in the same process. With --device cuda only the PyTorch
baselines run on the GPU (torch-cuda fp32 and fp16 autocast). Writes a JSON with the command.
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
    from segexport.checks.runners import make_runner
    from segexport.exporter.export import ExportOptions, export_onnx
    from segexport.models.loading import load_model
    from segexport.models.registry import get_spec, list_models

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="all")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    names = [s.name for s in list_models()] if args.models == "all" else args.models.split(",")
    console = Console()
    rows = []
    backends = ["torch", "ort-cpu"] if args.device == "cpu" else ["torch-cuda", "torch-cuda-fp16"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            size = max(args.size, get_spec(name).min_size)
            console.print(f"[bold]{name}[/] at {size}x{size}, width {args.width}")
            t0 = time.perf_counter()
            onnx_path = Path(tmp) / f"{name}.onnx"
            if args.device == "cpu":
                export_onnx(ExportOptions(model=name, out=onnx_path, width=args.width, input_size=(size, size)))
            export_s = time.perf_counter() - t0
            model = load_model(name, width=args.width).model
            x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
            stats, parity = [], None
            outputs = {}
            for backend in backends:
                runner = make_runner(backend, onnx_path=onnx_path, model=model)
                stats.append(measure(runner, {"input": x}, backend=backend, batch=1, warmup=args.warmup,
                                     iterations=args.iterations))
                with make_runner(backend, onnx_path=onnx_path, model=model) as r:
                    outputs[backend] = np.asarray(r.infer({"input": x})["logits"])
            ref_name, cand_name = backends
            m = compare(outputs[ref_name], outputs[cand_name])
            parity = {"candidate": cand_name, "max_abs": m.max_abs, "ref_max_abs": m.ref_max_abs,
                      "pixel_agreement": m.pixel_agreement, "boundary_agreement": m.boundary_agreement}
            add_speedups(stats)
            rows.append({"model": name, "size": size, "width": args.width, "export_s": round(export_s, 1),
                         "parity": parity, "latency": [asdict(s) for s in stats]})
            onnx_path.unlink(missing_ok=True)
    table = Table(title=f"zoo {args.device}, width {args.width} (p50 ms, batch 1)")
    for col in ("model", "size", *backends, "speedup", "max|Δ|", "agreement"):
        table.add_column(col, justify="right")
    for r in rows:
        lat = {s["backend"]: s["p50_ms"] for s in r["latency"]}
        sp = next((s["speedup_vs_torch"] for s in r["latency"] if s["backend"] == backends[1]), None)
        table.add_row(r["model"], str(r["size"]), *(f"{lat[b]:.1f}" for b in backends),
                      "-" if sp is None else f"{sp:.2f}x", f"{r['parity']['max_abs']:.1e}",
                      f"{100 * r['parity']['pixel_agreement']:.3f} %")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
