"""Cost of the TensorRT-ready MaxUnpool rewrite: SegNet `--unpool mask` vs `--unpool native` in ONNX Runtime CPU.

    python benchmarks/bench_unpool.py                                          # width 0.25, 256x256, 15 runs
    python benchmarks/bench_unpool.py --width 1.0 --size 360x480 --iterations 5  # full width (adds to the JSON)

Both graphs come from the real `segexport onnx` pipeline (same weights, same seed); `native`
keeps ONNX `MaxPool`-with-indices + `MaxUnpool` (what ONNX Runtime runs and TensorRT refuses),
`mask` is the rewrite TensorRT parses. One ONNX Runtime session each, one intra-op thread (a
2-core shared machine would otherwise time the neighbours), batch 1, one seeded input. Runs are
interleaved (mask, native, mask, native, ...) so drift from other jobs hits both alike; the
table gives each one's median and spread, and the median of the per-round ratios mask/native
with its interquartile range, which is the figure the goal (<= 1.15x) is read from. The two
outputs must be bit-identical (the rewrite copies values, never computes them), or the script
exits 1. Each run adds (or replaces) its width/size entry in the JSON, keeping the others.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

MODES = ("mask", "native")


def main(argv: list[str] | None = None) -> int:
    import onnx
    import onnxruntime as ort

    from segexport.cli.common import parse_size
    from segexport.exporter.export import ExportOptions, export_onnx

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="segnet", help="a zoo model with pool/unpool pairs (segnet, deconvnet)")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--size", default="256x256", help="HxW")
    p.add_argument("--iterations", type=int, default=15, help="interleaved rounds (each runs both graphs once)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "unpool_cpu.json"))
    args = p.parse_args(argv)
    h, w = parse_size(args.size)
    console = Console(width=None if sys.stdout.isatty() else 160)
    x = np.random.default_rng(0).standard_normal((1, 3, h, w), dtype=np.float32)
    sessions, ops, outputs = {}, {}, {}
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
    with tempfile.TemporaryDirectory() as tmp:
        for mode in MODES:
            path = Path(tmp) / f"{mode}.onnx"
            console.print(f"exporting {args.model} width {args.width:g} at {h}x{w} with --unpool {mode}")
            export_onnx(ExportOptions(model=args.model, out=path, width=args.width, input_size=(h, w), unpool=mode,
                                      verify=False, lint=False))
            ops[mode] = dict(sorted(collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node).items()))
            sessions[mode] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        for mode, sess in sessions.items():
            for _ in range(args.warmup):
                outputs[mode] = sess.run(None, {"input": x})[0]
    identical = bool(np.array_equal(outputs["mask"], outputs["native"]))
    times: dict[str, list[float]] = {m: [] for m in MODES}
    with console.status("timing") as status:
        for i in range(args.iterations):
            for mode in (MODES if i % 2 == 0 else MODES[::-1]):  # alternate who goes first, too
                t0 = time.perf_counter_ns()
                sessions[mode].run(None, {"input": x})
                times[mode].append((time.perf_counter_ns() - t0) / 1e6)
            status.update(f"timing: round {i + 1}/{args.iterations}")
    ratios = np.asarray(times["mask"]) / np.asarray(times["native"])
    entry = {
        "model": args.model, "width": args.width, "size": [h, w], "batch": 1, "threads": args.threads,
        "iterations": args.iterations, "warmup": args.warmup, "outputs_identical": identical,
        "ms": {m: {"median": float(np.median(t)), "min": float(np.min(t)), "p25": float(np.percentile(t, 25)),
                   "p75": float(np.percentile(t, 75)), "max": float(np.max(t)), "all": [round(v, 2) for v in t]}
               for m, t in times.items()},
        "ratio_mask_over_native": {"median": float(np.median(ratios)), "p25": float(np.percentile(ratios, 25)),
                                   "p75": float(np.percentile(ratios, 75)),
                                   "of_medians": float(np.median(times["mask"]) / np.median(times["native"]))},
        "ops": ops,
    }
    table = Table(title=f"{args.model} width {args.width:g}, {h}x{w}, batch 1, ORT CPU {args.threads} thread(s), "
                        f"{args.iterations} interleaved rounds (ms)", title_justify="left")
    for col in ("unpool", "median", "p25", "p75", "min", "max", "ops"):
        table.add_column(col, justify="right")
    for m in MODES:
        s = entry["ms"][m]
        table.add_row(m, *(f"{s[k]:.1f}" for k in ("median", "p25", "p75", "min", "max")), str(sum(ops[m].values())))
    console.print(table)
    r = entry["ratio_mask_over_native"]
    console.print(f"mask/native: median of per-round ratios {r['median']:.3f}x (IQR {r['p25']:.3f}-{r['p75']:.3f}), "
                  f"ratio of medians {r['of_medians']:.3f}x; outputs bit-identical: {identical}")
    out = Path(args.out)
    doc = json.loads(out.read_text()) if out.is_file() else {"runs": []}
    doc["runs"] = [e for e in doc.get("runs", []) if (e["model"], e["width"], e["size"]) != (args.model, args.width, [h, w])]
    import torch

    entry["command"] = "python benchmarks/bench_unpool.py " + " ".join(argv if argv is not None else sys.argv[1:])
    entry["machine"] = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                        "onnxruntime": ort.__version__, "load_average": list(os.getloadavg())}
    doc["runs"].append(entry)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    console.print(f"wrote {out}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
