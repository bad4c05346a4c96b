"""The trial-based latency gate and bench's JUnit, on scripted timings (no machine speed involved)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from segexport.checks.latency import LatencyStats, judge_latency, measure_trials, summarize_trials


class Scripted:
    """A runner whose every inference 'takes' the next scripted time (ms)."""

    def __init__(self, times_ms):
        self.times = iter(times_ms)
        self.last = 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def infer(self, feed):
        self.last = next(self.times) / 1e3
        return {}

    def last_inference_time(self):
        return self.last


def test_trials_alternate_backends_and_summarise_robustly():
    # ort: trials at 10, 30 (a neighbour's load) and 11 ms; torch in the same trials 20, 60, 22
    script = {"ort-cpu": iter([[10, 10, 10], [30, 30, 30], [11, 11, 11]]),
              "torch": iter([[20, 20, 20], [60, 60, 60], [22, 22, 22]])}
    runners = {name: (lambda name=name: Scripted(next(script[name]))) for name in ("torch", "ort-cpu")}
    out = measure_trials(runners, {"input": np.zeros(1)}, batch=1, trials=3, warmup=0, iterations=3)
    ort = out["ort-cpu"]
    assert ort["trial_medians_ms"] == [10, 30, 11] and ort["best_ms"] == 10 and ort["p50_ms"] == 11
    assert ort["iterations"] == 9 and ort["noise"] == pytest.approx(2.0)  # the slowest trial took 3x the fastest
    assert ort["ratio_to_reference"] == pytest.approx(0.5) and ort["speedup_vs_torch"] == pytest.approx(2.0)
    assert "ratio_to_reference" not in out["torch"]  # PyTorch is the reference, never judged


def test_load_on_most_iterations_does_not_fail_the_gate():
    base = summarize_trials([[10.0, 10.4, 12.0], [10.2, 11.0, 10.1]])
    # a neighbour's load: the median more than doubles, but some iterations still run unhindered
    loaded = summarize_trials([[10.3, 25.0, 30.0], [40.0, 10.5, 33.0]])
    gate = judge_latency(loaded, base, backend="ort-cpu", batch=1, max_regression=0.10)
    assert gate.passed and gate.change_best == pytest.approx(0.03) and loaded["p50_ms"] > 2 * base["p50_ms"]
    assert "machine noise" in gate.message


def test_a_real_slowdown_fails():
    base = summarize_trials([[10.0, 10.4, 12.0], [10.2, 11.0, 10.1]], [[20.0] * 3, [20.0] * 3])
    slower = summarize_trials([[15.0, 15.6, 18.0], [15.3, 16.5, 15.2]], [[20.0] * 3, [20.0] * 3])  # every iteration 1.5x
    gate = judge_latency(slower, base, backend="ort-cpu", batch=1, max_regression=0.25)
    assert not gate.passed and gate.change_best == pytest.approx(0.5) and gate.change_ratio == pytest.approx(0.5, abs=0.05)
    assert "relative to PyTorch's +50.0%" in gate.message and "fastest 15 ms vs 10 ms, +50.0%" in gate.message


def test_a_machine_slower_as_a_whole_does_not_fail_the_gate():
    # the VM's slow phase: every iteration of both backends 40 % slower, the artefact unchanged
    base = summarize_trials([[10.0, 10.4, 12.0], [10.2, 11.0, 10.1]], [[20.0, 21.0, 20.5], [20.2, 20.0, 22.0]])
    slow = summarize_trials([[14.0, 14.6, 16.8], [14.3, 15.4, 14.1]], [[28.0, 29.4, 28.7], [28.3, 28.0, 30.8]])
    gate = judge_latency(slow, base, backend="ort-cpu", batch=1, max_regression=0.25)
    assert gate.change_best == pytest.approx(0.4) and gate.change_best_ratio == pytest.approx(0.0, abs=1e-9)
    assert gate.passed and "relative to PyTorch's +0.0%" in gate.message
    # the same machine phase with an artefact 1.5x slower on top of it still fails
    slower = summarize_trials([[21.0, 21.9, 25.2], [21.4, 23.1, 21.2]], [[28.0, 29.4, 28.7], [28.3, 28.0, 30.8]])
    gate = judge_latency(slower, base, backend="ort-cpu", batch=1, max_regression=0.25)
    assert not gate.passed and gate.change_best_ratio == pytest.approx(0.5)
    # and a machine phase faster than the baseline's does not hide a 1.5x slower artefact
    fast = summarize_trials([[10.5, 10.9], [10.7, 11.6]], [[14.0, 14.7], [14.1, 14.0]])
    gate = judge_latency(fast, base, backend="ort-cpu", batch=1, max_regression=0.25)
    assert gate.change_best == pytest.approx(0.05) and not gate.passed


def test_without_a_pytorch_reference_the_fastest_iteration_alone_decides():
    base = summarize_trials([[10.0, 10.4], [10.2, 11.0]])
    slow = summarize_trials([[14.0, 14.6], [14.3, 15.4]])
    gate = judge_latency(slow, base, backend="ort-cpu", batch=1, max_regression=0.25)
    assert gate.change_best_ratio is None and not gate.passed


def test_bench_junit_has_one_case_per_backend_and_batch(tmp_path):
    from segexport.checks.reports import write_bench_junit

    def stat(backend, batch, p50):
        return LatencyStats(backend, batch, 5, p50, 0.1, p50, p50, p50, p50, batch / p50 * 1e3)

    stats = [stat("torch", 1, 30.0), stat("ort-cpu", 1, 12.0), stat("ort-cpu", 4, 40.0)]
    path = tmp_path / "bench.xml"
    write_bench_junit(stats, {"trt": "tensorrt not installed"}, {("ort-cpu", 1): 10.0, ("ort-cpu", 4): 39.0}, 0.10,
                      path, {"model": "unet", "precision": "int8", "input_size": [64, 64]})
    suite = ET.parse(path).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [("bench.ort-cpu", "batch 1")]
    assert "+20.0%" in failed[0].find("failure").get("message")


def test_a_budget_stops_once_the_fastest_iteration_settles_and_caps_iterations():
    """Scripted timings: the verdict never depends on this machine's speed."""
    # warm-up 1 inference each at 10 ms (ort) + 20 ms (torch) = 30 ms a round; budget 0.45 s over
    # 5 trials -> 3 iterations a trial. Trial bests: ort 10, 9, 9 -> settled after the third.
    trials = {"ort-cpu": iter([[10, 10, 10, 10], [10, 9, 9, 9], [9, 9, 9, 9], [9] * 4, [9] * 4]),
              "torch": iter([[20] * 4, [20] * 4, [20] * 4, [20] * 4, [20] * 4])}
    runners = {name: (lambda name=name: Scripted(next(trials[name]))) for name in ("torch", "ort-cpu")}
    out = measure_trials(runners, {"input": np.zeros(1)}, batch=1, trials=5, warmup=1, iterations=20, budget_s=0.45)
    ort = out["ort-cpu"]
    assert ort["iterations_per_trial"] == 3 and ort["stopped"] == "settled"
    assert len(ort["trial_medians_ms"]) == 3 and ort["best_ms"] == 9


def test_a_budget_that_runs_out_stops_the_trials():
    trials = {"ort-cpu": iter([[100] * 4, [90] * 4, [80] * 4, [70] * 4]), "torch": iter([[100] * 4] * 4)}
    runners = {name: (lambda name=name: Scripted(next(trials[name]))) for name in ("torch", "ort-cpu")}
    out = measure_trials(runners, {"input": np.zeros(1)}, batch=1, trials=4, warmup=1, iterations=20, budget_s=1.1)
    # 0.2 s a round -> 3 iterations a trial (1.1 / 4 / 0.2 < 3: the minimum); 0.6 s a trial: the budget is
    # spent after two, and the trials stop at the third, the fewest that are ever taken (min_trials)
    assert out["ort-cpu"]["stopped"] == "budget" and len(out["ort-cpu"]["trial_medians_ms"]) == 3
