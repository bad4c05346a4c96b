"""INT8 details (per-channel weights, methods, complete TensorRT caches), the accuracy budget,
--precision best, the npy/npz data paths and the legacy TensorRT calibrator's error paths."""

from __future__ import annotations

import types

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from segexport.errors import UserError
from tests.conftest import TINY_WIDTH

SIZE = (48, 48)


@pytest.fixture(scope="module")
def fcn(tmp_path_factory):
    """FCN-8s: ceil-mode pools exported as Pad(-inf) -> MaxPool, ConvTranspose, skip Adds."""
    from segexport.exporter.export import ExportOptions, export_onnx

    out = tmp_path_factory.mktemp("prec") / "fcn8s.onnx"
    export_onnx(ExportOptions(model="fcn8s", out=out, width=TINY_WIDTH, input_size=SIZE, num_classes=4))
    return out


@pytest.fixture(scope="module")
def samples(fcn):
    from segexport.calib.data import load_calibration_data
    from segexport.exporter.metadata import read_record

    return load_calibration_data("synthetic", read_record(fcn).preprocess, count=6, num_classes=4).inputs


@pytest.fixture(scope="module")
def entropy(fcn, samples):
    from segexport.calib.int8 import calibrate

    seen = []
    calibration = calibrate(fcn, samples, method="entropy", progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(samples), len(samples))
    return calibration


def test_weights_are_per_channel_int8(fcn, entropy):
    from segexport.calib.int8 import quantize_qdq

    model = quantize_qdq(fcn, entropy)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    checked = 0
    for node in (n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")):
        dq = producers[node.input[1]]
        assert dq.op_type == "DequantizeLinear"
        weight, scale = inits[dq.input[0]], inits[dq.input[1]]
        assert weight.dtype == np.int8
        out_axis = 1 if node.op_type == "ConvTranspose" else 0
        assert scale.shape == (weight.shape[out_axis],), (node.name, scale.shape, weight.shape)  # one per channel
        checked += 1
    assert checked >= 10


def test_cache_covers_every_layer_output(fcn, entropy, tmp_path):
    from segexport.calib.trt_cache import read_cache, write_cache

    model = onnx.load(str(fcn))
    # TensorRT keeps a layer in float when a tensor it writes has no scale: every Relu/Add/Conv output needs one
    outputs = {n.output[0] for n in model.graph.node if n.op_type in ("Relu", "Add", "Conv", "ConvTranspose")}
    assert outputs <= set(entropy.amax), sorted(outputs - set(entropy.amax))
    assert all(np.isfinite(v) and v >= 0 for v in entropy.amax.values())
    pads = {n.output[0] for n in model.graph.node if n.op_type == "Pad"}
    assert pads and not pads & set(entropy.amax)  # pool padding gets no range
    write_cache(tmp_path / "c.cache", {"a": 127.0, "b": 0.5}, trt_version="8.6.1", algorithm="minmax")
    lines = (tmp_path / "c.cache").read_text().splitlines()
    assert lines[0] == "TRT-8601-MinMaxCalibration"
    assert lines[1] == "a: 3f800000"  # amax 127 -> scale 1.0, IEEE-754 big-endian
    _, _, scales = read_cache(tmp_path / "c.cache")
    assert scales["b"] == pytest.approx(0.5 / 127, rel=1e-6)


def test_cache_parser_rejects_garbage(tmp_path):
    from segexport.calib.trt_cache import read_cache

    (tmp_path / "x.cache").write_text("TRT-100300-EntropyCalibration2\ninput: 3c0\n")
    with pytest.raises(UserError, match="line 2"):
        read_cache(tmp_path / "x.cache")
    (tmp_path / "y.cache").write_text("not a cache\n")
    with pytest.raises(UserError, match="TRT-<version>"):
        read_cache(tmp_path / "y.cache")


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_other_methods_give_the_same_contract(fcn, samples, entropy, method):
    from segexport.calib.int8 import calibrate, quantize_qdq

    calibration = calibrate(fcn, samples, method=method)
    assert set(calibration.amax) == set(entropy.amax)
    model = quantize_qdq(fcn, calibration)
    inits = {i.name: i for i in model.graph.initializer}
    zps = [inits[n.input[2]] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert zps and all(z.data_type == onnx.TensorProto.INT8 and not numpy_helper.to_array(z).any() for z in zps)
    if method == "minmax":  # minmax bounds every sample; entropy clips outliers, never widens
        x = calibration.amax["input"]
        assert x == pytest.approx(float(np.abs(samples).max()), rel=1e-5)
        assert entropy.amax["input"] <= x * (1 + 1e-6)


@pytest.fixture(scope="module")
def trained_fcn(tmp_path_factory):
    """The trained FCN-8s fixture: an untrained net predicts one class, which INT8 cannot flip."""
    import json
    from pathlib import Path

    from segexport.exporter.export import ExportOptions, export_onnx

    root = Path(__file__).resolve().parents[1] / "fixtures"
    meta = json.loads((root / "fixtures.json").read_text())["fixtures"]["fcn8s"]
    out = tmp_path_factory.mktemp("trained") / "fcn8s.onnx"
    export_onnx(ExportOptions(model="fcn8s", out=out, weights=root / meta["file"], width=meta["width"],
                              num_classes=meta["num_classes"], input_size=tuple(meta["input_size"]), verify=False))
    return out


def test_budget_keeps_sensitive_layers_in_float(trained_fcn):
    from segexport.calib.mixed_precision import Evaluation, budgeted_int8, predict
    from segexport.calib.data import load_calibration_data
    from segexport.calib.int8 import calibrate
    from segexport.exporter.metadata import read_record

    record = read_record(trained_fcn)
    x = load_calibration_data("synthetic", record.preprocess, count=8, seed=5, num_classes=record.num_classes).inputs
    evaluation = Evaluation(x, None, record.num_classes, predict(str(trained_fcn), x, "input", "logits", 1), None)
    calibration = calibrate(trained_fcn, x[:4], method="minmax")
    full = budgeted_int8(str(trained_fcn), calibration, evaluation, budget=1e9)
    assert not full.kept_float and full.cost > 0  # INT8 moves some labels: there is a cost to buy back
    result = budgeted_int8(str(trained_fcn), calibration, evaluation, budget=full.cost / 2)
    assert result.cost <= full.cost / 2 and result.kept_float
    assert all(k.module for k in result.kept_float)  # named by PyTorch module
    assert result.kept_float[0].recovered == max(k.recovered for k in result.kept_float)  # most sensitive first
    producers = {o: n for n in result.model.graph.node for o in n.output}
    for kept in result.kept_float:
        node = next(n for n in result.model.graph.node if n.name == kept.node)
        assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in node.input)


def test_best_ranks_within_budget(fcn):
    from segexport.calib.pipeline import CalibrateOptions, run_calibrate

    opts = CalibrateOptions(onnx=fcn, precision="best", data="synthetic", count=6, eval_count=6, max_agreement_drop=100.0)
    result = run_calibrate(opts)
    table = {row["precision"]: row for row in result.candidates}
    assert set(table) == {"int8", "fp16"} and all(row["within_budget"] for row in table.values())
    assert result.precision == min(table, key=lambda p: table[p]["ort_cpu_ms"])
    result = run_calibrate(opts.__class__(**{**opts.__dict__, "rank_by": "tensorrt", "trt_cache": fcn.with_suffix(".c")}))
    assert result.precision == "int8" and result.trt_cache.is_file()


def test_trt_cache_needs_int8(fcn, run_cli):
    from tests.conftest import assert_one_line_error

    assert_one_line_error(run_cli("calibrate", fcn, "--precision", "fp16", "--trt-cache", fcn.with_suffix(".x"), "--force"),
                          "--trt-cache", "--precision int8")


def test_npz_images_and_folder_give_the_same_tensors(fcn, tmp_path):
    from PIL import Image

    from segexport.calib.data import load_calibration_data
    from segexport.exporter.metadata import read_record

    contract = read_record(fcn).preprocess
    images = np.random.default_rng(1).integers(0, 256, (3, 30, 40, 3), dtype=np.uint8)  # resized by the contract
    np.savez(tmp_path / "imgs.npz", images=images)
    (tmp_path / "dir").mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im).save(tmp_path / "dir" / f"{i}.png")
    from_npz = load_calibration_data(tmp_path / "imgs.npz", contract, count=3)
    from_dir = load_calibration_data(tmp_path / "dir", contract, count=3)
    assert from_npz.inputs.shape == (3, 3, *SIZE) and from_npz.inputs.dtype == np.float32
    np.testing.assert_allclose(from_npz.inputs, from_dir.inputs, atol=1e-6)
    assert from_npz.inputs.mean() < 10  # normalised, not raw 0..255
    np.save(tmp_path / "hwc.npy", images.astype(np.float32))  # float HWC is neither layout
    with pytest.raises(UserError, match="expected float32 N x 3"):
        load_calibration_data(tmp_path / "hwc.npy", contract)


