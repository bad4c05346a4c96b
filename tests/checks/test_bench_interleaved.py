"""``segexport bench`` on a busy machine (issue 24): the backends are timed interleaved, the
spread of their trial medians is shown, and a spread too wide to rank them is said.

Every runner here is scripted (its latency is a given number, its clock a fake one), so no
verdict depends on how fast or how loaded the machine running the tests is.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from segexport.checks import latency
from segexport.checks.latency import add_rankings, add_speedups, measure_interleaved, ranking_warning
from tests.conftest import TINY_WIDTH

FEED = {"input": np.zeros((1, 3, 4, 4), np.float32)}


class Scripted:
    """A runner whose inferences 'take' ``times_ms`` in turn (cycling); every call appends its
    name to the shared ``log`` (the order the backends ran in) and advances ``clock``."""

    def __init__(self, name: str, times_ms, log: list, clock: SimpleNamespace | None = None):
        self.name, self.times, self.log, self.clock = name, list(times_ms), log, clock
        self.calls, self.entered, self.last = 0, 0, 0.0

    def __enter__(self):
        self.entered += 1
        return self

    def __exit__(self, *exc):
        return False

    def infer(self, feed):
        self.last = self.times[self.calls % len(self.times)] / 1e3
        self.calls += 1
        self.log.append(self.name)
        if self.clock is not None:
            self.clock.now += self.last
        return {}

    def last_inference_time(self):
        return self.last


def test_timed_iterations_alternate_between_backends_after_one_warm_up_each():
    log: list[str] = []
    runners = {n: Scripted(n, [t], log) for n, t in (("torch", 20.0), ("torch-channels-last", 15.0), ("ort-cpu", 5.0))}
    stats = measure_interleaved(runners, FEED, batch=1, warmup=2, iterations=6, trials=3)
    # warm-up one backend after the other (so each one's memory growth is its own), then rounds
    assert log[:6] == ["torch", "torch", "torch-channels-last", "torch-channels-last", "ort-cpu", "ort-cpu"]
    assert log[6:] == ["torch", "torch-channels-last", "ort-cpu"] * 6
    assert all(r.entered == 1 for r in runners.values())  # loaded once: torch.compile compiles once
    assert [(s.backend, s.iterations, s.trials) for s in stats] == [
        ("torch", 6, 3), ("torch-channels-last", 6, 3), ("ort-cpu", 6, 3)]
    assert stats[2].p50_ms == pytest.approx(5.0) and stats[2].spread == pytest.approx(0.0)


def test_a_busy_spell_falls_on_every_backend_alike():
    """The issue's machine: load comes and goes. ORT is truly 2x eager; for the first half of the
    run a neighbour makes everything 5x slower. Timed one after the other, ORT would take the busy
    half and eager the quiet one (ORT 0.4x); interleaved, both take both and the ratio holds."""
    log: list[str] = []

    class Loaded(Scripted):
        def infer(self, feed):
            base = self.times[0]
            self.times = [base * (5 if len(log) < 20 else 1)]  # 20 calls: the busy spell
            return super().infer(feed)

    runners = {"torch": Loaded("torch", [20.0], log), "ort-cpu": Loaded("ort-cpu", [10.0], log)}
    stats = measure_interleaved(runners, FEED, batch=1, warmup=0, iterations=20, trials=5)
    add_speedups(stats)
    ort = next(s for s in stats if s.backend == "ort-cpu")
    assert ort.speedup_vs_torch == pytest.approx(2.0)


def test_duration_is_shared_by_the_trials_on_the_wall_clock(monkeypatch):
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(latency, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    log: list[str] = []
    runners = {n: Scripted(n, [10.0], log, clock) for n in ("torch", "ort-cpu")}
    stats = measure_interleaved(runners, FEED, batch=1, warmup=1, iterations=1000, duration=0.1, trials=2)
    # 0.05 s a trial, 20 ms a round: the third round crosses the deadline -> 3 rounds a trial
    assert [(s.iterations, s.trials) for s in stats] == [(6, 2), (6, 2)]


def _stats(medians: dict[str, list[float]]):
    """LatencyStats of scripted backends whose trial medians are ``medians`` (two equal
    iterations a trial), ranked as bench ranks them."""
    log: list[str] = []
    runners = {n: Scripted(n, [v for m in ms for v in (m, m)], log) for n, ms in medians.items()}
    stats = measure_interleaved(runners, FEED, batch=1, warmup=0, iterations=2 * len(next(iter(medians.values()))),
                                trials=len(next(iter(medians.values()))))
    add_speedups(stats)
    add_rankings(stats)
    return {s.backend: s for s in stats}


TIGHT = {"torch": [20.0, 20.5, 21.0, 20.5, 20.0], "ort-cpu": [10.0, 10.2, 10.4, 10.2, 10.0]}
NOISY = {"torch": [20.0, 60.0, 22.0, 80.0, 21.0], "ort-cpu": [10.0, 50.0, 11.0, 70.0, 12.0]}


def test_spread_is_the_range_of_the_trial_medians():
    ort = _stats(NOISY)["ort-cpu"]
    medians = np.array(NOISY["ort-cpu"])
    assert ort.trials == 5 and ort.iterations == 10
    assert ort.trial_p10_ms == pytest.approx(np.percentile(medians, 10))
    assert ort.trial_p90_ms == pytest.approx(np.percentile(medians, 90))
    assert ort.spread == pytest.approx((np.percentile(medians, 90) - np.percentile(medians, 10)) / np.median(medians))


def test_a_noisy_run_cannot_rank_and_a_tight_one_can():
    tight = _stats(TIGHT)
    assert tight["ort-cpu"].speedup_ranked is True and ranking_warning(list(tight.values())) is None
    noisy = _stats(NOISY)
    assert noisy["ort-cpu"].speedup_ranked is False
    warning = ranking_warning(list(noisy.values()))
    assert warning is not None and "\n" not in warning
    assert "cannot rank ort-cpu vs torch (batch 1)" in warning and "quieter machine" in warning
    assert "--duration" in warning and "ort-cpu b1" in warning  # and which figure is noisy


def test_one_trial_measures_no_spread_and_ranks_nothing():
    one = _stats({"torch": [20.0], "ort-cpu": [10.0]})
    assert one["ort-cpu"].spread is None and one["ort-cpu"].speedup_ranked is False
    assert "one trial measures no spread" in ranking_warning(list(one.values()))


# --- the command: fake runners behind the real bench, table and JSON ---------------------------

def _bench(run_cli, monkeypatch, tmp_path, medians: dict[str, list[float]]):
    """``segexport bench`` with its runners replaced by scripted ones (two iterations a trial)."""
    import segexport.checks.runners as runners

    log: list[str] = []
    monkeypatch.setattr(runners, "make_runner", lambda name, **_kw: Scripted(
        name, [v for m in medians[name] for v in (m, m)], log))
    monkeypatch.setenv("COLUMNS", "80")  # captured output is not a terminal: the table must stay whole
    out = tmp_path / "b.json"
    n = len(next(iter(medians.values())))
    result = run_cli("bench", "--model", "unet", "--width", TINY_WIDTH, "--num-classes", "3", "--input-size", "32x32",
                     "--backends", ",".join(medians), "--warmup", "0", "--iterations", str(2 * n),
                     "--trials", str(n), "--json", out)
    assert result.exit_code == 0, result.stderr
    return result.stdout, json.loads(out.read_text()), log


def _row(stdout: str, backend: str) -> list[str]:
    return next([c.strip() for c in line.split("│")[1:-1]] for line in stdout.splitlines()
                if line.startswith("│") and line.split("│")[1].strip() == backend)


def test_the_command_shows_the_spread_in_the_table_and_the_json(run_cli, monkeypatch, tmp_path):
    medians = {"torch": NOISY["torch"], "torch-channels-last": NOISY["ort-cpu"]}
    stdout, doc, log = _bench(run_cli, monkeypatch, tmp_path, medians)
    assert log == ["torch", "torch-channels-last"] * 10  # interleaved, not one backend after the other
    assert not [line for line in stdout.splitlines() if "…" in line and not line.startswith("… timing")]  # no cut cell
    header = next(line for line in stdout.splitlines() if "p50" in line)
    assert "trials p10-p90" in header and "spread" in header
    rows = {r["backend"]: r for r in doc["results"]}
    cl = rows["torch-channels-last"]
    m = np.array(medians["torch-channels-last"])
    assert cl["trials"] == 5 and cl["trial_p10_ms"] == pytest.approx(np.percentile(m, 10))
    assert cl["trial_p90_ms"] == pytest.approx(np.percentile(m, 90))
    assert cl["spread"] == pytest.approx((np.percentile(m, 90) - np.percentile(m, 10)) / np.median(m))
    cells = _row(stdout, "torch-channels-last")
    assert f"{np.percentile(m, 10):.1f}-{np.percentile(m, 90):.1f}" in cells  # 10.4-62.0
    assert f"{cl['spread']:.0%}" in cells
    assert doc["trials"] == 5


def test_the_command_warns_on_a_noisy_run_and_not_on_a_tight_one(run_cli, monkeypatch, tmp_path):
    noisy = {"torch": NOISY["torch"], "torch-channels-last": NOISY["ort-cpu"]}
    stdout, doc, _ = _bench(run_cli, monkeypatch, tmp_path, noisy)
    warnings = [line for line in stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "cannot rank torch vs torch-channels-last (batch 1)" in warnings[0], stdout
    assert doc["spread_warning"] in warnings[0]
    row = {r["backend"]: r for r in doc["results"]}["torch-channels-last"]
    assert row["speedup_ranked"] is False
    assert _row(stdout, "torch-channels-last")[9].startswith("~")  # speedup: no ranking claimed

    tight = {"torch": TIGHT["torch"], "torch-channels-last": TIGHT["ort-cpu"]}
    (tmp_path / "t").mkdir()
    stdout, doc, _ = _bench(run_cli, monkeypatch, tmp_path / "t", tight)
    assert not [line for line in stdout.splitlines() if line.startswith("warning:")], stdout
    assert doc["spread_warning"] is None
    assert {r["backend"]: r for r in doc["results"]}["torch-channels-last"]["speedup_ranked"] is True
    speedup = _row(stdout, "torch-channels-last")[9]
    assert speedup == f"{np.median(TIGHT['torch']) / np.median(TIGHT['ort-cpu']):.2f}x"  # plain: a ranking


def test_trials_must_be_at_least_one_and_a_run_with_nothing_to_time_says_why(run_cli):
    from tests.conftest import assert_one_line_error

    assert_one_line_error(run_cli("bench", "--model", "unet", "--trials", "0"), "--trials")
    assert_one_line_error(run_cli("bench", "--model", "unet", "--backends", "ort-cpu", "--input-size", "32x32"),
                          "no backend could run", "ort-cpu: needs --onnx")
