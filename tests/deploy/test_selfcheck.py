"""The self-check that travels with every bundle, run end to end with ONNX Runtime as the runner.

What is tested here: the bundle writes the golden set and the script; the script, run as a user
runs it (a subprocess, from the bundle, never importing segexport), passes the trained fixture's
own ONNX, fails one whose weights or labels were changed with exit 1 and one line, and says in
one line (exit 2) what is missing. The TensorRT runners need a GPU and TensorRT: here they are
type-checked against NVIDIA's stubs (tests/engines/test_typecheck.py), and their refusals tested.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import segexport
from segexport.core import agreement
from segexport.deploy.deepstream import deploy_deepstream
from segexport.deploy.triton import deploy_triton
from segexport.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
# Runs the bundle's script with segexport made unimportable: the copy on a device has no segexport.
NO_SEGEXPORT = ("import runpy, sys; sys.modules['segexport'] = None; sys.argv = sys.argv[1:]; "
                "runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The trained UNet fixture (99 % mIoU on the synthetic set), exported at its size."""
    meta = json.loads((FIXTURES / "fixtures.json").read_text())["fixtures"]["unet"]
    out = tmp_path_factory.mktemp("trained") / "unet.onnx"
    segexport.export(model="unet", out=out, weights=FIXTURES / meta["file"], num_classes=meta["num_classes"],
                     width=meta["width"], input_size=tuple(meta["input_size"]))
    return out


@pytest.fixture(scope="module")
def bundles(trained, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    ds = deploy_deepstream(trained, root / "ds")
    tr = deploy_triton(trained, root / "tr")
    assert ds.selfcheck.judged and tr.selfcheck.judged, (ds.selfcheck, tr.selfcheck)
    return {"deepstream": ds.out, "triton": tr.model_dir}  # a Triton self-check lives in its model folder


def run_selfcheck(bundle: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_SEGEXPORT, str(bundle / "selfcheck" / "selfcheck.py"), *args],
                          capture_output=True, text=True, cwd=bundle.parent, timeout=300)


def one_line(done: subprocess.CompletedProcess) -> str:
    text = (done.stdout + done.stderr).strip()
    assert len(text.splitlines()) == 1, text
    return text


