"""One PyTorch model, one reference and one noise floor per model and run (issue 26).

The fp32/fp16/int8 variants of a model are judged against the same PyTorch model on the same
inputs; before the run memo each variant's parity and bench built the model again, re-ran the
reference and, for a chaotic untrained network, re-measured its floor.
"""

from __future__ import annotations

import numpy as np
import pytest

CONFIG = """
[defaults]
precisions = ["fp32", "fp16", "int8"]
calib_count = 4
parity_count = 1
bench_backends = ["torch", "ort-cpu"]
bench_iterations = 2
bench_warmup = 0
bench_trials = 1
thresholds = { min_pixel_agreement = 0.5, min_boundary_agreement = 0.5 }

[[models]]
name = "unet-m"
model = "unet"
width = 0.0625
num_classes = 3
input_size = "32x32"
"""


def test_a_run_builds_each_model_once_for_parity_and_bench(tmp_path, monkeypatch):
    import segexport.models.loading as loading
    from segexport.pipeline import run_pipeline

    built: list[str] = []
    real = loading.load_model

    def counting(ref, **kwargs):
        built.append(ref)
        return real(ref, **kwargs)

    monkeypatch.setattr(loading, "load_model", counting)
    config = tmp_path / "segexport.toml"
    config.write_text(CONFIG)
    from segexport.errors import CheckFailed

    try:  # untrained at 32 px: a reduced variant may fail a gate, which is not what is counted here
        manifest = run_pipeline(config=config, out=tmp_path / "out", cache_dir=None).manifest
    except CheckFailed as exc:
        manifest = exc.result.manifest
    (entry,) = [e for e in manifest["entries"] if e["variant"] == "fp32"]
    ran = [k for k, v in manifest["runs"][0]["steps"].items() if k.endswith(("/parity", "/bench"))
           and v["status"] == "ran"]
    assert len(ran) == 6, manifest["runs"][0]["steps"]  # three variants, parity and bench each
    # export builds its own copy (it prepares the model for tracing); parity and bench share one
    assert built.count("unet") == 2, built
    assert entry["steps"]["parity"]["verdict"] == "pass"


def test_the_memo_never_hands_one_build_another_builds_model(tmp_path):
    from segexport.checks.memo import RunMemo

    memo = RunMemo()
    a = memo.model("unet", num_classes=3, width=0.0625)
    assert memo.model("unet", num_classes=3, width=0.0625) is a
    assert memo.model("unet", num_classes=4, width=0.0625) is not a
    assert memo.model("unet", num_classes=3, width=0.125) is not a
    weights = tmp_path / "w.pt"
    import torch

    torch.save(a.model.state_dict(), weights)
    with_weights = memo.model("unet", num_classes=3, width=0.0625, weights=weights)
    assert with_weights is not a
    torch.save({k: v + 1 for k, v in a.model.state_dict().items()}, weights)  # the file changes: a new build
    assert memo.model("unet", num_classes=3, width=0.0625, weights=weights) is not with_weights


def test_reference_outputs_are_keyed_by_the_inputs_bytes():
    from segexport.checks.memo import RunMemo, array_digest

    memo = RunMemo()
    x = np.zeros((1, 3, 4, 4), np.float32)
    y = x.copy()
    y[0, 0, 0, 0] = np.float32(1e-30)
    calls = []
    for arr in (x, x.copy(), y):
        memo.get(("reference", array_digest(arr)), lambda: calls.append(1))
    assert len(calls) == 2 and memo.hits == 1
    assert array_digest(x) != array_digest(x.astype(np.float64))


@pytest.mark.parametrize("count", [1])
def test_parity_with_a_shared_memo_measures_the_same_figures(count, tmp_path):
    """The second variant's verdict with a warm memo equals the one a fresh memo gives."""
    from segexport import api
    from segexport.checks.memo import RunMemo
    from segexport.checks.parity import ParityOptions, run_parity

    onnx_path = tmp_path / "u.onnx"
    api.export(model="unet", out=onnx_path, num_classes=3, width=0.0625, input_size=(32, 32))
    memo = RunMemo()
    first = run_parity(ParityOptions(onnx=onnx_path, count=count, synthetic=True, memo=memo))
    again = run_parity(ParityOptions(onnx=onnx_path, count=count, synthetic=True, memo=memo))
    fresh = run_parity(ParityOptions(onnx=onnx_path, count=count, synthetic=True))
    assert memo.hits >= 2  # the model and the reference came from the memo
    assert again.pairs[0].metrics == first.pairs[0].metrics == fresh.pairs[0].metrics
