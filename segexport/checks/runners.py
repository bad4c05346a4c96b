"""Backends behind one interface: Polygraphy's runner model.

ONNX Runtime and TensorRT use Polygraphy's own ``OnnxrtRunner`` and ``TrtRunner``; PyTorch
eager gets :class:`TorchRunner`, written in the same shape (activate / infer / deactivate,
``inference_time`` set by ``infer_impl``), so parity and latency treat all of them alike.
A backend that cannot run here is reported with the reason (:func:`available_backends`),
never faked.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from polygraphy.backend.base import BaseRunner

from segexport.core.sessions import ort_runner, ort_session, quiet_polygraphy  # noqa: F401  (re-exported)
from segexport.errors import UserError

BACKENDS = ("torch", "torch-cuda", "torch-cuda-fp16", "ort-cpu", "ort-cuda", "ort-trt", "trt")
_ORT_PROVIDERS = {"ort-cpu": "CPUExecutionProvider", "ort-cuda": "CUDAExecutionProvider",
                  "ort-trt": "TensorrtExecutionProvider"}


class TorchRunner(BaseRunner):
    """PyTorch eager as a Polygraphy runner: CPU fp32, CUDA fp32, or CUDA fp16 autocast.

    ``inference_time`` is measured with CUDA events around the forward pass on the GPU
    (host timers would measure kernel *launches*) and with ``perf_counter_ns`` on the CPU.
    """

    def __init__(self, model, *, device: str = "cpu", fp16: bool = False, input_name: str = "input",
                 output_name: str = "logits", input_shape: tuple[int, ...] | None = None, name: str | None = None):
        super().__init__(name=name, prefix="torch-runner")
        self.model, self.device, self.fp16 = model, device, fp16
        self.input_name, self.output_name, self.input_shape = input_name, output_name, input_shape

    def activate_impl(self) -> None:
        self.model = self.model.to(self.device).eval()

    def get_input_metadata_impl(self):
        from polygraphy.common import TensorMetadata
        from polygraphy.datatype import DataType

        # Polygraphy marks dynamic dimensions with strings; PyTorch takes any N, H, W.
        return TensorMetadata().add(self.input_name, DataType.FLOAT32, self.input_shape or ("N", 3, "H", "W"))

    def infer_impl(self, feed_dict):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(feed_dict[self.input_name])).to(self.device)
        cuda = self.device.startswith("cuda")
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=cuda and self.fp16):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                out = self.model(x)
                end.record()
                torch.cuda.synchronize()
                self.inference_time = start.elapsed_time(end) / 1e3
            else:
                t0 = time.perf_counter_ns()
                out = self.model(x)
                self.inference_time = (time.perf_counter_ns() - t0) / 1e9
        return OrderedDict([(self.output_name, out.float().cpu().numpy() if out.is_floating_point() else out.cpu().numpy())])

    def deactivate_impl(self) -> None:
        pass


class OrtIoBindingRunner(BaseRunner):
    """ONNX Runtime on a GPU with I/O binding: the input is copied to the device once, outputs
    stay there during timing, so ``inference_time`` measures the graph, not PCIe transfers.

    Polygraphy's OnnxrtRunner feeds host arrays on every call; that is right for parity and
    wrong for GPU latency. The timing syncs the binding around ``run_with_iobinding``.
    """

    def __init__(self, onnx_path: str | Path, providers: list[str], device: str = "cuda", name: str | None = None):
        super().__init__(name=name, prefix="ort-iobinding-runner")
        self.onnx_path, self.providers, self.device = str(onnx_path), providers, device
        self._bound: tuple | None = None

    def activate_impl(self) -> None:
        self.session = ort_session(self.onnx_path, self.providers)

    def get_input_metadata_impl(self):
        from polygraphy.common import TensorMetadata
        from polygraphy.datatype import DataType

        meta = TensorMetadata()
        for inp in self.session.get_inputs():
            meta.add(inp.name, DataType.FLOAT32, tuple(d if isinstance(d, int) else str(d) for d in inp.shape))
        return meta

    def infer_impl(self, feed_dict):
        import onnxruntime as ort

        arrays = tuple(feed_dict.items())
        # Re-bind unless these are the very same array objects (held in _bound, so their ids
        # cannot be recycled by a new array with other contents): timing loops feed one array.
        if self._bound is None or len(self._bound[0]) != len(arrays) or any(
                k != bk or v is not bv for (k, v), (bk, bv) in zip(arrays, self._bound[0])):
            binding = self.session.io_binding()
            values = {k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v), self.device, 0) for k, v in feed_dict.items()}
            for k, v in values.items():
                binding.bind_ortvalue_input(k, v)
            for out in self.session.get_outputs():
                binding.bind_output(out.name, self.device)
            self._bound = (arrays, binding, values)
        binding = self._bound[1]
        binding.synchronize_inputs()
        t0 = time.perf_counter_ns()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        self.inference_time = (time.perf_counter_ns() - t0) / 1e9
        names = [o.name for o in self.session.get_outputs()]
        return OrderedDict(zip(names, binding.copy_outputs_to_cpu()))

    def deactivate_impl(self) -> None:
        self._bound = None
        del self.session


def backend_device(backend: str) -> str:
    """"cpu" or "cuda": where a backend computes, so speedups compare like with like."""
    return "cpu" if backend == "torch" or backend.startswith("ort-cpu") else "cuda"  # ort-cpu-int8 etc. in benchmarks


def available_backends() -> dict[str, str | None]:
    """Backend -> None when it can run here, else the reason it cannot."""
    reasons: dict[str, str | None] = {"torch": None, "ort-cpu": None}
    try:
        import torch

        cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch is a dependency
        cuda = False
    no_cuda = "no CUDA device visible to PyTorch"
    reasons["torch-cuda"] = None if cuda else no_cuda
    reasons["torch-cuda-fp16"] = None if cuda else no_cuda
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except Exception:  # pragma: no cover
        providers = []
    for backend in ("ort-cuda", "ort-trt"):
        provider = _ORT_PROVIDERS[backend]
        reasons[backend] = None if provider in providers else f"{provider} not available (pip install onnxruntime-gpu on a CUDA machine)"
    from segexport.core.tensorrt import available

    reasons["trt"] = None if available("trt") and cuda else (
        "tensorrt not installed (pip install tensorrt on a GPU machine)" if not available("trt") else no_cuda)
    return {b: reasons[b] for b in BACKENDS}


def make_runner(backend: str, *, onnx_path: str | Path | None = None, engine_path: str | Path | None = None,
                model=None, input_name: str = "input", output_name: str = "logits") -> BaseRunner:
    """A Polygraphy runner for ``backend``; UserError if it cannot run here (with the reason)."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}: choose from {', '.join(BACKENDS)}")
    reason = available_backends()[backend]
    if reason:
        raise UserError(f"backend {backend} is unavailable: {reason}")
    quiet_polygraphy()
    if backend.startswith("torch"):
        if model is None:
            raise UserError(f"backend {backend} needs a PyTorch model (--model)")
        return TorchRunner(model, device="cpu" if backend == "torch" else "cuda", fp16=backend.endswith("fp16"),
                           input_name=input_name, output_name=output_name, name=backend)
    if backend.startswith("ort"):
        if onnx_path is None:
            raise UserError(f"backend {backend} needs --onnx")
        providers = [_ORT_PROVIDERS[backend]] + (["CPUExecutionProvider"] if backend != "ort-cpu" else [])
        if backend != "ort-cpu":  # GPU: I/O binding so latency excludes host<->device copies
            return OrtIoBindingRunner(onnx_path, providers, name=backend)
        return ort_runner(onnx_path, providers, name=backend)
    if engine_path is None:
        raise UserError("backend trt needs --engine (build one with `segexport engine`)")
    if not Path(engine_path).is_file():
        raise UserError(f"engine {str(engine_path)!r} not found: build one with `segexport engine`")
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    from segexport.engines.builder import check_engine_compatible

    info = check_engine_compatible(engine_path)
    if info.backend != "trt":  # a TensorRT-RTX plan does not deserialize in TensorRT, and vice versa
        raise UserError(f"{Path(engine_path).name} was built by {info.backend} {info.tensorrt_version}; backend trt runs "
                        "TensorRT engines: build one with `segexport engine --backend trt`")
    return TrtRunner(EngineFromBytes(BytesFromPath(str(engine_path))), name=backend)
