"""The pipeline against files other jobs wrote: cache entries, shards and baselines are data.

Each test damages one file by hand, as a less trusted CI job (or a restored cache) could, and
checks that no code runs, no input is overwritten and no damaged figure counts as a pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.pipeline.conftest import manifest_without_runs

ONLY = ("--only", "unet-t:fp32")


def _entry(cache: Path, step: str, holding: str | None = None, model: str = "unet-t") -> Path:
    """The entry.json of ``step`` for ``model`` (the one whose files include ``holding``)."""
    for path in sorted((cache / step).glob("*/*/entry.json")):
        doc = json.loads(path.read_text())
        names = list(doc["files"])
        if holding is not None and holding in names:
            return path
        if holding is None and (not names or any(n.startswith(model) for n in names)):
            return path
    raise AssertionError(f"no {step} entry for {model}")


def _parity_entry(tiny_run, cache: Path) -> Path:
    """The parity entry of unet-t fp32: the one whose key the full run recorded."""
    doc = json.loads((tiny_run[3] / "manifest.json").read_text())
    key = doc["entries"][0]["steps"]["parity"]["key"]
    return cache / "parity" / key[:2] / key / "entry.json"


_EVIL = '''
from pathlib import Path
Path({marker!r}).write_text("evil.py ran")

def build(num_classes=3, width=1.0):
    raise SystemExit("evil")
'''


def test_a_cache_entry_whose_onnx_names_code_never_runs_it(tiny_copy, run_cli, tmp_path):
    """An export entry's ONNX edited to record `/abs/evil.py:build` (its SHA-256 fixed in entry.json):
    every later step rebuilds the config's model (the zoo's unet), so evil.py never runs; the record
    disagreeing with the config is reported as the step's error, never a pass."""
    import onnx

    tmp, config, cache = tiny_copy
    marker = tmp_path / "EVIL_RAN"
    evil = tmp_path / "evil.py"
    evil.write_text(_EVIL.format(marker=str(marker)))
    entry = _entry(cache, "export", holding="unet-t.fp32.onnx")
    onnx_path = entry.parent / "files" / "unet-t.fp32.onnx"
    model = onnx.load(str(onnx_path))
    for prop in model.metadata_props:
        if prop.key == "segexport.model":
            prop.value = json.dumps(f"{evil}:build")
    onnx.save(model, str(onnx_path))
    doc = json.loads(entry.read_text())
    doc["files"]["unet-t.fp32.onnx"] = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    entry.write_text(json.dumps(doc))

    result = run_cli("pipeline", "run", config, "--out", tmp / "out", "--cache-dir", cache, *ONLY,
                     "--trust-model-code")  # even with trust: the artefact's record is data, only the config is trusted
    assert not marker.exists()
    assert result.exit_code == 1, result.stdout + result.stderr
    steps = json.loads((tmp / "out" / "manifest.json").read_text())["entries"][0]["steps"]
    for name in ("parity", "bench"):
        assert steps[name]["verdict"] == "error" and "records model" in steps[name]["message"], steps[name]
        assert "not exported from this config entry" in steps[name]["message"]


def _damage(path: Path, how: str, outside: Path) -> None:
    doc = json.loads(path.read_text())
    if how == "verdict 7":
        doc["result"]["verdict"], doc["result"]["figures"] = 7, "x"
    elif how == "agreement 5.0":
        doc["result"]["figures"]["pixel_agreement"] = 5.0
    elif how == "agreement string":
        doc["result"]["figures"]["pixel_agreement"] = "0.99"
    elif how == "list":
        doc = [doc]
    elif how == "no result":
        del doc["result"]
    elif how == "files list":
        doc["files"] = []
    elif how == "verdict error":
        doc["result"]["verdict"] = "error"
    elif how == "NaN":
        path.write_text(json.dumps(doc).replace('"pixel_agreement": ', '"pixel_agreement": NaN, "x": '))
        return
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("how", ["verdict 7", "agreement 5.0", "agreement string", "list", "no result", "files list",
                                 "verdict error", "NaN"])
