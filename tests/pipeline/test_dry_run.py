"""``pipeline run --dry-run``: the whole plan, every step ``cached`` or ``would run (why)``,
with nothing run or written -- before any run, after one, after a change, for a shard and --only."""

from __future__ import annotations

import os
import re

from segexport.pipeline.cache import changed_inputs, versions
from tests.pipeline.conftest import TINY

ROW = re.compile(r"^(?P<unit>\S+ (?:\S+|\(fp32 source\)))\s+(?P<step>\S+)\s+(?P<status>cached|would run|skipped)"
                 r"(?: \((?P<why>.*)\))?$")
ALL = [(u, s) for u in ("unet-t fp32",) for s in ("export", "lint", "engine", "parity", "bench")] + \
      [("unet-t int8", s) for s in ("calibrate", "lint", "engine", "parity", "bench")] + \
      [("fcn-t fp32", s) for s in ("export", "lint", "engine", "parity", "bench")]


def _plan(result) -> list[tuple[str, str, str, str]]:
    assert result.exit_code == 0, result.stdout + result.stderr
    rows = [ROW.match(line) for line in result.stdout.splitlines()[:-1]]
    assert all(rows), result.stdout
    return [(m["unit"], m["step"], m["status"], m["why"] or "") for m in rows]


def _tree(folder) -> dict[str, int]:
    return {os.path.join(d, n): os.stat(os.path.join(d, n)).st_mtime_ns for d, _, names in os.walk(folder) for n in names}


def test_before_any_run_every_step_would_run_and_says_why(run_cli, tmp_path):
    config = tmp_path / "segexport.toml"
    config.write_text(TINY)
    plan = _plan(run_cli("pipeline", "run", config, "--cache-dir", tmp_path / "cache", "--dry-run"))
    assert [(u, s) for u, s, _, _ in plan] == ALL
    assert {st for _, _, st, _ in plan} == {"would run"}
    whys = {(u, s): w for u, s, _, w in plan}
    assert whys[("unet-t fp32", "export")] == whys[("fcn-t fp32", "export")] == \
        f"no cache entry: --cache-dir {tmp_path / 'cache'} does not exist yet"
    assert whys[("unet-t int8", "calibrate")] == "after export, whose output is not built yet"
    assert whys[("unet-t int8", "parity")] == "after calibrate, whose output is not built yet"
    assert whys[("fcn-t fp32", "bench")] == "after export, whose output is not built yet"
    assert sorted(os.listdir(tmp_path)) == ["segexport.toml"]  # no cache, no --out, nothing
    no_cache = _plan(run_cli("pipeline", "run", config, "--no-cache", "--dry-run"))
    assert {w for _, _, _, w in no_cache} == {"--no-cache: no step is taken from a cache"}


def test_after_a_run_all_cached_and_a_change_reruns_exactly_that_model(tiny_copy, run_cli):
    folder, config, cache = tiny_copy
    before = _tree(cache)
    plan = _plan(run_cli("pipeline", "run", config, "--cache-dir", cache, "--out", folder / "out", "--dry-run"))
    assert [(u, s, st) for u, s, st, _ in plan] == [(u, s, "cached") for u, s in ALL]
    config.write_text(config.read_text().replace('name = "unet-t"\nmodel = "unet"\nwidth = 0.0625',
                                                 'name = "unet-t"\nmodel = "unet"\nwidth = 0.125'))
    plan = _plan(run_cli("pipeline", "run", config, "--cache-dir", cache, "--out", folder / "out", "--dry-run"))
    assert [(u, s) for u, s, _, _ in plan] == ALL
    whys = {(u, s): w for u, s, st, w in plan if st == "would run"}
    assert set(whys) == {(u, s) for u, s in ALL if u.startswith("unet-t")}  # fcn-t all cached
    assert whys[("unet-t fp32", "export")] == "input changed since its last run: config width 0.0625 -> 0.125"
    assert whys[("unet-t int8", "lint")] == "after calibrate, whose output is not built yet"
    assert _tree(cache) == before and not (folder / "out").exists()  # a dry run writes nothing


def test_a_changed_setting_of_a_later_step_names_it_for_a_shard_and_only(tiny_copy, run_cli):
    folder, config, cache = tiny_copy
    config.write_text(config.read_text().replace("parity_count = 1", "parity_count = 2"))
    plan = _plan(run_cli("pipeline", "run", config, "--cache-dir", cache, "--shard", "2/2", "--dry-run"))
    assert [(u, s, st) for u, s, st, _ in plan] == [("unet-t (fp32 source)", "export", "cached")] + [
        ("unet-t int8", s, "would run" if s == "parity" else "cached")
        for s in ("calibrate", "lint", "engine", "parity", "bench")]
    assert plan[4][3] == "input changed since its last run: config parity_count 1 -> 2"
    only = _plan(run_cli("pipeline", "run", config, "--cache-dir", cache, "--only", "fcn-t", "--dry-run"))
    assert [(u, s, st) for u, s, st, _ in only] == [("fcn-t fp32", s, "would run" if s == "parity" else "cached")
                                                    for s in ("export", "lint", "engine", "parity", "bench")]


def test_a_damaged_cache_entry_is_named_as_the_reason(tiny_copy, run_cli):
    folder, config, cache = tiny_copy
    entry = next(p for p in (cache / "export").rglob("entry.json"))
    (entry.parent / "files" / next(iter(os.listdir(entry.parent / "files")))).write_bytes(b"not an onnx")
    plan = _plan(run_cli("pipeline", "run", config, "--cache-dir", cache, "--dry-run"))
    damaged = [w for _, s, st, w in plan if s == "export" and st == "would run"]
    assert len(damaged) == 1 and "ignored (file" in damaged[0] and "differs from its SHA-256" in damaged[0]


def test_changed_inputs_names_weights_onnx_and_versions_but_never_a_files_own_keys():
    last = {"inputs": {"weights_sha256": "a" * 64, "upstream_sha256": "b" * 64, "calib_count": 4,
                       "[red]injected[/]": 1},
            "versions": {**versions("calibrate"), "onnxruntime": "0.0.1"}}
    now = {"weights_sha256": "c" * 64, "upstream_sha256": "b" * 64, "calib_count": 8}
    got = changed_inputs("calibrate", last, now)
    assert got[:2] == ["config calib_count 4 -> 8", "weights aaaaaaaa -> cccccccc"]
    assert got[2].startswith("version of onnxruntime '0.0.1' -> ") and len(got) == 3
    assert not any("injected" in g for g in got)


def test_steps_after_a_cached_failure_are_planned_as_skipped(tiny_copy, run_cli):
    """A failed calibration is cached like a pass: a run would restore the failure and skip the
    variant's later steps, so the plan says exactly that rather than 'would run'."""
    import json

    folder, config, cache = tiny_copy
    (entry,) = (cache / "calibrate").rglob("entry.json")
    doc = json.loads(entry.read_text())
    doc["result"]["verdict"] = "fail"
    entry.write_text(json.dumps(doc))
    plan = _plan(run_cli("pipeline", "run", config, "--cache-dir", cache, "--only", "unet-t:int8", "--dry-run"))
    assert [(s, st, w) for _, s, st, w in plan] == [("export", "cached", ""), ("calibrate", "cached", "")] + [
        (s, "skipped", "calibration did not pass") for s in ("lint", "engine", "parity", "bench")]
