"""Latency statistics, speedups and the baseline gate, driven by a runner with scripted times.

A scripted runner (a real Polygraphy BaseRunner whose ``inference_time`` comes from a list)
makes the statistics checkable against numpy computed here, independently of the code.
"""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
from polygraphy.backend.base import BaseRunner

from segexport.checks.latency import (add_speedups, check_baseline, measure, parse_regression, summarize,
                                      to_json)
from segexport.errors import CheckFailed, UserError


class ScriptedRunner(BaseRunner):
    """Reports the next time (seconds) of ``times`` on each ``infer``; counts calls."""

    def __init__(self, times_s: list[float]):
        super().__init__(name="scripted")
        self.times_s, self.calls = list(times_s), 0

    def activate_impl(self):
        pass

    def get_input_metadata_impl(self):
        from polygraphy.common import TensorMetadata
        from polygraphy.datatype import DataType

        return TensorMetadata().add("input", DataType.FLOAT32, ("N", 3, 4, 4))

    def infer_impl(self, feed_dict):
        self.inference_time = self.times_s[self.calls % len(self.times_s)]
        self.calls += 1
        return OrderedDict(logits=feed_dict["input"])

    def deactivate_impl(self):
        pass


FEED = {"input": np.zeros((2, 3, 4, 4), np.float32)}


def test_warmup_is_untimed_and_stats_match_numpy():
    warm = [9.0] * 3  # absurd warm-up times: they must not reach the statistics
    timed = [0.001 * (i + 1) for i in range(100)]  # 1..100 ms
    runner = ScriptedRunner(warm + timed)
    s = measure(runner, FEED, backend="ort-cpu", batch=2, warmup=3, iterations=100)
    ms = np.arange(1, 101, dtype=float)
    assert runner.calls == 103 and s.iterations == 100
    assert s.min_ms == pytest.approx(1.0) and s.mean_ms == pytest.approx(ms.mean())
    assert s.p50_ms == pytest.approx(np.median(ms)) and s.p90_ms == pytest.approx(np.quantile(ms, 0.9))
    assert s.p99_ms == pytest.approx(np.quantile(ms, 0.99)) and s.std_ms == pytest.approx(ms.std())
    assert s.throughput == pytest.approx(2 / (ms.mean() / 1000))  # batch-aware images/s
    assert s.memory_kind == "rss-delta" and s.peak_memory_mb >= 0


def test_duration_mode_runs_until_the_deadline():
    runner = ScriptedRunner([0.0005])
    s = measure(runner, FEED, backend="torch", batch=1, warmup=0, iterations=3, duration=0.05)
    assert s.iterations > 3  # duration overrides --iterations
    assert s.p50_ms == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs", [dict(warmup=-1), dict(iterations=0), dict(duration=0.0)])
def test_bad_timing_options(kwargs):
    with pytest.raises(UserError):
        measure(ScriptedRunner([0.001]), FEED, backend="torch", batch=1, **kwargs)


def test_speedups_compare_with_eager_on_the_same_device_and_batch():
    stats = [summarize([10.0], backend="torch", batch=1), summarize([2.5], backend="ort-cpu", batch=1),
             summarize([40.0], backend="torch", batch=4), summarize([20.0], backend="ort-cpu", batch=4),
             summarize([1.0], backend="torch-cuda", batch=1), summarize([0.5], backend="trt", batch=1),
             summarize([0.25], backend="ort-cuda", batch=4)]
    add_speedups(stats)
    by = {(s.backend, s.batch): s for s in stats}
    assert by[("ort-cpu", 1)].speedup_vs_torch == pytest.approx(4.0)
    assert by[("ort-cpu", 4)].speedup_vs_torch == pytest.approx(2.0)
    assert by[("trt", 1)].speedup_vs_torch == pytest.approx(2.0) and by[("trt", 1)].speedup_baseline == "torch-cuda"
    # no torch-cuda at batch 4: the CPU eager run is the only baseline there is
    assert by[("ort-cuda", 4)].speedup_vs_torch == pytest.approx(160.0)
    assert by[("ort-cuda", 4)].speedup_baseline == "torch"


def _baseline(tmp_path, rows, **meta):
    path = tmp_path / "base.json"
    path.write_text(to_json([summarize([p50], backend=b, batch=n) for b, n, p50 in rows], meta))
    return path


def test_baseline_gate_fails_on_a_slowdown_and_passes_within_budget(tmp_path):
    now = [summarize([11.0], backend="ort-cpu", batch=1), summarize([30.0], backend="torch", batch=1)]
    within = _baseline(tmp_path, [("ort-cpu", 1, 10.5), ("torch", 1, 30.0)])
    assert len(check_baseline(now, within, 0.10)) == 2  # +4.8 % and 0 %: both compared, both fine
    slower = _baseline(tmp_path, [("ort-cpu", 1, 5.0), ("torch", 1, 30.0)])  # ort-cpu now 2.2x slower
    with pytest.raises(CheckFailed, match=r"ort-cpu batch 1 .*\+120\.0%"):
        check_baseline(now, slower, 0.10)
    assert check_baseline(now, slower, 1.5)  # a 150 % budget lets it through


def test_baseline_refuses_other_work_and_bad_files(tmp_path):
    now = [summarize([10.0], backend="ort-cpu", batch=1)]
    other_size = _baseline(tmp_path, [("ort-cpu", 1, 10.0)], model="unet", input_size=[512, 512])
    with pytest.raises(UserError, match="input_size"):
        check_baseline(now, other_size, 0.1, meta={"model": "unet", "input_size": (256, 256)})
    with pytest.raises(UserError, match="shares no"):
        check_baseline(now, _baseline(tmp_path, [("trt", 1, 1.0)]), 0.1)
    with pytest.raises(UserError, match="not found"):
        check_baseline(now, tmp_path / "missing.json", 0.1)
    (tmp_path / "junk.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(UserError, match="not a `segexport bench --json`"):
        check_baseline(now, tmp_path / "junk.json", 0.1)


@pytest.mark.parametrize("text,value", [("10%", 0.10), ("0.25", 0.25), ("5 %", 0.05)])
def test_parse_regression(text, value):
    assert parse_regression(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["lots", "-5%"])
def test_parse_regression_rejects(text):
    with pytest.raises(UserError):
        parse_regression(text)
