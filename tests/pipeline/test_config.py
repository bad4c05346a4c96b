"""Config schema, plan and shard split: no model is built here, so these run in milliseconds."""

from __future__ import annotations

import pytest

from segexport.errors import UserError
from segexport.pipeline.config import ConfigError, load_config
from segexport.pipeline.plan import full_plan, parse_shard, plan

GOOD = """
[defaults]
precisions = ["fp32", "int8"]
calib_count = 8

[[models]]
name = "a"
model = "unet"
width = 0.0625
num_classes = 4
input_size = "64x64"
precisions = ["fp32", "fp16"]

[[models]]
name = "b"
model = "segnet"
dynamic = "hw"

[[models]]
name = "c"
model = "fcn8s"
calib_count = 2
"""


def _write(tmp_path, text, name="segexport.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_overridden_per_model(tmp_path):
    config, base = load_config(_write(tmp_path, GOOD))
    a, b, c = (m.settings(config.defaults) for m in config.models)
    assert a.precisions == ["fp32", "fp16"] and b.precisions == ["fp32", "int8"]
    assert (a.calib_count, c.calib_count) == (8, 2)
    assert a.calib_method == "percentile"  # built-in default when neither sets it
    assert base == tmp_path.resolve()


def test_every_error_is_one_line_with_its_key_path(tmp_path):
    bad = GOOD.replace('width = 0.0625', 'width = -1').replace('dynamic = "hw"', 'dynamic = "depth"') \
        .replace('calib_count = 2', 'calib_cout = 2').replace('"fp32", "fp16"]', '"fp32", "fp64"]')
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, bad))
    lines = info.value.lines
    assert any("models[0].width: Input should be greater than 0" in ln for ln in lines), lines
    assert any("models[1].dynamic:" in ln and "'depth'" in ln for ln in lines), lines
    assert any("models[2].calib_cout: unknown key" in ln for ln in lines), lines
    assert any("models[0].precisions[1]:" in ln for ln in lines), lines
    assert all(ln.startswith(str(tmp_path)) and "\n" not in ln for ln in lines)


@pytest.mark.parametrize("line, key, says", [
    ("max_latency_regression = nan", "models[0].max_latency_regression", "finite number"),
    ("max_miou_drop = inf", "models[0].max_miou_drop", "finite number"),
    ("width = nan", "models[0].width", "finite number"),
    ("thresholds = { min_pixel_agreement = nan }", "models[0].thresholds.min_pixel_agreement", "finite number"),
    ("thresholds = { min_pixel_agreement = 99.9 }", "models[0].thresholds", "fraction in 0..1"),
    ("thresholds = { min_pixel_agreemnt = 0.9 }", "models[0].thresholds", "unknown threshold 'min_pixel_agreemnt'"),
    ("calib_count = 1000000000000", "models[0].calib_count", "less than or equal to"),
    ("bench_iterations = 100000000000", "models[0].bench_iterations", "less than or equal to"),
    ("bench_batches = [1, 1000000]", "models[0].bench_batches", "batch sizes must be"),
    ("num_classes = 100000000", "models[0].num_classes", "less than or equal to"),
])
def test_numbers_no_check_can_use_are_config_errors_not_late_step_errors(tmp_path, line, key, says):
    """NaN compares false with everything (a NaN budget passes or fails every check, silently);
    sizes beyond segexport's limits would fail hours into a run, after other models' steps."""
    name = line.split(" = ")[0]
    text = "\n".join(ln for ln in GOOD.splitlines() if not ln.startswith(f"{name} = ")) + "\n"  # no duplicate key
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text.replace('name = "a"\n', f'name = "a"\n{line}\n', 1)))
    assert any(f"{key}: " in ln and says in ln for ln in info.value.lines), info.value.lines


def test_pyproject_table_missing_files_and_bad_toml(tmp_path):
    path = _write(tmp_path, "[tool.segexport]\n" + GOOD.replace("[defaults]", "[tool.segexport.defaults]")
                  .replace("[[models]]", "[[tool.segexport.models]]"), "pyproject.toml")
    config, _ = load_config(path)
    assert [m.name for m in config.models] == ["a", "b", "c"]
    with pytest.raises(UserError, match="no \\[tool.segexport\\] table"):
        load_config(_write(tmp_path, "[project]\nname='x'\n", "pyproject.toml"))
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(_write(tmp_path, "[[models]\n"))
    with pytest.raises(ConfigError, match="weights: 'w.pt' not found"):
        load_config(_write(tmp_path, GOOD.replace('input_size = "64x64"', 'input_size = "64x64"\nweights = "w.pt"')))
    with pytest.raises(ConfigError, match="used twice"):
        load_config(_write(tmp_path, GOOD.replace('name = "b"', 'name = "a"')))