def test_a_damaged_cache_entry_is_a_miss_with_a_note_never_a_pass(tiny_run, tiny_copy, run_cli, how):
    tmp, config, cache = tiny_copy
    entry = _parity_entry(tiny_run, cache)
    _damage(entry, how, tmp)
    result = run_cli("pipeline", "run", config, "--out", tmp / "out", "--cache-dir", cache, *ONLY)
    assert result.exit_code == 0, result.stdout + result.stderr
    runs = json.loads((tmp / "out" / "manifest.json").read_text())["runs"][0]["steps"]
    parity = runs["unet-t fp32/parity"]
    assert parity["status"] == "ran" and "ignored" in parity["note"], parity
    assert "ignored" in result.stdout  # the log says why the step ran again
    assert runs["unet-t fp32/lint"]["status"] == "cached"
    fig = json.loads((tmp / "out" / "manifest.json").read_text())["entries"][0]["steps"]["parity"]["figures"]
    assert 0 <= fig["pixel_agreement"] <= 1
    assert "500" not in (tmp / "out" / "report.md").read_text()


def test_cache_files_that_are_symlinks_are_a_miss(tiny_run, tiny_copy, run_cli):
    """A cached ONNX replaced by a symlink to a file outside the entry (with the right SHA-256) is
    not taken: the entry's files must be regular files inside it."""
    tmp, config, cache = tiny_copy
    entry = _entry(cache, "export", holding="unet-t.fp32.onnx")
    onnx_path = entry.parent / "files" / "unet-t.fp32.onnx"
    outside = tmp / "elsewhere.onnx"
    shutil.copy(onnx_path, outside)
    onnx_path.unlink()
    onnx_path.symlink_to(outside)
    result = run_cli("pipeline", "run", config, "--out", tmp / "out", "--cache-dir", cache, *ONLY)
    assert result.exit_code == 0, result.stdout + result.stderr
    runs = json.loads((tmp / "out" / "manifest.json").read_text())["runs"][0]["steps"]
    assert runs["unet-t fp32/export"]["status"] == "ran" and "not a regular file" in runs["unet-t fp32/export"]["note"]
    assert not (tmp / "out" / "unet-t" / "unet-t.fp32.onnx").is_symlink()


# -- outputs that are inputs --------------------------------------------------------------------


@pytest.fixture
def shards(tiny_copy, run_cli):
    tmp, config, cache = tiny_copy
    for i in (1, 2):
        result = run_cli("pipeline", "run", config, "--shard", f"{i}/2", "--out", tmp / f"s{i}", "--cache-dir", cache)
        assert result.exit_code == 0, result.stderr
    return tmp, tmp / "s1", tmp / "s2"


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_merge_never_writes_into_a_shard_it_reads(shards, run_cli):
    tmp, s1, s2 = shards
    before = _tree(s1), _tree(s2)
    for out in (s1, s2, s1 / "sub", tmp):
        result = run_cli("pipeline", "merge", s1, s2, "--out", out)
        assert result.exit_code == 2, (out, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "--out" in result.stderr
    assert (_tree(s1), _tree(s2)) == before
    assert not (s1 / "sub").exists()


def test_merge_refuses_a_shard_given_twice(shards, run_cli):
    tmp, s1, s2 = shards
    for args in ((s1, s1, s2), (s1, tmp / "." / "s1", s2)):
        result = run_cli("pipeline", "merge", *args, "--out", tmp / "dist")
        assert result.exit_code == 2 and "twice" in result.stderr, result.stderr
    shutil.copytree(s1, tmp / "s1-again")
    result = run_cli("pipeline", "merge", s1, tmp / "s1-again", s2, "--out", tmp / "dist")
    assert result.exit_code == 2 and "1/2 given twice" in result.stderr, result.stderr
    assert not (tmp / "dist").exists()


@pytest.mark.parametrize("damage", ["sha", "missing", "escape", "symlink"])
def test_merge_checks_every_shard_before_writing_anything(shards, run_cli, damage):
    tmp, s1, s2 = shards
    doc = json.loads((s2 / "manifest.json").read_text())
    art = doc["entries"][0]["artefacts"][0]
    target = s2 / art["path"]
    saved = target.read_bytes()
    if damage == "sha":
        target.write_bytes(saved + b"x")
    elif damage == "missing":
        target.unlink()
    elif damage == "escape":
        art["path"] = "../s1/" + art["path"]
        (s2 / "manifest.json").write_text(json.dumps(doc))
    elif damage == "symlink":
        (tmp / "outside.bin").write_bytes(saved)
        target.unlink()
        target.symlink_to(tmp / "outside.bin")
    result = run_cli("pipeline", "merge", s1, s2, "--out", tmp / "dist")
    assert result.exit_code == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp / "dist").exists() and not list(tmp.glob(".dist*"))  # nothing written, no temp left
    # fixed: the merge runs as the first would have
    if target.is_symlink():
        target.unlink()
    target.write_bytes(saved)
    if damage == "escape":
        art["path"] = art["path"].removeprefix("../s1/")
        (s2 / "manifest.json").write_text(json.dumps(doc))
    result = run_cli("pipeline", "merge", s1, s2, "--out", tmp / "dist")
    assert result.exit_code == 0, result.stderr


