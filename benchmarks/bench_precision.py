"""Accuracy and CPU latency cost of INT8 / FP16 on the trained fixtures -> table + JSON.

    python benchmarks/bench_precision.py            # the precision table of benchmarks/README.md (~10 min on 2 cores)
    python benchmarks/bench_precision.py --small    # its small version, re-measured by a test

For each fixture (tests/fixtures, trained by scripts/train_fixtures.py) and unpool mode (segnet:
``mask`` and ``native``; the others have no unpool): export fp32, then `segexport calibrate` INT8
with the default method (percentile), with minmax, with --max-miou-drop 0.5 (the per-layer
sensitivity search), and FP16; calibration on synthetic seed 0, evaluation on the held-out
synthetic set (seed 1000, never seen in calibration or training). Every variant goes through
calibrate's accuracy gate as a user's would: a variant the gate refuses is recorded with its
figures and ``gate: fail``, never dropped. mIoU in points, label agreement with the fp32 ONNX (on
every pixel, and on the confident pixels the gate judges), ONNX Runtime CPU latency (a proxy:
ORT's CPU INT8 kernels, not TensorRT's).

Results: benchmarks/results/precision_cpu.json (full), precision_small_cpu.json (--small).
tests/calib/test_precision_figures.py re-measures the small version and fails when a figure drifts
from the committed one by more than ``TOLERANCE``: the published figures (benchmarks/README.md) cannot go stale silently.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# How far a re-measured figure may move from the committed one (other CPUs run ONNX Runtime's
# kernels with other instruction sets; on one machine the figures repeat exactly).
TOLERANCE = {"miou_drop": 0.3, "agreement": 0.003, "confident_agreement": 0.003}

FULL = dict(models="segnet,unet,deeplabv1,fcn8s", calib_count=64, eval_count=128,
            variants=("int8", "int8_minmax", "int8_budget_0.5", "fp16"), out=RESULTS / "precision_cpu.json")
SMALL = dict(models="segnet,unet,deeplabv1,fcn8s", calib_count=16, eval_count=32, variants=("int8", "fp16"),
             out=RESULTS / "precision_small_cpu.json")
VARIANTS = {"int8": dict(precision="int8"), "int8_minmax": dict(precision="int8", method="minmax"),
            "int8_budget_0.5": dict(precision="int8", max_miou_drop=0.5), "fp16": dict(precision="fp16")}
UNPOOLS = {"segnet": ("mask", "native")}  # models that unpool: every mode segexport exports


def measure(models: str, calib_count: int, eval_count: int, variants, say=print) -> list[dict]:
    """One row per fixture x unpool mode x variant, through segexport's public API."""
    import segexport
    from segexport.errors import CheckFailed

    fixtures = json.loads((ROOT / "tests" / "fixtures" / "fixtures.json").read_text())["fixtures"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models.split(","):
            meta = fixtures[name]
            for unpool in UNPOOLS.get(name, ("mask",)):
                src = Path(tmp) / f"{name}.{unpool}.onnx"
                segexport.export(model=name, out=src, weights=ROOT / "tests" / "fixtures" / meta["file"],
                                 num_classes=meta["num_classes"], width=meta["width"],
                                 input_size=tuple(meta["input_size"]), unpool=unpool, lint=unpool != "native")
                for key in variants:
                    say(f"{name} ({unpool}): {key}")
                    try:
                        res = segexport.calibrate(onnx=src, data="synthetic", calib_count=calib_count,
                                                  eval_count=eval_count, out=Path(tmp) / f"{name}.{unpool}.{key}.onnx",
                                                  **VARIANTS[key]).details
                    except CheckFailed as exc:  # the gate refused it: its figures are the result
                        res = exc.result
                        if res is None:
                            raise
                    gate = res.gate
                    rows.append({"model": name, "width": meta["width"], "unpool": unpool, "variant": key,
                                 "fp32_miou": res.miou.get("fp32"), "miou": res.miou.get(res.precision),
                                 "miou_drop": res.miou["fp32"] - res.miou[res.precision],
                                 "agreement": res.pixel_agreement,
                                 "confident_agreement": gate.confident_agreement,
                                 "gate": "pass" if gate.passed and gate.judged else
                                         ("not judged" if gate.passed else "fail"),
                                 "kept_float": sorted({k.module or k.node for k in res.kept_float}),
                                 "fp16_kept_fp32": sorted({b.module or b.node for b in res.fp16_blocked}),
                                 "ort_cpu_ms": res.latency_ms[res.precision], "ort_cpu_fp32_ms": res.latency_ms["fp32"]})
    return rows


def drift(measured: list[dict], committed: list[dict]) -> list[str]:
    """Every figure of ``measured`` that moved past ``TOLERANCE`` from ``committed`` (and rows that
    appeared, vanished or changed their gate verdict), one line each."""
    key = lambda r: (r["model"], r["unpool"], r["variant"])  # noqa: E731
    old = {key(r): r for r in committed}
    new = {key(r): r for r in measured}
    problems = [f"{k}: no committed figure" for k in new if k not in old]
    problems += [f"{k}: committed but not measured" for k in old if k not in new]
    for k in new.keys() & old.keys():
        a, b = new[k], old[k]
        if a["gate"] != b["gate"]:
            problems.append(f"{k}: gate {a['gate']} (committed {b['gate']})")
        for field, tol in TOLERANCE.items():
            if (a[field] is None) != (b[field] is None):
                problems.append(f"{k}: {field} {a[field]} (committed {b[field]})")
            elif a[field] is not None and abs(a[field] - b[field]) > tol:
                problems.append(f"{k}: {field} {a[field]:.4f} (committed {b[field]:.4f}, tolerance {tol})")
    return sorted(problems)


def table(rows: list[dict]):
    from rich.table import Table

    t = Table(title="precision cost on the held-out synthetic set (mIoU pt; agreement with the fp32 ONNX)")
    for col in ("model", "unpool", "variant", "fp32 mIoU", "mIoU", "drop", "agreement", "confident", "gate",
                "kept float", "fp32 ms", "ms"):
        t.add_column(col, justify="right", overflow="fold")
    for r in rows:
        conf = "-" if r["confident_agreement"] is None else f"{100 * r['confident_agreement']:.2f} %"
        t.add_row(r["model"], r["unpool"], r["variant"], f"{r['fp32_miou']:.2f}", f"{r['miou']:.2f}",
                  f"{r['miou_drop']:+.2f}", f"{100 * r['agreement']:.2f} %", conf, r["gate"],
                  ", ".join(r["kept_float"] or r["fp16_kept_fp32"]) or "-", f"{r['ort_cpu_fp32_ms']:.2f}",
                  f"{r['ort_cpu_ms']:.2f}")
    return t


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="the small version the test re-measures")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    plan = SMALL if args.small else FULL
    console = Console(width=170)
    rows = measure(plan["models"], plan["calib_count"], plan["eval_count"], plan["variants"], say=console.print)
    console.print(table(rows))
    import onnxruntime
    import torch

    out = Path(args.out or plan["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": " ".join(["python benchmarks/bench_precision.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__},
        "calib_count": plan["calib_count"], "eval_count": plan["eval_count"], "tolerance": TOLERANCE,
        "note": "ORT CPU latency is a proxy measured on a shared CPU, not a TensorRT figure; mIoU on the "
                "held-out synthetic set; budgets are mIoU points against the fp32 ONNX",
        "results": rows}, indent=2, default=float) + "\n")
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