def test_cli_prints_one_line_per_error_and_exits_2(tmp_path, run_cli):
    bad = GOOD.replace('width = 0.0625', 'width = -1').replace('calib_count = 2', 'calib_cout = 2')
    result = run_cli("pipeline", "run", _write(tmp_path, bad), "--out", tmp_path / "out")
    assert result.exit_code == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 2 and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_shards_partition_the_plan_deterministically(tmp_path):
    config, _ = load_config(_write(tmp_path, GOOD))
    full = [(u.model, u.precision) for u in full_plan(config)]
    assert full == [("a", "fp32"), ("a", "fp16"), ("b", "fp32"), ("b", "int8"), ("c", "fp32"), ("c", "int8")]
    for n in (1, 2, 3, 4, 7):
        parts = [[(u.model, u.precision) for u in plan(config, (i, n))] for i in range(1, n + 1)]
        assert sorted(sum(parts, [])) == sorted(full)  # every unit exactly once
        assert parts == [[(u.model, u.precision) for u in plan(config, (i, n))] for i in range(1, n + 1)]
    # each model's export is reported by exactly one unit, whichever shard runs it
    assert [u.model for u in full_plan(config) if u.owns_export] == ["a", "b", "c"]
    assert [(u.model, u.precision) for u in plan(config, only="b")] == [("b", "fp32"), ("b", "int8")]
    assert [(u.model, u.precision) for u in plan(config, only="b:int8")] == [("b", "int8")]
    with pytest.raises(UserError, match="no model named 'z'"):
        plan(config, only="z")
    for text in ("0/2", "3/2", "x", "1/0"):
        with pytest.raises(UserError, match="must be I/N"):
            parse_shard(text)
    assert parse_shard("2/4") == (2, 4)


def test_deploy_without_segexport_deploy_is_a_one_line_config_error(tmp_path, run_cli, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "segexport.deploy", None)  # as on an install without the deploy module
    config = _write(tmp_path, GOOD.replace('calib_count = 8', 'calib_count = 8\ndeploy = ["triton"]'))
    result = run_cli("pipeline", "run", config, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "deploy bundles need segexport.deploy" in result.stderr
    assert len([ln for ln in result.stderr.splitlines() if ln.strip()]) == 1
    bad = _write(tmp_path, GOOD.replace('calib_count = 8', 'calib_count = 8\ndeploy = ["k8s"]'))
    assert "defaults.deploy[0]:" in run_cli("pipeline", "run", bad).stderr


def test_a_damaged_or_foreign_manifest_is_one_line_exit_2(tmp_path, run_cli):
    import json

    config = _write(tmp_path, GOOD)
    for name, doc in (("junk.json", "not json"), ("old.json", json.dumps({"schema": 99, "entries": []})),
                      ("bad.json", json.dumps({"schema": 1, "entries": [1]})),
                      ("steps.json", json.dumps({"schema": 1, "entries": [{"model": "a", "variant": "fp32", "index": 0,
                                                                            "steps": {"x": 3}, "artefacts": []}]}))):
        (tmp_path / name).write_text(doc)
        result = run_cli("pipeline", "run", config, "--baseline", tmp_path / name, "--dry-run")
        assert result.exit_code == 2 and "Traceback" not in result.stderr, (name, result.stderr)
        assert len([ln for ln in result.stderr.splitlines() if ln.strip()]) == 1 and name in result.stderr
        (tmp_path / "shard" ).mkdir(exist_ok=True)
        (tmp_path / "shard" / "manifest.json").write_text(doc)
        merged = run_cli("pipeline", "merge", tmp_path / "shard", "--out", tmp_path / "m")
        assert merged.exit_code == 2 and "Traceback" not in merged.stderr, (name, merged.stderr)


def test_merge_refuses_an_artefact_path_that_leaves_the_folder(tmp_path, run_cli):
    import json

    (tmp_path / "s").mkdir()
    (tmp_path / "secret").write_text("x")
    doc = {"schema": 1, "segexport": "0", "config_sha256": "c", "units": 1, "baseline": None, "only": None,
           "runs": [{"shard": "1/1"}],
           "entries": [{"model": "a", "variant": "fp32", "index": 0, "steps": {},
                        "artefacts": [{"path": "../secret", "sha256": "0" * 64, "bytes": 1}]}]}
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(doc))
    result = run_cli("pipeline", "merge", tmp_path / "s", "--out", tmp_path / "m")
    assert result.exit_code == 2 and "leaves the folder" in result.stderr
    assert not (tmp_path / "m" / "secret").exists() and not (tmp_path / "secret.copy").exists()


