"""Export time per zoo model (full width, default input size) -> table + JSON.

    python benchmarks/bench_export.py                      # all 12, full width, verify on
    python benchmarks/bench_export.py --models segnet,unet --width 0.25 --no-verify

Each model goes through the real `segexport onnx` pipeline (export, onnxslim, lint,
ONNX Runtime verification) in a temp dir; the step timings come from ExportResult.seconds.
Results: benchmarks/results/export_cpu.json (with the command line and machine facts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def main(argv: list[str] | None = None) -> int:
    import segexport

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="all", help="comma-separated zoo names (default: all)")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "export_cpu.json"))
    args = parser.parse_args(argv)

    names = [s.name for s in segexport.list_models()] if args.models == "all" else args.models.split(",")
    console = Console()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            console.print(f"exporting [bold]{name}[/] ...")
            t0 = time.perf_counter()
            result = segexport.export(model=name, out=Path(tmp) / f"{name}.onnx", width=args.width,
                                      verify=not args.no_verify).details
            total = time.perf_counter() - t0
            rows.append({
                "model": name,
                "width": args.width,
                "input_size": list(result.record.preprocess.input_size),
                "total_s": round(total, 2),
                "steps_s": result.seconds,
                "onnx_mb": round(result.path.stat().st_size / 1e6, 1),
                "nodes": sum(result.onnx_ops.values()),
                "max_abs_diff": None if not result.verify else result.verify[0].metrics.max_abs,
                "pixel_agreement": None if not result.verify else result.verify[0].metrics.pixel_agreement,
                "abs_p99": None if not result.verify else result.verify[0].metrics.abs_p99,
                "held_to_floor": None if not result.verify else any(r.held_to_floor for r in result.verify),
                "lint_errors": None if result.lint is None else len(result.lint.errors),
                "lint_warnings": None if result.lint is None else len(result.lint.warnings),
            })
            result.path.unlink()
    table = Table(title=f"export time, width {args.width}, CPU ({os.cpu_count()} cores)")
    for col in ("model", "input", "total s", "export s", "verify s", "MB", "nodes", "max|diff|", "agreement"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["model"], "x".join(map(str, r["input_size"])), f"{r['total_s']:.1f}",
                      f"{r['steps_s'].get('export', 0):.1f}", f"{r['steps_s'].get('verify', 0):.1f}",
                      f"{r['onnx_mb']:.1f}", str(r["nodes"]),
                      "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}",
                      "-" if r["pixel_agreement"] is None else f"{100 * r['pixel_agreement']:.3f} %")
    console.print(table)
    import torch

    payload = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "results": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