def test_run_never_replaces_its_baseline_or_reads_its_own_output(tiny_run, tiny_copy, run_cli, monkeypatch):
    tmp, config, cache = tiny_copy
    dist = tmp / "dist"
    shutil.copytree(tiny_run[3], dist)  # the release, downloaded into the folder the run writes
    before = (dist / "manifest.json").read_bytes()
    cases = [("--out", dist, "--baseline", dist / "manifest.json"),
             ("--out", dist, "--cache-dir", dist / "cache"),
             ("--out", tmp / "c" / "out", "--cache-dir", tmp / "c"),
             ("--out", tmp)]  # holds the config
    for args in cases:
        result = run_cli("pipeline", "run", config, *(("--cache-dir", cache) if "--cache-dir" not in args else ()), *args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert (dist / "manifest.json").read_bytes() == before
    assert not (dist / "cache").exists() and not (tmp / "c").exists()


def test_data_folders_and_cache_dir_are_checked_at_config_time(tiny_copy, run_cli, monkeypatch):
    tmp, config, cache = tiny_copy
    (tmp / "afile").write_text("x")
    result = run_cli("pipeline", "run", config, "--out", tmp / "out", "--cache-dir", tmp / "afile")
    assert result.exit_code == 2 and "--cache-dir" in result.stderr and "not a folder" in result.stderr
    import segexport.pipeline.cache as cache_mod

    monkeypatch.setattr(cache_mod, "MAX_DATA_FILES", 5)
    data = tmp / "data"
    data.mkdir()
    for i in range(6):
        (data / f"{i}.png").write_bytes(b"x")
    config.write_text(config.read_text().replace('calib_count = 4', 'calib_count = 4\ncalib_data = "data"'))
    result = run_cli("pipeline", "run", config, "--out", tmp / "out", "--cache-dir", cache)
    assert result.exit_code == 2 and "more than 5 files" in result.stderr, result.stderr
    assert not (tmp / "out").exists()


def test_github_step_summary_that_is_a_folder_is_refused_before_work(tiny_copy, run_cli, monkeypatch):
    tmp, config, cache = tiny_copy
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp))
    result = run_cli("pipeline", "run", config, "--out", tmp / "out", "--cache-dir", cache)
    assert result.exit_code == 2 and "GITHUB_STEP_SUMMARY" in result.stderr, result.stderr
    assert not (tmp / "out").exists()


# -- manifests as data --------------------------------------------------------------------------