def copy_bundle(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / bundle.name
    shutil.copytree(bundle, dst)
    return dst


def bundle_onnx(bundle: Path) -> Path:
    doc = json.loads((bundle / "selfcheck" / "selfcheck.json").read_text())
    return bundle / doc["onnx"]


@pytest.mark.parametrize("kind", ["deepstream", "triton"])
def test_the_copies_in_the_bundle_are_byte_identical(bundles, kind):
    folder = bundles[kind] / "selfcheck"
    assert (folder / "agreement.py").read_bytes() == (ROOT / "segexport" / "core" / "agreement.py").read_bytes()
    assert (folder / "selfcheck.py").read_bytes() == (ROOT / "segexport" / "deploy" / "selfcheck.py").read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["agreement.py", "golden.npz", "selfcheck.json", "selfcheck.py"]


def test_the_judging_module_imports_only_numpy_and_the_standard_library():
    import ast

    tree = ast.parse((ROOT / "segexport" / "core" / "agreement.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"__future__", "dataclasses", "numpy"}, names
    # and segexport judges with it: the gate's rule is this module's
    from segexport.calib import gate
    from segexport.core import metrics

    assert gate.confident_pixels is agreement.confident_pixels and metrics.labels_of is agreement.labels_of
    assert gate.DEFAULT_LIMITS["int8"].agreement_drop == agreement.AGREEMENT_DROP["int8"]


@pytest.mark.parametrize("kind", ["deepstream", "triton"])
def test_a_trained_bundle_passes_with_onnxruntime(bundles, kind):
    done = run_selfcheck(bundles[kind], "--runner", "onnxruntime")
    line = one_line(done)
    assert done.returncode == 0, line
    assert line.startswith("self-check passed") and "onnxruntime" in line and "4 golden images" in line


def _tamper(src: Path, dst: Path, how: str) -> Path:
    model = onnx.load(str(src))
    weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 4]
    if how == "weights":  # another network: every conv kernel perturbed by 30 % of its own spread
        rng = np.random.default_rng(0)
        for t in weights:
            w = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array((w + 0.3 * w.std() * rng.standard_normal(w.shape)).astype(np.float32),
                                               t.name))
    else:  # labels swapped: the classifier's output channels (and bias) rolled by one class
        last = [n for n in model.graph.node if n.op_type == "Conv"][-1]
        for name in last.input[1:]:
            t = next(i for i in model.graph.initializer if i.name == name)
            t.CopyFrom(numpy_helper.from_array(np.roll(numpy_helper.to_array(t), 1, axis=0), t.name))
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize("how", ["weights", "labels"])
@pytest.mark.parametrize("kind", ["deepstream", "triton"])
def test_a_tampered_model_fails_with_exit_1_and_one_line(bundles, tmp_path, kind, how):
    bad = _tamper(bundle_onnx(bundles[kind]), tmp_path / "tampered.onnx", how)
    done = run_selfcheck(bundles[kind], "--runner", "onnxruntime", "--onnx", str(bad))
    line = one_line(done)
    assert done.returncode == 1, line
    assert line.startswith("self-check FAILED") and "confident pixels" in line


def test_a_tampered_onnx_inside_the_bundle_fails_too(bundles, tmp_path):
    bundle = copy_bundle(bundles["triton"], tmp_path)
    onnx_path = bundle_onnx(bundle)
    _tamper(onnx_path, onnx_path, "labels")
    done = run_selfcheck(bundle, "--runner", "onnxruntime")
    assert done.returncode == 1 and "FAILED" in one_line(done)


@pytest.mark.parametrize("missing, fragment", [
    ("selfcheck/agreement.py", "agreement.py is missing"),
    ("selfcheck/golden.npz", "golden.npz is missing"),
    ("selfcheck/selfcheck.json", "selfcheck.json is missing"),
    ("1/model.onnx", "not found"),
])
def test_missing_files_give_one_line_and_exit_2(bundles, tmp_path, missing, fragment):
    bundle = copy_bundle(bundles["triton"], tmp_path)
    (bundle / missing).unlink()
    done = run_selfcheck(bundle, "--runner", "onnxruntime")
    line = one_line(done)
    assert done.returncode == 2 and line.startswith("self-check could not run") and fragment in line, line


def test_a_changed_golden_file_is_refused(bundles, tmp_path):
    bundle = copy_bundle(bundles["deepstream"], tmp_path)
    golden = bundle / "selfcheck" / "golden.npz"
    with np.load(golden) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["labels"] = (arrays["labels"] + 1) % 4  # golden labels rewritten to match some other engine
    np.savez_compressed(golden, **arrays)
    done = run_selfcheck(bundle, "--runner", "onnxruntime")
    assert done.returncode == 2 and "SHA-256 differs" in one_line(done)


def test_a_manifest_path_cannot_leave_the_bundle(bundles, tmp_path):
    bundle = copy_bundle(bundles["deepstream"], tmp_path)
    manifest = bundle / "selfcheck" / "selfcheck.json"
    doc = json.loads(manifest.read_text())
    doc["onnx"] = "../../elsewhere.onnx"
    manifest.write_text(json.dumps(doc))
    done = run_selfcheck(bundle, "--runner", "onnxruntime")
    assert done.returncode == 2 and "not a file inside the bundle" in one_line(done)


@pytest.mark.parametrize("runner, fragment", [
    ("tensorrt", ""), ("trtexec", "trtexec not found"),
])
def test_device_runners_without_an_engine_or_tools_say_so_in_one_line(bundles, runner, fragment):
    args = ["--runner", runner] + (["--trtexec", "/nonexistent/trtexec"] if runner == "trtexec" else [])
    done = run_selfcheck(bundles["deepstream"], *args)
    line = one_line(done)
    assert done.returncode == 2, line
    # without TensorRT here the first thing missing is the bindings, on a device the engine
    assert fragment in line and ("tensorrt (Python) is not importable" in line or "not found" in line), line


def test_untrained_model_is_not_judged_never_passed(tmp_path):
    from tests.conftest import TINY_WIDTH

    src = tmp_path / "fcn.onnx"
    segexport.export(model="fcn8s", out=src, width=TINY_WIDTH, input_size=(64, 64))
    bundle = deploy_triton(src, tmp_path / "tr")
    assert not bundle.selfcheck.judged and "NOT JUDGED" in bundle.selfcheck.line
    done = run_selfcheck(bundle.model_dir, "--runner", "onnxruntime")
    assert done.returncode == 3 and "NOT JUDGED" in one_line(done)


def test_the_users_images_become_the_golden_set(trained, tmp_path):
    from segexport.data.synth import make_synthetic

    make_synthetic(tmp_path / "set", count=6, size=(80, 72), num_classes=4, seed=11)  # another size: resized
    bundle = deploy_deepstream(trained, tmp_path / "ds", selfcheck_images=tmp_path / "set" / "images")
    assert "4 of your images" in bundle.selfcheck.images and bundle.selfcheck.judged
    with np.load(bundle.out / "selfcheck" / "golden.npz") as data:
        assert data["inputs"].shape == (4, 3, 64, 64) and data["inputs"].max() > 1.5  # raw 0..255 pixels for nvinfer
    assert run_selfcheck(bundle.out, "--runner", "onnxruntime").returncode == 0
    with pytest.raises(UserError, match="is not a folder of images"):
        deploy_deepstream(trained, tmp_path / "ds2", selfcheck_images=tmp_path / "nope")
    assert not (tmp_path / "ds2").exists()


def test_judge_device_failures_are_one_line():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 3, 8, 8)).astype(np.float32) * 5
    labels, margin = agreement.labels_of(logits), agreement.confidence_margin(logits)
    assert agreement.judge_device(labels, margin, logits, "fp16").passed is True
    nan = logits.copy()
    nan[0, 0, 0, 0] = np.nan
    assert "NaN/inf" in agreement.judge_device(labels, margin, nan, "fp16").line
    assert "shape" in agreement.judge_device(labels, margin, logits[:, :, :4], "fp16").line
    one_class = np.zeros_like(logits)
    one_class[:, 2] = 1.0
    verdict = agreement.judge_device(labels, margin, one_class, "int8")
    assert verdict.passed is False and "only class 2" in verdict.line and "\n" not in verdict.line


