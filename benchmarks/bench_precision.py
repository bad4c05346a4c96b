"""Accuracy and CPU latency cost of INT8 / FP16 on the trained fixtures -> table + JSON.

    python benchmarks/bench_precision.py                       # segnet, unet, deeplabv1, fcn8s

For each fixture (tests/fixtures, trained by scripts/train_fixtures.py): export fp32, then
`segexport calibrate` INT8 with the default method (percentile), with minmax and entropy,
with --max-miou-drop 0.5 and 0.1 (the tighter budget exercises the per-layer sensitivity
search on every fixture), and FP16; calibration on synthetic seed 0 (64 images), evaluation
on the held-out synthetic set (128 images, seed 1000, never seen in calibration or
training). mIoU in points, label agreement with the fp32 ONNX, ONNX Runtime CPU latency (a
proxy: ORT's CPU INT8 kernels, not TensorRT's). The issue's acceptance figures are checked
per model ("checks"). Results: benchmarks/results/precision_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    import segexport

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="segnet,unet,deeplabv1,fcn8s")
    p.add_argument("--calib-count", type=int, default=64)
    p.add_argument("--eval-count", type=int, default=128)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "precision_cpu.json"))
    args = p.parse_args(argv)
    fixtures = json.loads((ROOT / "tests" / "fixtures" / "fixtures.json").read_text())["fixtures"]
    console = Console(width=160)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            meta = fixtures[name]
            src = Path(tmp) / f"{name}.onnx"
            segexport.export(model=name, out=src, weights=ROOT / "tests" / "fixtures" / meta["file"],
                             num_classes=meta["num_classes"], width=meta["width"], input_size=tuple(meta["input_size"]))
            row = {"model": name, "width": meta["width"], "num_classes": meta["num_classes"]}
            variants = {"int8": dict(precision="int8"),
                        "int8_minmax": dict(precision="int8", method="minmax"),
                        "int8_entropy": dict(precision="int8", method="entropy"),
                        "int8_budget_0.5": dict(precision="int8", max_miou_drop=0.5),
                        "int8_budget_0.1": dict(precision="int8", max_miou_drop=0.1),
                        "fp16": dict(precision="fp16")}
            for key, kw in variants.items():
                console.print(f"{name}: {key}")
                res = segexport.calibrate(onnx=src, data="synthetic", calib_count=args.calib_count,
                                          eval_count=args.eval_count, out=Path(tmp) / f"{name}.{key}.onnx", **kw).details
                row["fp32_miou"] = res.miou.get("fp32")
                row[key] = {"miou": res.miou.get(res.precision), "miou_drop": res.cost, "agreement": res.pixel_agreement,
                            "boundary_agreement": res.boundary_agreement,
                            "kept_float": [{"module": k.module or k.node, "recovers_miou_pt": k.recovered}
                                           for k in res.kept_float],
                            "fp16_kept_fp32": [b.module or b.node for b in res.fp16_blocked],
                            "ort_cpu_ms": res.latency_ms[res.precision], "ort_cpu_fp32_ms": res.latency_ms["fp32"]}
            row["checks"] = {"int8_drop_le_1.0": row["int8"]["miou_drop"] <= 1.0,
                             "int8_budget_0.5_drop_le_0.5": row["int8_budget_0.5"]["miou_drop"] <= 0.5,
                             "fp16_agreement_ge_99.9": row["fp16"]["agreement"] >= 0.999}
            rows.append(row)
    table = Table(title="precision cost on the held-out synthetic set (mIoU pt; ORT CPU ms)")
    for col in ("model", "fp32", "int8", "Δ", "minmax Δ", "entropy Δ", "≤0.5 Δ", "≤0.1 Δ", "kept", "fp16 agree",
                "fp32 ms", "int8 ms", "fp16 ms"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["model"], f"{r['fp32_miou']:.2f}", f"{r['int8']['miou']:.2f}", f"{r['int8']['miou_drop']:.2f}",
                      f"{r['int8_minmax']['miou_drop']:.2f}", f"{r['int8_entropy']['miou_drop']:.2f}",
                      f"{r['int8_budget_0.5']['miou_drop']:.2f}", f"{r['int8_budget_0.1']['miou_drop']:.2f}",
                      str(len(r["int8_budget_0.1"]["kept_float"])), f"{100 * r['fp16']['agreement']:.3f} %",
                      f"{r['int8']['ort_cpu_fp32_ms']:.2f}", f"{r['int8']['ort_cpu_ms']:.2f}", f"{r['fp16']['ort_cpu_ms']:.2f}")
    console.print(table)
    import onnxruntime
    import torch

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "command": " ".join(["python benchmarks/bench_precision.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__},
        "note": "ORT CPU latency is a proxy measured on a shared CPU, not a TensorRT figure; mIoU on the "
                "held-out synthetic set; budgets are mIoU points against the fp32 ONNX",
        "results": rows}, indent=2, default=float) + "\n")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