def _edit(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


MANIFEST_DAMAGE = {
    "shard malformed": lambda d: d["runs"][0].update(shard="x"),
    "shard huge": lambda d: d["runs"][0].update(shard="1/99999999999999999999"),
    "runs not a list": lambda d: d.update(runs={"shard": "1/2"}),
    "fail without message": lambda d: d["entries"][0]["steps"]["parity"].update(verdict="fail", message=None),
    "string figure": lambda d: d["entries"][0]["steps"]["parity"]["figures"].update(pixel_agreement="high"),
    "string p50": lambda d: d["entries"][0]["steps"]["bench"]["figures"]["batches"]["1"]["ort-cpu"].update(p50_ms="1"),
    "string metadata": lambda d: d["entries"][0]["artefacts"][0].update(metadata="x"),
    "verdict 7": lambda d: d["entries"][0]["steps"]["lint"].update(verdict=7),
    "model with newline": lambda d: d["entries"][0].update(model="unet-t\n"),
}


@pytest.mark.parametrize("damage", sorted(MANIFEST_DAMAGE))
def test_a_damaged_shard_manifest_is_one_line(shards, run_cli, damage):
    tmp, s1, s2 = shards
    _edit(s1 / "manifest.json", MANIFEST_DAMAGE[damage])
    result = run_cli("pipeline", "merge", s1, s2, "--out", tmp / "dist")
    assert result.exit_code == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "manifest.json" in result.stderr
    assert not (tmp / "dist").exists()


@pytest.mark.parametrize("damage", ["string figure", "string p50", "string metadata", "fail without message"])
def test_a_damaged_baseline_is_one_line_before_any_step(tiny_run, tiny_copy, run_cli, damage):
    tmp, config, cache = tiny_copy
    shutil.copy(tiny_run[3] / "manifest.json", tmp / "release.json")
    _edit(tmp / "release.json", MANIFEST_DAMAGE[damage])
    result = run_cli("pipeline", "run", config, "--out", tmp / "out", "--cache-dir", cache, "--baseline",
                     tmp / "release.json")
    assert result.exit_code == 2 and "release.json" in result.stderr, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp / "out").exists()


def test_an_unchanged_run_into_its_own_earlier_output_is_the_same(tiny_run, tiny_copy, run_cli):
    """--out of an earlier run is replaced whole (staged, then swapped in)."""
    tmp, config, cache = tiny_copy
    shutil.copytree(tiny_run[3], tmp / "dist")
    (tmp / "dist" / "unet-t" / "stale.onnx").write_bytes(b"old")
    result = run_cli("pipeline", "run", config, "--out", tmp / "dist", "--cache-dir", cache)
    assert result.exit_code == 0, result.stderr
    assert manifest_without_runs(tmp / "dist" / "manifest.json") == manifest_without_runs(tiny_run[3] / "manifest.json")
    assert not (tmp / "dist" / "unet-t" / "stale.onnx").exists()
    assert not [p for p in os.listdir(tmp) if p.startswith(".dist")]


def test_names_too_long_for_the_filesystem_are_one_line(tiny_copy, run_cli):
    tmp, config, cache = tiny_copy
    long = "d" * 300
    for args in (("run", config, "--out", tmp / long, "--cache-dir", cache),
                 ("run", config, "--out", tmp / "out", "--cache-dir", tmp / long),
                 ("merge", tmp / long, "--out", tmp / "out")):
        result = run_cli("pipeline", *args)
        assert result.exit_code == 2 and "longer than" in result.stderr, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"schema": NaN}', "\xff\xfe"])
def test_an_unreadable_baseline_is_one_line(tiny_copy, run_cli, text):
    tmp, config, cache = tiny_copy
    (tmp / "release.json").write_text(text, encoding="latin-1")
    result = run_cli("pipeline", "run", config, "--out", tmp / "out", "--cache-dir", cache, "--baseline",
                     tmp / "release.json")
    assert result.exit_code == 2 and "release.json" in result.stderr, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp / "out").exists()