def _trtexec_json(outputs) -> str:
    """A file as ``trtexec --exportOutput`` writes it (exportJSONOutput in NVIDIA/TensorRT
    samples/common/sampleReporting.cpp, 8.5.2 to 10.3): the separators and line breaks are its own,
    the values printed by a C++ ostream (so non-finite ones are the bare words nan/inf)."""
    text, sep = "[\n", "  "
    for name, dims, values in outputs:
        text += f'{sep}{{ "name" : "{name}"\n'
        sep = ", "
        text += f'  {sep}"dimensions" : "{dims}"\n  {sep}"values" : [ {sep.join(values)} ]\n  }}\n'
    return text + "]\n"


def test_trtexec_output_is_read_as_trtexec_writes_it():
    from segexport.deploy.selfcheck import read_trtexec_output

    text = _trtexec_json([("aux", "1x1", ["3"]), ("logits", "1x2x1x2", ["0.5", "-1.25e-06", "2", "1e+06"])])
    out = read_trtexec_output(text, "logits")
    assert out.shape == (1, 2, 1, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), [0.5, -1.25e-06, 2, 1e6])


def test_trtexec_non_finite_values_are_read_not_refused():
    """An engine that outputs NaN must fail the check (exit 1), not look unreadable (exit 2)."""
    from segexport.deploy.selfcheck import read_trtexec_output

    out = read_trtexec_output(_trtexec_json([("nan-inf", "1x4", ["nan", "-nan", "inf", "-inf"])]), "nan-inf")
    assert np.isnan(out[0, :2]).all() and out[0, 2] == np.inf and out[0, 3] == -np.inf
