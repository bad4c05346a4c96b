""""Untrained" said plainly: a zoo model without --weights is named as random initialisation
wherever it produces labels, pictures or figures; a trained fixture (tests/fixtures) is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from segexport.models.registry import UNTRAINED

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
UNET = ("--model", "unet", "--width", "0.0625", "--num-classes", "4", "--input-size", "64x64", "--no-lint")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from segexport.data.synth import make_synthetic

    out = tmp_path_factory.mktemp("untrained") / "set"
    make_synthetic(out, count=2, size=(64, 64), num_classes=4)
    return out / "images"


@pytest.mark.parametrize("trained", [False, True])
def test_onnx_predict_and_parity_say_whether_the_model_was_trained(run_cli, tmp_path, images, trained):
    weights = ("--weights", str(FIXTURES / "unet.pt")) if trained else ()
    onnx = tmp_path / "u.onnx"
    result = run_cli("onnx", *UNET, *weights, "--out", onnx)
    assert result.exit_code == 0, result.stderr
    assert (UNTRAINED in result.stdout) is not trained, result.stdout

    result = run_cli("predict", onnx, images, "--out", tmp_path / "pred")
    assert result.exit_code == 0, result.stderr
    said = " ".join(result.stdout.split())  # a note may wrap at 80 columns
    assert (UNTRAINED in said and "meaningless" in said) is not trained, said

    result = run_cli("parity", "--onnx", onnx, *weights, "--count", "1")
    assert result.exit_code == 0, result.stderr
    assert (UNTRAINED in " ".join(result.stdout.split())) is not trained, result.stdout


def test_models_says_the_zoo_ships_no_weights(run_cli):
    result = run_cli("models", "--no-flops", "--width", "0.125")
    assert result.exit_code == 0 and UNTRAINED in " ".join(result.stdout.split())
    result = run_cli("models", "unet", "--no-flops", "--width", "0.125")
    assert result.exit_code == 0 and "random initialisation" in result.stdout
