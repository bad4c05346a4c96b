"""``segexport bench`` end to end on a tiny export: the table, the JSON, skips and the baseline gate."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_WIDTH, assert_one_line_error

SIZE = 48


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    from segexport.exporter.export import ExportOptions, export_onnx

    out = tmp_path_factory.mktemp("bench") / "s.onnx"
    return export_onnx(ExportOptions(model="segnet", out=out, width=TINY_WIDTH, input_size=(SIZE, SIZE), num_classes=4,
                                     dynamic=("batch",), batch_range=(1, 2), verify=False, lint=False)).path


def _rows(path):
    return {(r["backend"], r["batch"]): r for r in json.loads(path.read_text())["results"]}


def test_one_table_for_torch_and_ort_with_percentiles(onnx_path, run_cli, tmp_path):
    out = tmp_path / "b.json"
    result = run_cli("bench", "--onnx", onnx_path, "--batch", "1,2", "--iterations", "4", "--warmup", "1", "--json", out)
    assert result.exit_code == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "p50" in line)
    for column in ("backend", "mean", "p50", "p90", "p99", "img/s", "speedup"):
        assert column in header
    body = [line.split("│")[1:3] for line in result.stdout.splitlines() if line.startswith("│")]
    assert sorted((b.strip(), int(n)) for b, n in body) == [("ort-cpu", 1), ("ort-cpu", 2), ("torch", 1), ("torch", 2)]
    rows = _rows(out)
    assert set(rows) == {("torch", 1), ("torch", 2), ("ort-cpu", 1), ("ort-cpu", 2)}
    for r in rows.values():
        assert r["iterations"] == 4 and 0 < r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["throughput"] == pytest.approx(r["batch"] * 1000 / r["mean_ms"])
    assert rows[("torch", 2)]["speedup_vs_torch"] == pytest.approx(1.0)
    assert rows[("ort-cpu", 1)]["speedup_vs_torch"] == pytest.approx(rows[("torch", 1)]["p50_ms"] / rows[("ort-cpu", 1)]["p50_ms"])
    doc = json.loads(out.read_text())
    assert doc["model"] == "segnet" and doc["input_size"] == [SIZE, SIZE]


def _scripted_timings(monkeypatch, ms: float) -> None:
    """Every timed iteration takes exactly ``ms``: the gate's verdict cannot depend on machine load."""
    from segexport.checks import latency

    monkeypatch.setattr(latency, "iteration_seconds", lambda _runner: ms / 1e3)


def test_baseline_gate_fails_on_an_injected_slowdown_and_passes_within_budget(onnx_path, run_cli, tmp_path,
                                                                               monkeypatch):
    first = tmp_path / "b1.json"
    _scripted_timings(monkeypatch, 4.0)
    assert run_cli("bench", "--onnx", onnx_path, "--backends", "ort-cpu", "--iterations", "5", "--json", first).exit_code == 0
    doc = json.loads(first.read_text())
    assert [r["p50_ms"] for r in doc["results"]] == [pytest.approx(4.0)]
    for p50, name in ((1.0, "fast.json"), (3.7, "near.json"), (16.0, "slow.json")):
        (tmp_path / name).write_text(json.dumps({**doc, "results": [{**r, "p50_ms": p50} for r in doc["results"]]}))
    # a baseline four times faster: this run (4 ms) is a +300 % regression
    result = run_cli("bench", "--onnx", onnx_path, "--backends", "ort-cpu", "--iterations", "5",
                     "--baseline", tmp_path / "fast.json", "--max-regression", "10%")
    assert_one_line_error(result, "latency regression", "ort-cpu batch 1", "4.00 ms vs baseline 1.00 ms", code=1)
    # 4.0 vs 3.7 ms is +8.1 %: inside a 10 % budget, outside a 5 % one
    result = run_cli("bench", "--onnx", onnx_path, "--backends", "ort-cpu", "--iterations", "5",
                     "--baseline", tmp_path / "near.json", "--max-regression", "10%")
    assert result.exit_code == 0, result.stderr
    assert "within baseline" in result.stdout and "+8.1%" in result.stdout
    result = run_cli("bench", "--onnx", onnx_path, "--backends", "ort-cpu", "--iterations", "5",
                     "--baseline", tmp_path / "near.json", "--max-regression", "5%")
    assert_one_line_error(result, "latency regression", code=1)
    result = run_cli("bench", "--onnx", onnx_path, "--backends", "ort-cpu", "--iterations", "5",
                     "--baseline", tmp_path / "slow.json", "--max-regression", "10%")
    assert result.exit_code == 0, result.stderr
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**doc, "input_size": [96, 96]}))
    result = run_cli("bench", "--onnx", onnx_path, "--backends", "ort-cpu", "--iterations", "2", "--baseline", other)
    assert_one_line_error(result, "input_size")


def test_unavailable_backends_are_skipped_with_a_reason(onnx_path, run_cli):
    from segexport.checks.runners import available_backends

    reasons = available_backends()
    missing = [b for b in ("torch-cuda", "ort-cuda", "trt") if reasons[b]]
    if not missing:
        pytest.skip("every GPU backend is available on this machine")
    result = run_cli("bench", "--onnx", onnx_path, "--backends", ",".join(["ort-cpu", *missing]), "--iterations", "2")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    for b in missing:
        line = next(line for line in lines if line.startswith(f"skipped {b}:"))
        assert reasons[b].split(" (")[0] in " ".join(lines[lines.index(line):]).replace("\n", " ")


