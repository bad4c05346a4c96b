"""MONAI BasicUNetPlusPlus returns a Python list of logits (one per deep-supervision level):
``--output N`` exports entry N, verified against PyTorch, linted and built, static and with a
dynamic batch; a dynamic H/W export is refused in one line naming the module whose Python ``if``
on the size (the replicate pad of odd sizes) makes one graph wrong at some sizes PyTorch runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import assert_one_line_error, require_tensorrt_rtx

MODELS = Path(__file__).with_name("third_party_models.py")
REF = f"{MODELS}:monai_basicunetplusplus"


def test_a_list_output_needs_an_entry(run_cli, tmp_path):
    out = tmp_path / "u.onnx"
    result = run_cli("onnx", "--model", REF, "--input-size", "32x32", "--out", out)
    assert_one_line_error(result, "returned a list", "--output 0")
    assert not out.exists()


@pytest.mark.parametrize("flags, entry, shapes", [
    (["--input-size", "33x37", "--output", "0"], 0, [(1, 3, 33, 37)]),
    (["--input-size", "32x48", "--output", "1", "--model-arg", "deep_supervision=true"], 1, [(1, 3, 32, 48)]),
    (["--input-size", "33x37", "--output", "0", "--dynamic", "batch", "--batch-range", "1:4"], 0,
     [(3, 3, 33, 37), (1, 3, 33, 37)]),
], ids=["static-odd", "deep-supervision-entry-1", "dynamic-batch"])
def test_list_entry_exports_and_matches_pytorch(run_cli, tmp_path, flags, entry, shapes):
    from segexport.core.sessions import ort_session
    from segexport.exporter.metadata import read_record
    from segexport.models.loading import load_model

    out = tmp_path / "u.onnx"
    result = run_cli("onnx", "--model", REF, *flags, "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "lint: 0 errors, 0 warnings" in result.stdout
    assert read_record(out).output_key == str(entry)
    deep = "deep_supervision=true" in flags
    model = load_model(REF, model_args={"deep_supervision": deep}).model
    session = ort_session(out)
    for shape in shapes:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            ref = model(x)[entry].numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    require_tensorrt_rtx()
    built = run_cli("lint", out, "--build")
    assert built.exit_code == 0 and "engine: built" in built.stdout, built.stdout


def test_dynamic_hw_is_refused_naming_the_padding_module(run_cli, tmp_path):
    out = tmp_path / "u.onnx"
    result = run_cli("onnx", "--model", REF, "--input-size", "32x48", "--output", "0", "--dynamic", "hw",
                     "--out", out)
    assert_one_line_error(result, "--dynamic: module 'conv_0_1'", "PyTorch runs at", "export without --dynamic hw")
    assert not out.exists()
