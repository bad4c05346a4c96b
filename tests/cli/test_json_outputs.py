"""`--json` of `segexport onnx` / `calibrate`, sidecars with relative paths and a `schema`, and a
bench baseline for another precision refused (before any timing)."""

from __future__ import annotations

import json

from tests.conftest import assert_one_line_error


def test_onnx_and_calibrate_write_their_checks_as_json(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("onnx", "--model", "unet", "--width", "0.0625", "--num-classes", "3", "--input-size", "32x32",
                     "--out", "u.onnx", "--precision", "fp16", "--json", "u.checks.json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads((tmp_path / "u.checks.json").read_text())
    assert doc["schema"] == 1 and doc["passed"] is True and doc["record"]["model"] == "unet"
    assert doc["verify"][0]["shape"] == [1, 3, 32, 32] and doc["verify"][0]["metrics"]["pixel_agreement"] == 1.0
    assert doc["lint"]["errors"] == 0 and doc["calibrate"]["precision"] == "fp16"
    assert doc["calibrate"]["pixel_agreement"] > 0.9

    result = run_cli("calibrate", "u.onnx", "--precision", "int8", "--calib-count", "4", "--trt-cache", "u.cache",
                     "--json", "int8.json")
    assert result.exit_code == 0, result.stderr
    cal = json.loads((tmp_path / "int8.json").read_text())
    assert cal["schema"] == 1 and cal["precision"] == "int8" and cal["calib_samples"] == 4
    assert set(cal["latency_ms"]) == {"fp32", "int8"} and cal["trt_cache"] == "u.cache"
    for side in ("u.int8.onnx.json", "u.cache.json", "u.fp16.onnx.json"):
        prov = json.loads((tmp_path / side).read_text())
        assert prov["schema"] == 1 and prov["source_onnx"] == "u.onnx" and "/" not in prov["artefact"], side

    # a latency baseline measured on the fp32 ONNX is no baseline for the int8 one
    base = {"schema": 1, "model": "unet", "precision": "fp32", "input_size": [32, 32],
            "results": [{"backend": "ort-cpu", "batch": 1, "p50_ms": 1.0}]}
    (tmp_path / "fp32.json").write_text(json.dumps(base))
    result = run_cli("bench", "--onnx", "u.int8.onnx", "--backends", "ort-cpu", "--baseline", "fp32.json",
                     "--junit", "never.xml")
    assert_one_line_error(result, "precision fp32, this run int8")
    assert not (tmp_path / "never.xml").exists()
    del base["precision"]  # written before bench recorded precision: cannot vouch for it
    (tmp_path / "old.json").write_text(json.dumps(base))
    assert_one_line_error(run_cli("bench", "--onnx", "u.int8.onnx", "--baseline", "old.json"), "records no precision")
    assert_one_line_error(run_cli("onnx", "--model", "unet", "--json", "nodir/x.json"), "--json")
