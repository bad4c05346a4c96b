"""The published precision figures (benchmarks/README.md, "bench_precision.py") cannot go stale: the small version of their benchmark is
re-measured here and compared with what is committed (benchmarks/results/precision_small_cpu.json).

Every trained fixture, every precision, every unpool mode (SegNet: mask and native), through
calibrate's accuracy gate. A figure that drifts past the benchmark's stated ``TOLERANCE`` (or a
gate verdict that changes) fails, naming the figure: re-run ``python benchmarks/bench_precision.py
--small`` (and the full one, for benchmarks/README.md) and commit both when the change is intended.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_precision", ROOT / "benchmarks" / "bench_precision.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_small_precision_figures_match_the_committed_ones():
    bench = _bench()
    committed = json.loads(bench.SMALL["out"].read_text())
    assert committed["calib_count"] == bench.SMALL["calib_count"] and committed["eval_count"] == bench.SMALL["eval_count"]
    rows = bench.measure(bench.SMALL["models"], bench.SMALL["calib_count"], bench.SMALL["eval_count"],
                         bench.SMALL["variants"], say=lambda *_: None)
    assert bench.drift(rows, committed["results"]) == []
    # what benchmarks/README.md promises of every row, whatever the machine
    for row in rows:
        assert row["gate"] == "pass", row
        assert abs(row["miou_drop"]) <= (0.5 if row["model"] == "segnet" else 1.0), row
    assert {(r["model"], r["unpool"]) for r in rows} >= {("segnet", "mask"), ("segnet", "native")}


def test_drift_names_each_figure_that_moved():
    bench = _bench()
    row = {"model": "m", "unpool": "mask", "variant": "int8", "gate": "pass", "miou_drop": 0.1,
           "agreement": 0.99, "confident_agreement": 0.999}
    assert bench.drift([row], [row]) == []
    moved = dict(row, miou_drop=0.1 + 2 * bench.TOLERANCE["miou_drop"], gate="fail")
    problems = bench.drift([moved], [row])
    assert len(problems) == 2 and any("miou_drop" in p for p in problems) and any("gate" in p for p in problems)
    assert bench.drift([], [row]) == ["('m', 'mask', 'int8'): committed but not measured"]
