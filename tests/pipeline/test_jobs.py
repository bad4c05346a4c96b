"""``--jobs 2``: two models' untimed steps (export, calibrate, lint, engine, parity) run in parallel
processes, the timed step (bench) does not, and the manifest holds the same artefacts and verdicts as a serial run -- with every second of
the run accounted for."""

from __future__ import annotations

import json

from tests.pipeline.conftest import TINY


def test_jobs_runs_exports_in_parallel_and_changes_nothing_else(tiny_run, run_cli, tmp_path):
    _, _, _, full, _ = tiny_run
    config = tmp_path / "segexport.toml"
    config.write_text(TINY)
    result = run_cli("pipeline", "run", config, "--out", tmp_path / "par", "--no-cache", "--jobs", "2")
    assert result.exit_code == 0, result.stdout + result.stderr
    par = json.loads((tmp_path / "par" / "manifest.json").read_text())
    ser = json.loads((full / "manifest.json").read_text())

    def digest(doc):
        return {(e["model"], e["variant"]): ({n: s["verdict"] for n, s in e["steps"].items()},
                                             sorted((a["path"], a["sha256"]) for a in e["artefacts"]))
                for e in doc["entries"]}

    assert digest(par) == digest(ser)
    (run,) = par["runs"]
    statuses = run["steps"]
    parallel = {k for k, v in statuses.items() if v["status"] == "ran in parallel"}
    assert {"export", "calibrate", "lint", "parity"} <= {k.rsplit("/", 1)[1] for k in parallel}
    assert not any(k.endswith("/bench") for k in parallel)  # timed steps never ran side by side
    acc = run["accounting"]
    assert acc["jobs"] == 2 and acc["parallel_s"] > 0
    total = acc["steps_s"] + acc["parallel_s"] + acc["outside_steps_s"]
    assert abs(total - run["wall_s"]) <= 0.01 * run["wall_s"] + 0.01
    assert "Time (shard 1/1)" in (tmp_path / "par" / "report.md").read_text()


def test_a_serial_run_accounts_for_its_time_too(tiny_run):
    _, _, _, full, _ = tiny_run
    (run,) = json.loads((full / "manifest.json").read_text())["runs"]
    acc = run["accounting"]
    assert acc["parallel_s"] == 0 and acc["jobs"] == 1
    assert abs(acc["steps_s"] + acc["outside_steps_s"] - run["wall_s"]) <= 0.01 * run["wall_s"] + 0.01
    assert acc["outside_steps_s"] >= acc["setup_s"] + acc["artefact_records_s"] - 0.01


def test_a_cached_rerun_with_jobs_spawns_no_worker(tiny_copy, run_cli, monkeypatch):
    """Every untimed step is in the cache: nothing to run side by side, so no process is started
    (each would spend seconds importing torch only to find its steps cached)."""
    import segexport.pipeline.parallel as parallel

    folder, config, cache = tiny_copy
    started = []
    monkeypatch.setattr(parallel, "prefetch", lambda units, *a, **k: started.append(list(units)) or {})
    result = run_cli("pipeline", "run", config, "--out", folder / "again", "--cache-dir", cache, "--jobs", "2")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert started == [[]]
    statuses = json.loads((folder / "again" / "manifest.json").read_text())["runs"][0]["steps"]
    assert {v["status"] for k, v in statuses.items() if not k.endswith("/bench")} == {"cached"}