def test_legacy_calibrator_errors_name_the_fix(samples):
    from segexport.calib.trt10_calibrator import make_calibrator

    trt11 = types.SimpleNamespace(__version__="11.0.0")  # TensorRT 11 removed the calibrator classes
    with pytest.raises(UserError, match="Q/DQ ONNX"):
        make_calibrator(samples, trt=trt11)
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="tensorrt<11"):
            make_calibrator(samples)


def test_legacy_calibrator_feeds_tensorrt(samples, tmp_path):
    trt = pytest.importorskip("tensorrt", reason="TensorRT (<= 10) is not installable here: pip install 'tensorrt<11' on a GPU machine")
    torch = pytest.importorskip("torch")
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        pytest.skip(f"TensorRT {trt.__version__} has no implicit INT8 calibrators")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: the calibrator copies batches to GPU memory")
    from segexport.calib.trt10_calibrator import make_calibrator

    cal = make_calibrator(samples, batch=4, cache_path=tmp_path / "c.cache")
    assert isinstance(cal, trt.IInt8EntropyCalibrator2) and cal.get_batch_size() == 4
    first = cal.get_batch(["input"])
    assert len(first) == 1 and first[0] != 0
    assert cal.get_batch(["input"]) is not None  # 6 samples: a full and a padded batch
    assert cal.get_batch(["input"]) is None
    assert cal.read_calibration_cache() is None
    cal.write_calibration_cache(b"TRT-100300-EntropyCalibration2\n")
    assert (tmp_path / "c.cache").read_bytes().startswith(b"TRT-")
