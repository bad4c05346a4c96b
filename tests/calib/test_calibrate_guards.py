"""``segexport calibrate`` refuses what would destroy or mislabel an artefact, before any work,
and a budget the user sets is a check: over it, exit 1 and nothing written."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest

from tests.conftest import TINY_WIDTH, assert_one_line_error


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    from segexport.exporter.export import ExportOptions, export_onnx

    out = tmp_path_factory.mktemp("guards") / "unet.onnx"
    export_onnx(ExportOptions(model="unet", out=out, width=TINY_WIDTH, input_size=(48, 48), num_classes=4))
    return out


@pytest.fixture
def work(fp32, tmp_path):
    """A private copy of the fp32 export, so a test that would destroy it destroys nothing shared."""
    copy = tmp_path / "m.onnx"
    shutil.copy(fp32, copy)
    return copy


def _files(directory):
    return sorted(p.name for p in directory.iterdir())


def test_outputs_that_would_overwrite_the_source_or_each_other(work, run_cli):
    before = work.read_bytes()
    assert_one_line_error(run_cli("calibrate", work, "--calib-count", "2", "--out", work), "--out", "source ONNX")
    assert_one_line_error(run_cli("calibrate", work, "--calib-count", "2", "--trt-cache", work, "--out",
                                  work.with_name("q.onnx")), "--trt-cache", "source ONNX")
    same = work.with_name("q.onnx")
    assert_one_line_error(run_cli("calibrate", work, "--calib-count", "2", "--trt-cache", same, "--out", same),
                          "same file")
    assert work.read_bytes() == before and _files(work.parent) == ["m.onnx"]


@pytest.mark.parametrize("args, fragment", [
    (("--trt-cache", "m.cache", "--trt-version", "abc"), "--trt-version 'abc'"),
    (("--trt-cache", "nodir/m.cache"), "choose another --trt-cache"),
    (("--max-agreement-drop", "-1"), "--max-agreement-drop must be a number >= 0"),
    (("--max-miou-drop", "nan"), "--max-miou-drop must be a number >= 0"),
    (("--eval-count", "0"), "--eval-count must be >= 1"),
])
def test_bad_options_are_refused_before_anything_is_written(work, run_cli, monkeypatch, args, fragment):
    monkeypatch.chdir(work.parent)
    assert_one_line_error(run_cli("calibrate", work, "--calib-count", "2", *args), fragment)
    assert _files(work.parent) == ["m.onnx"]


def test_a_budget_the_fp16_model_misses_fails_and_writes_nothing(work, run_cli):
    """Random weights: FP16 flips a few labels, so a zero agreement budget cannot hold."""
    result = run_cli("calibrate", work, "--precision", "fp16", "--calib-count", "4", "--max-agreement-drop", "0")
    assert_one_line_error(result, "fp16 costs", "over the budget of 0", code=1)
    assert _files(work.parent) == ["m.onnx"]


def test_int8_with_every_layer_kept_in_float_is_no_int8_model(fp32):
    """When only all-float meets the budget, the result has no Q/DQ left: refused, not labelled int8."""
    from segexport.calib.pipeline import _check_budget
    from segexport.errors import CheckFailed

    model = onnx.load(str(fp32))  # no QuantizeLinear anywhere
    with pytest.raises(CheckFailed, match="no layer can run in INT8"):
        _check_budget("int8", model, 0.0, 0.0, "% agreement", explicit=True)
    _check_budget("fp16", model, 0.0, 0.0, "% agreement", explicit=True)  # fp16 has no Q/DQ by design
    with pytest.raises(CheckFailed, match="over the budget"):
        _check_budget("fp16", model, 0.5, 0.1, "% agreement", explicit=True)
    _check_budget("fp16", model, 0.5, 0.1, "% agreement", explicit=False)  # the default budget only guides


def test_calibration_arrays_that_cannot_calibrate(work, run_cli, tmp_path):
    np.savez(tmp_path / "empty.npz")
    assert_one_line_error(run_cli("calibrate", work, "--data", tmp_path / "empty.npz"), "holds no arrays")
    np.save(tmp_path / "zero.npy", np.zeros((0, 3, 48, 48), np.float32))
    assert_one_line_error(run_cli("calibrate", work, "--data", tmp_path / "zero.npy"), "holds 0 samples")
    x = np.random.default_rng(0).standard_normal((2, 3, 48, 48)).astype(np.float32)
    x[1, 0, 5, 5] = np.nan
    np.save(tmp_path / "nan.npy", x)
    assert_one_line_error(run_cli("calibrate", work, "--data", tmp_path / "nan.npy"), "1 NaN/inf values")


def test_calibration_arrays_are_data_not_pickles_or_bombs(work, run_cli, tmp_path):
    """A pickled object array is never unpickled; a header announcing more than segexport holds in
    memory (a tiny compressed .npz can unpack to tens of GB) is refused before anything is read."""
    import io
    import zipfile

    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert_one_line_error(run_cli("calibrate", work, "--data", tmp_path / "obj.npy"), "allow_pickle=False")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (100_000, 3, 512, 512)})
    (tmp_path / "bomb.npy").write_bytes(header.getvalue() + bytes(64))
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(64))
    for name in ("bomb.npy", "bomb.npz"):
        assert_one_line_error(run_cli("calibrate", work, "--data", tmp_path / name), "[100000, 3, 512, 512]",
                              "would not fit in memory", "save fewer samples")
    x = np.random.default_rng(0).standard_normal((2, 3, 48, 48)).astype(np.float32)
    np.savez_compressed(tmp_path / "ok.npz", samples=x)
    result = run_cli("calibrate", work, "--precision", "fp16", "--data", tmp_path / "ok.npz", "--calib-count", "2")
    assert result.exit_code == 0, result.stderr


def test_fewer_images_than_asked_are_said(work, run_cli, tmp_path):
    from segexport.data.synth import make_synthetic

    make_synthetic(tmp_path / "few", 3, (48, 48), num_classes=4)
    result = run_cli("calibrate", work, "--data", tmp_path / "few" / "images", "--calib-count", "10")
    assert result.exit_code == 0, result.stderr
    assert "calibrated on 3 samples" in result.stdout


def test_the_trt_cache_leaves_out_the_inputs_of_layers_kept_in_float(fp32):
    """TensorRT 10 runs a layer in INT8 whenever its tensors have ranges, so the cache must not
    carry the input ranges of the layers the budget keeps in float."""
    from segexport.calib.pipeline import cache_ranges

    graph = onnx.load(str(fp32)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    amax = {t: 1.0 for n in graph.node for t in n.input}
    full, none_left_out = cache_ranges(fp32, amax, [])
    assert full == amax and none_left_out == []
    kept, left_out = cache_ranges(fp32, amax, [convs[1].name])
    assert left_out == [convs[1].input[0]] and convs[1].input[0] not in kept
    assert set(amax) - set(kept) == {convs[1].input[0]}


def test_an_agreement_budget_measures_agreement_even_with_labels(fp32):
    """--max-agreement-drop was judged on the mIoU drop whenever labels existed (synthetic data
    has them): an 8-point agreement loss passed a zero budget."""
    from segexport.calib.mixed_precision import Evaluation, predict

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 48, 48)).astype(np.float32)
    ref = predict(str(fp32), x, "input", "logits", 1)
    flipped = ref.copy()
    flipped[0, :12] = (flipped[0, :12] + 1) % 4  # a quarter of one image changes label
    labels = ref.copy()  # ground truth = the fp32 prediction: mIoU 100
    by_agreement = Evaluation(x, labels, 4, flipped, 100.0, metric="agreement")
    by_miou = Evaluation(x, labels, 4, flipped, 100.0, metric="miou")
    model = onnx.load(str(fp32))
    assert by_agreement.cost(model) == pytest.approx(100 * 12 * 48 / (2 * 48 * 48))
    assert by_miou.cost(model) == pytest.approx(0.0)
