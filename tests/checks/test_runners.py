"""Backends as Polygraphy runners: PyTorch eager, ONNX Runtime (plain and I/O binding), TensorRT.

Everything GPU-only is checked for *honest absence* here (a reason, never a fake result);
with a GPU and the packages present the same tests check that those backends run.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from segexport.checks.runners import BACKENDS, OrtIoBindingRunner, TorchRunner, available_backends, make_runner
from segexport.errors import UserError
from tests.conftest import TINY_WIDTH

SIZE = 48


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A real zoo model at 1/16 width and its ONNX, dynamic in batch."""
    from segexport.exporter.export import ExportOptions, export_onnx
    from segexport.models.loading import load_model

    out = tmp_path_factory.mktemp("runners") / "segnet.onnx"
    export_onnx(ExportOptions(model="segnet", out=out, width=TINY_WIDTH, input_size=(SIZE, SIZE), num_classes=5,
                              dynamic=("batch",), batch_range=(1, 4), verify=False, lint=False))
    model = load_model("segnet", num_classes=5, width=TINY_WIDTH).model
    return model, out


def _x(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def test_torch_runner_is_the_model_forward(tiny):
    model, _ = tiny
    x = _x()
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    with TorchRunner(model) as runner:
        meta = runner.get_input_metadata(use_numpy_dtypes=False)
        assert list(meta.keys()) == ["input"] and meta["input"].shape[1] == 3
        out = runner.infer({"input": x})
        assert runner.last_inference_time() > 0
    assert list(out) == ["logits"]
    np.testing.assert_array_equal(out["logits"], expected)


def test_ort_cpu_runner_matches_pytorch(tiny):
    model, onnx_path = tiny
    x = _x(3, seed=1)
    with make_runner("ort-cpu", onnx_path=onnx_path) as ort_runner:
        got = ort_runner.infer({"input": x})["logits"]
        assert ort_runner.last_inference_time() > 0
    with make_runner("torch", model=model) as torch_runner:
        ref = torch_runner.infer({"input": x})["logits"]
    assert got.shape == ref.shape == (3, 5, SIZE, SIZE)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    assert (got.argmax(1) == ref.argmax(1)).mean() > 0.999


def test_iobinding_runner_matches_plain_runner_on_cpu(tiny):
    """The GPU runner's I/O binding path, exercised on ONNX Runtime's CPU device."""
    _, onnx_path = tiny
    x = _x()
    with OrtIoBindingRunner(onnx_path, ["CPUExecutionProvider"], device="cpu") as runner:
        first = runner.infer({"input": x})["logits"]
        again = runner.infer({"input": x})["logits"]  # the same array: the binding is re-used
        other = runner.infer({"input": x[::-1].copy()})["logits"]  # a new array must be re-bound
    with make_runner("ort-cpu", onnx_path=onnx_path) as plain:
        ref = plain.infer({"input": x})["logits"]
    np.testing.assert_array_equal(first, ref)
    np.testing.assert_array_equal(again, ref)
    np.testing.assert_array_equal(other, ref[::-1])


def test_available_backends_give_reasons_that_match_this_machine():
    import onnxruntime as ort

    reasons = available_backends()
    assert tuple(reasons) == BACKENDS
    assert reasons["torch"] is None and reasons["ort-cpu"] is None
    cuda = torch.cuda.is_available()
    for b in ("torch-cuda", "torch-cuda-fp16"):
        assert (reasons[b] is None) == cuda
        assert cuda or "CUDA" in reasons[b]
    providers = ort.get_available_providers()
    assert (reasons["ort-cuda"] is None) == ("CUDAExecutionProvider" in providers)
    assert (reasons["ort-trt"] is None) == ("TensorrtExecutionProvider" in providers)
    has_trt = importlib.util.find_spec("tensorrt") is not None
    assert (reasons["trt"] is None) == (has_trt and cuda)
    if not has_trt:
        assert "tensorrt" in reasons["trt"]


@pytest.mark.parametrize("backend", ["torch-cuda", "torch-cuda-fp16", "ort-cuda", "ort-trt", "trt"])
def test_unavailable_backend_is_refused_with_its_reason(backend, tiny):
    model, onnx_path = tiny
    reason = available_backends()[backend]
    if reason is None:
        pytest.skip(f"{backend} is available on this machine")
    with pytest.raises(UserError, match="unavailable") as err:
        make_runner(backend, onnx_path=onnx_path, model=model, engine_path=onnx_path)
    assert reason.split(" (")[0] in str(err.value)


def test_make_runner_says_what_is_missing(tiny):
    model, onnx_path = tiny
    with pytest.raises(UserError, match="unknown backend 'onnx'"):
        make_runner("onnx", onnx_path=onnx_path)
    with pytest.raises(UserError, match="needs a PyTorch model"):
        make_runner("torch", onnx_path=onnx_path)
    with pytest.raises(UserError, match="needs onnx=") as err:  # a Python caller reads the parameter
        make_runner("ort-cpu", model=model)
    assert "needs --onnx" in err.value.cli_message  # the CLI prints the flag


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_torch_cuda_fp16_runner_agrees_with_cpu(tiny):  # pragma: no cover - GPU machines only
    model, _ = tiny
    x = _x()
    with make_runner("torch", model=model) as cpu:
        ref = cpu.infer({"input": x})["logits"]
    with make_runner("torch-cuda-fp16", model=model) as gpu:
        got = gpu.infer({"input": x})["logits"]
        assert gpu.last_inference_time() > 0
    assert got.dtype == np.float32 and (got.argmax(1) == ref.argmax(1)).mean() > 0.99
    model.cpu()
