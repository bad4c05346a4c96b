"""``segexport debug`` names the PyTorch module where a reduced model goes wrong, and the fix.

Three reproductions: the unpool-mask bug (a Q/DQ copy of the pooled max read by the mask's
Equal) on trained SegNet, an INT8 scale swamped by a saturated channel, and an FP16 overflow in
a graph converted without the range analysis; plus the correct INT8 of trained SegNet, where
no module may be blamed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import onnx
import pytest

from tests.conftest import assert_one_line_error

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _reduced(src: Path, out: Path, model: onnx.ModelProto, precision: str) -> Path:
    from segexport.core.hashing import sha256_file
    from segexport.exporter.metadata import read_record, write_record

    write_record(model, replace(read_record(src), precision=precision, source_onnx_sha256=sha256_file(src)))
    onnx.save(model, str(out))
    return out


def _int8(src: Path, out: Path, *, bug: bool = False) -> Path:
    import segexport.core.exact as exact
    from segexport.calib.data import load_calibration_data
    from segexport.calib.int8 import calibrate, quantize_qdq
    from segexport.exporter.metadata import read_record

    rec = read_record(src)
    calibration = calibrate(src, load_calibration_data("synthetic", rec.preprocess, count=8,
                                                       num_classes=rec.num_classes).inputs)
    restore = exact.restore_exact_inputs
    if bug:  # the graph segexport wrote before the exact region existed
        exact.restore_exact_inputs = lambda model: 0
    try:
        model = quantize_qdq(src, calibration)
    finally:
        exact.restore_exact_inputs = restore
    return _reduced(src, out, model, "int8")


@pytest.fixture(scope="module")
def segnet(tmp_path_factory):
    import segexport

    meta = json.loads((FIXTURES / "fixtures.json").read_text())["fixtures"]["segnet"]
    root = tmp_path_factory.mktemp("debug")
    src = root / "segnet.onnx"
    segexport.export(model="segnet", out=src, weights=FIXTURES / meta["file"], num_classes=meta["num_classes"],
                     width=meta["width"], input_size=tuple(meta["input_size"]))
    return src, _int8(src, root / "segnet.bug.int8.onnx", bug=True), _int8(src, root / "segnet.int8.onnx")


def test_the_unpool_mask_bug_is_localised_to_the_first_pool(segnet, run_cli, tmp_path):
    src, broken, _ = segnet
    report = tmp_path / "where.json"
    result = run_cli("debug", src, broken, "--json", report)
    assert_one_line_error(result, "encoder.pools.0", "segexport lint", code=1)
    doc = json.loads(report.read_text())
    first = doc["first"]
    assert first["module"] == "encoder.pools.0" and first["kind"] == "mask mismatch" and "Equal" in first["ops"]
    assert first["label_agreement"] < 0.95  # that module alone changes labels
    # bounded: not every module was measured at once, and the table is in graph order
    assert len(doc["measured"]) < doc["modules"]


def test_a_correct_int8_blames_no_module(segnet, run_cli):
    src, _, good = segnet
    result = run_cli("debug", src, good)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "no module's output leaves int8's noise" in result.stdout


def test_a_swamped_int8_scale_names_the_layer_and_the_flag_that_fixes_it(run_cli, tmp_path):
    import segexport

    src = tmp_path / "sw.onnx"
    segexport.export(model="tests.calib.hostile_models:swamped", out=src, input_size=(32, 32))
    broken = _int8(src, tmp_path / "sw.int8.onnx")
    found = segexport.debug(reference=src, candidate=broken)
    assert found.first.module == "head"
    assert found.fix.endswith("--keep-float 'head'")
    fixed = segexport.calibrate(onnx=src, precision="int8", keep_float=["head"], out=tmp_path / "fixed.int8.onnx")
    assert fixed.details.gate.passed and fixed.details.gate.judged


def test_an_fp16_overflow_is_localised(run_cli, tmp_path):
    import segexport
    from segexport.calib.fp16 import convert_fp16

    src = tmp_path / "ov.onnx"
    segexport.export(model="tests.calib.hostile_models:overflow", out=src, input_size=(32, 32))
    forced = _reduced(src, tmp_path / "ov.fp16.onnx", convert_fp16(onnx.load(str(src)), []), "fp16")
    result = run_cli("debug", src, forced)
    assert_one_line_error(result, "big is the first module", "--keep-float 'big'", code=1)
    # what calibrate itself writes keeps `big` in FP32 and blames nothing
    good = segexport.calibrate(onnx=src, precision="fp16", out=tmp_path / "ok.fp16.onnx").onnx
    assert run_cli("debug", src, good).exit_code == 0


def test_debug_refuses_a_pair_that_does_not_belong_together(segnet, run_cli, tmp_path):
    src, broken, _ = segnet
    result = run_cli("debug", broken, broken)
    assert_one_line_error(result, "must be the fp32 export", code=2)
    other = tmp_path / "other.onnx"
    import segexport

    segexport.export(model="tests.calib.hostile_models:swamped", out=other, input_size=(64, 64))
    result = run_cli("debug", other, broken)
    assert_one_line_error(result, "was not made from", code=2)