def test_sizes_and_batches_the_onnx_cannot_take(onnx_path, run_cli):
    result = run_cli("bench", "--onnx", onnx_path, "--backends", "ort-cpu", "--batch", "1,8", "--iterations", "2")
    assert result.exit_code == 0, result.stderr
    assert "skipped ort-cpu b8: ONNX batch range is 1..2" in result.stdout
    assert_one_line_error(run_cli("bench", "--onnx", onnx_path, "--input-size", "64x64"), "static at 48x48", "--dynamic hw")
    assert_one_line_error(run_cli("bench", "--onnx", onnx_path, "--batch", "0"), "--batch")
    assert_one_line_error(run_cli("bench", "--onnx", onnx_path, "--backends", "tpu"), "unknown backend 'tpu'")
    assert_one_line_error(run_cli("bench"), "--model, --onnx")


def test_model_without_onnx_runs_torch_and_says_why_ort_did_not(run_cli, tmp_path):
    result = run_cli("bench", "--model", "unet", "--width", str(TINY_WIDTH), "--num-classes", "3", "--input-size", "32x32",
                     "--iterations", "2", "--warmup", "0", "--json", tmp_path / "m.json")
    assert result.exit_code == 0, result.stderr
    assert "skipped ort-cpu: needs --onnx" in result.stdout
    assert set(_rows(tmp_path / "m.json")) == {("torch", 1)}


def test_duration_mode_and_a_bad_budget(onnx_path, run_cli, tmp_path):
    result = run_cli("bench", "--onnx", onnx_path, "--backends", "ort-cpu", "--duration", "0.3", "--warmup", "0",
                     "--json", tmp_path / "d.json")
    assert result.exit_code == 0, result.stderr
    row = _rows(tmp_path / "d.json")[("ort-cpu", 1)]
    assert row["iterations"] >= 2 and row["p50_ms"] > 0
    assert json.loads((tmp_path / "d.json").read_text())["duration_s"] == 0.3
    assert_one_line_error(run_cli("bench", "--onnx", onnx_path, "--max-regression", "lots"), "--max-regression")


def test_a_baseline_that_cannot_gate_is_refused_before_timing(onnx_path, run_cli, tmp_path):
    """The same file as --json and --baseline would compare the run with itself; a zero p50 or a
    NaN budget would pass anything; another model or size would gate the wrong work."""
    base = tmp_path / "base.json"
    assert run_cli("bench", "--onnx", onnx_path, "--backends", "ort-cpu", "--iterations", "2", "--warmup", "0",
                   "--json", base).exit_code == 0
    assert_one_line_error(run_cli("bench", "--onnx", onnx_path, "--backends", "ort-cpu", "--json", base,
                                  "--baseline", base), "same file")
    assert_one_line_error(run_cli("bench", "--onnx", onnx_path, "--baseline", base, "--max-regression", "nan"),
                          "finite number >= 0")
    zero = json.loads(base.read_text())
    for row in zero["results"]:
        row["p50_ms"] = 0
    (tmp_path / "zero.json").write_text(json.dumps(zero))
    assert_one_line_error(run_cli("bench", "--onnx", onnx_path, "--baseline", tmp_path / "zero.json"),
                          "no latency", "ort-cpu b1: 0")
    other = json.loads(base.read_text()) | {"input_size": [96, 96]}
    (tmp_path / "other.json").write_text(json.dumps(other))
    result = run_cli("bench", "--onnx", onnx_path, "--backends", "ort-cpu", "--baseline", tmp_path / "other.json",
                     "--json", tmp_path / "never.json")
    assert_one_line_error(result, "input_size [96, 96]", "like with like")
    assert not (tmp_path / "never.json").exists()  # refused before timing, nothing written


def test_model_and_size_must_match_the_onnx(onnx_path, run_cli, tmp_path):
    from segexport.exporter.export import ExportOptions, export_onnx

    assert_one_line_error(run_cli("bench", "--onnx", onnx_path, "--model", "unet"),
                          "not the model s.onnx was exported from (segnet)")
    dyn = export_onnx(ExportOptions(model="unet", out=tmp_path / "d.onnx", width=TINY_WIDTH, input_size=(48, 48),
                                    num_classes=4, dynamic=("hw",), verify=False, lint=False)).path
    for size in ("8", "512"):
        assert_one_line_error(run_cli("bench", "--onnx", dyn, "--backends", "ort-cpu", "--input-size", size),
                              "height range is", "--hw-range")


def test_a_duration_that_never_ends_is_refused_and_skips_are_recorded(onnx_path, run_cli, tmp_path):
    for bad in ("nan", "inf", "0"):
        assert_one_line_error(run_cli("bench", "--onnx", onnx_path, "--backends", "ort-cpu", "--duration", bad),
                              "--duration a finite number")
    out = tmp_path / "s.json"
    result = run_cli("bench", "--onnx", onnx_path, "--backends", "ort-cpu,trt", "--iterations", "2", "--warmup", "0",
                     "--json", out)
    assert result.exit_code == 0, result.stderr
    assert "trt" in json.loads(out.read_text())["skipped"]