def test_a_file_replaced_deep_inside_a_data_folder_changes_its_hash(tmp_path):
    """The cache key of calib_data/parity_images follows every file, not the folder's own mtime."""
    import os

    from segexport.pipeline.cache import hash_path

    deep = tmp_path / "data" / "sub"
    deep.mkdir(parents=True)
    (deep / "a.png").write_bytes(b"one")
    before = hash_path(tmp_path / "data")
    folder_mtime = (tmp_path / "data").stat().st_mtime_ns
    (deep / "a.png").write_bytes(b"two")
    os.utime(tmp_path / "data", ns=(folder_mtime, folder_mtime))
    assert hash_path(tmp_path / "data") != before


@pytest.mark.parametrize("line, key, says", [
    ('input_size = "100000x100000"', "models[0].input_size", "out of range"),
    ('input_size = "99999999999999999999x1"', "models[0].input_size", "not a size"),
    ('hw_range = "96x96:32x32"', "models[0].hw_range", "inverted"),
    ('hw_range = "32x32:1000000x1000000"', "models[0].hw_range", "out of range"),
    ('batch_range = "1:100000000"', "models[0].batch_range", "MIN <= MAX <= 4096"),
    ('batch_range = "8:1"', "models[0].batch_range", "MIN <= MAX"),
    ('name = "seg\\n"', "models[0].name", "letters, digits"),
    ('name = "' + "s" * 300 + '"', "models[0].name", "1..128"),
    ('model = "' + "u" * 2000 + '"', "models[0].model", "at most 1024"),
    ('model = "unet\\n"', "models[0].model", "one line"),
])
def test_values_that_would_fail_hours_later_are_config_errors(tmp_path, line, key, says):
    name = line.split(" = ")[0]
    model = {"name": 'name = "a"', "model": 'model = "unet"', "input_size": 'input_size = "64x64"'}
    model[name] = line
    text = "[[models]]\n" + "\n".join(model.values()) + "\n"
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert any(f"{key}: " in ln and says in ln for ln in info.value.lines), info.value.lines
    assert all("\n" not in ln for ln in info.value.lines)


def test_names_differing_only_in_case_collide(tmp_path):
    with pytest.raises(ConfigError, match="names differing only in case"):
        load_config(_write(tmp_path, GOOD.replace('name = "b"', 'name = "A"')))


def test_hostile_toml_and_pyproject_are_one_line(tmp_path):
    with pytest.raises(UserError, match="nested too deeply|not valid TOML"):
        load_config(_write(tmp_path, "x = " + "[" * 100_000 + "]" * 100_000 + "\n"))
    for text in ('tool = "x"\n', '[tool]\nsegexport = "x"\n'):
        with pytest.raises(UserError) as info:
            load_config(_write(tmp_path, text, "pyproject.toml"))
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["1/99999999999999999999", "0/2", "3/2", "1/0", "a/b", "1/10001"])
def test_a_shard_out_of_range_is_one_line(text):
    with pytest.raises(UserError, match="shard.*must be"):
        parse_shard(text)


@pytest.mark.parametrize("value", ["/dev/zero", "segexport.toml"])
def test_calib_data_of_the_wrong_kind_is_a_config_error(tmp_path, value):
    text = GOOD.replace("calib_count = 8", f'calib_count = 8\ncalib_data = "{value}"')
    with pytest.raises(ConfigError, match="calib_data.*not an image folder"):
        load_config(_write(tmp_path, text))
