"""Networks as torchvision, segmentation_models_pytorch, Hugging Face and MONAI write them
export as they are, through the CLI: verified against PyTorch (the CLI does it), linted clean,
parsed and built by TensorRT-RTX, and reduced to fp16 and int8 without a traceback.

The models are small look-alikes (tests/exporter/third_party_models.py) reproducing each
library's output container and upsampling idiom; the real libraries are exercised in
test_real_libraries.py when installed. Every export goes through ``segexport onnx`` so the
pipeline's own clean-up (onnxslim included) is what is tested, not a bare torch.onnx.export.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from segexport.exporter.metadata import read_record
from tests.conftest import assert_one_line_error, require_tensorrt_rtx, verified_rows

MODELS = Path(__file__).with_name("third_party_models.py")


def ref(factory: str) -> str:
    return f"{MODELS}:{factory}"


# factory, extra flags, expected classes, expected output key, upsampled
STATIC = [
    ("tv_deeplabv3", ["--input-size", "40x48"], 21, "out", False),
    ("smp_unet", ["--input-size", "64x32"], 1, None, False),
    ("smp_fpn", ["--input-size", "64x64"], 3, None, False),
    ("smp_pspnet", ["--input-size", "40x56"], 2, None, False),
    ("smp_deeplabv3plus", ["--input-size", "32x48"], 4, None, False),
    ("hf_segformer", ["--input-size", "64x64", "--upsample-logits", "--model-arg", "num_labels=3"], 3, "logits", True),
    ("monai_basicunet", ["--input-size", "33x37"], 2, None, False),  # odd: MONAI pads the upsampled map
    ("monai_segresnet", ["--input-size", "36x44"], 3, None, False),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each STATIC model exported once through the CLI; path per factory (or the failure)."""
    from typer.testing import CliRunner

    from segexport.cli import app

    out_dir = tmp_path_factory.mktemp("third_party")
    results = {}
    for factory, flags, *_ in STATIC:
        out = out_dir / f"{factory}.onnx"
        run = CliRunner().invoke(app, ["onnx", "--model", ref(factory), *flags, "--out", str(out)])
        results[factory] = (run, out)
    return results


@pytest.mark.parametrize("factory, flags, classes, key, upsampled", STATIC, ids=[s[0] for s in STATIC])
def test_exports_verified_and_lint_clean(exported, factory, flags, classes, key, upsampled):
    run, out = exported[factory]
    assert run.exception is None or isinstance(run.exception, SystemExit), run.exception
    assert run.exit_code == 0, run.output
    assert "lint: 0 errors, 0 warnings" in run.stdout
    assert "pass" in run.stdout and "FAIL" not in run.stdout
    record = read_record(out)
    assert (record.num_classes, record.output_key, record.upsample_logits) == (classes, key, upsampled)
    if key is not None:
        assert f"exporting its" in run.stdout and key in run.stdout  # the one-line note says what was taken


@pytest.mark.parametrize("factory", [s[0] for s in STATIC])
def test_tensorrt_rtx_parses_and_builds(run_cli, exported, factory):
    require_tensorrt_rtx()
    _, out = exported[factory]
    result = run_cli("lint", out, "--build")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "engine: built" in result.stdout


@pytest.mark.parametrize("precision", ["fp16", "int8"])
@pytest.mark.parametrize("factory", ["tv_deeplabv3", "smp_fpn", "hf_segformer", "monai_basicunet", "monai_segresnet"])
def test_reduces_without_a_traceback(run_cli, exported, factory, precision, tmp_path):
    _, out = exported[factory]
    target = tmp_path / f"{factory}.{precision}.onnx"
    result = run_cli("calibrate", out, "--precision", precision, "--calib-count", "4", "--eval-count", "2",
                     "--out", target)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "Expected bias" not in result.stdout + result.stderr  # ORT's quantizer chatter stays quiet
    assert read_record(target).precision == precision


DYNAMIC = [
    ("tv_fcn", ["--input-size", "40x48"]),
    ("smp_fpn", ["--input-size", "64x64", "--hw-range", "32x32:96x96"]),  # sizes smp's own check accepts
    ("hf_segformer", ["--input-size", "64x64", "--hw-range", "32x32:96x96", "--upsample-logits"]),
    ("monai_segresnet", ["--input-size", "36x44", "--hw-range", "32x32:64x64"]),  # stride 4: multiples of 4
]


@pytest.mark.parametrize("factory, flags", DYNAMIC, ids=[d[0] for d in DYNAMIC])
def test_dynamic_hw_exports_and_builds(run_cli, tmp_path, factory, flags):
    out = tmp_path / f"{factory}.onnx"
    result = run_cli("onnx", "--model", ref(factory), "--dynamic", "hw", *flags, "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "lint: 0 errors, 0 warnings" in result.stdout
    # opt (noise, flat, constant); min, max and H != W (noise, flat), each against PyTorch
    assert result.stdout.count("pass") == verified_rows(out) >= 7
    require_tensorrt_rtx()
    built = run_cli("lint", out, "--build")
    assert built.exit_code == 0 and "engine: built" in built.stdout, built.stdout


@pytest.mark.parametrize("factory, flags", [
    ("smp_pspnet", ["--input-size", "48x48", "--hw-range", "32x32:96x96"]),
    ("hf_upernet", ["--input-size", "64x64", "--hw-range", "32x48:128x160"]),
], ids=["smp_pspnet", "hf_upernet"])
def test_dynamic_adaptive_pooling_is_right_at_every_size_of_the_profile(run_cli, tmp_path, factory, flags):
    """PyTorch lowers AdaptiveAvgPool2d(k > 1) with its kernel frozen at the traced size; the
    export swaps in shape-following pooling (segexport/exporter/adaptive_pool.py). Checked with
    the same weights at sizes the CLI's min/opt/max verification never sees (odd, non-multiples
    of the pooled size, a batch of 2), plus the TensorRT-RTX build."""
    import numpy as np
    import torch

    from segexport.core.sessions import ort_session
    from segexport.models.loading import load_model

    weights, out = tmp_path / "w.pt", tmp_path / f"{factory}.onnx"
    model = load_model(ref(factory)).model.eval()
    torch.save(model.state_dict(), weights)
    result = run_cli("onnx", "--model", ref(factory), "--weights", weights, "--dynamic", "batch,hw", *flags,
                     "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    session = ort_session(out)
    for shape in [(2, 3, 40, 56), (1, 3, 88, 72), (1, 3, 96, 96) if factory == "smp_pspnet" else (1, 3, 37, 131)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            reference = model(x)
        reference = getattr(reference, "logits", reference).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert np.abs(got - reference).max() <= 1e-5 * max(1.0, np.abs(reference).max()), shape
        assert (got.argmax(1) == reference.argmax(1)).all(), shape
    require_tensorrt_rtx()
    built = run_cli("lint", out, "--build")
    assert built.exit_code == 0 and "engine: built" in built.stdout, built.stdout


def test_a_forward_that_branches_on_the_input_size_is_refused_at_export(run_cli, tmp_path):
    """MONAI replicate-pads an upsampled map to its skip's odd size in Python: torch.export freezes
    the traced case, so the dynamic export is wrong elsewhere. The export refuses it (exit 2, one
    line naming the module and its source line) instead of shipping it; before, only the min/opt/max
    verification saw it, without saying where."""
    out = tmp_path / "basicunet.onnx"
    result = run_cli("onnx", "--model", ref("monai_basicunet"), "--dynamic", "hw", "--input-size", "33x37",
                     "--hw-range", "32x32:48x48", "--out", out)
    assert_one_line_error(result, "--dynamic: module 'ups.0' (third_party_models.py:", "holds only at some sizes",
                          "no Python `if` on x.shape")
    assert not out.exists()


# ---- the scale_factor matrix: every way to write nn.Upsample / F.interpolate(scale_factor=...)


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_scale_factor_matrix_exports_exactly(run_cli, tmp_path, mode, dynamic):
    """One graph per (mode, static/dynamic) holding a branch per factor (2, 3, 1.5, 0.5) and
    recompute_scale_factor (None, True, False): any branch that exports wrong fails the CLI's
    verification, and any non-float Resize scale fails its checker."""
    out = tmp_path / "m.onnx"
    args = ["onnx", "--model", ref("scale_matrix"), "--model-arg", f"mode={mode}", "--input-size", "24x40",
            "--out", out]
    if dynamic:
        args += ["--dynamic", "hw", "--hw-range", "16x24:48x64"]
    result = run_cli(*args)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "lint: 0 errors, 0 warnings" in result.stdout
    assert result.stdout.count("pass") == verified_rows(out) == (7 if dynamic else 3)  # 16x24:48x64 is not square
    import onnx

    model = onnx.load(str(out))
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    assert len(resizes) >= 12
    floats = {i.name: i.data_type for i in model.graph.initializer}
    for node in resizes:
        if len(node.input) > 2 and node.input[2] in floats:
            assert floats[node.input[2]] == onnx.TensorProto.FLOAT, node.name
    require_tensorrt_rtx()
    built = run_cli("lint", out, "--build")
    assert built.exit_code == 0 and "engine: built" in built.stdout, built.stdout


# ---- what is still refused, and how it is said


@pytest.mark.parametrize("factory, flags, fragments", [
    ("hf_segformer", ["--input-size", "64x64"],
     ("returned 1x150x16x16 for a 1x3x64x64 input (1/4 of the input)", "--upsample-logits")),
    ("smp_unet", ["--input-size", "50x64"], ("divisible by 32", "its own input check", "--input-size 64x64")),
    ("tv_deeplabv3", ["--input-size", "32x32", "--output", "logits"], ("--output logits", "it has: out, aux")),
    ("monai_basicunet", ["--input-size", "32x32", "--num-classes", "5"],
     ("returned 2 class channels but --num-classes is 5", "pass --num-classes 2")),
    ("tv_fcn", ["--input-size", "32x32", "--upsample-logits", "--output", "0"], ("--output 0", "it has: out")),
    ("monai_segresnet", ["--input-size", "36x44", "--dynamic", "hw"],
     ("fails in PyTorch itself at 1x3x18x22, a size of the dynamic profile", "--hw-range")),
], ids=["hf-low-res", "smp-divisible", "missing-key", "classes-mismatch", "dict-index", "profile-corner"])
def test_refusals_are_one_line(run_cli, tmp_path, factory, flags, fragments):
    out = tmp_path / "x.onnx"
    result = run_cli("onnx", "--model", ref(factory), *flags, "--out", out)
    assert_one_line_error(result, *fragments)
    assert not out.exists()


def test_output_picks_the_aux_head(run_cli, tmp_path):
    out = tmp_path / "aux.onnx"
    result = run_cli("onnx", "--model", ref("tv_deeplabv3"), "--output", "aux", "--input-size", "32x32",
                     "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert read_record(out).output_key == "aux"
    # the user names their code again (a file never does); parity applies the recorded adapter to it
    parity = run_cli("parity", "--onnx", out, "--model", ref("tv_deeplabv3"), "--count", "1")
    assert parity.exit_code == 0, parity.stdout + parity.stderr
