"""PyTorch at its best, as bench backends: channels-last, ``torch.compile`` and CUDA fp16 autocast.

Why: a user choosing between shipping PyTorch and shipping an engine compares against the
fastest PyTorch they could run, not against eager fp32. Each variant here is a
:class:`TorchRunner` (PyTorch eager) with the model prepared differently; the
timing (CUDA events / ``perf_counter_ns``) is the eager runner's, so every PyTorch number
is measured the same way.

``torch.compile`` compiles lazily on the first call for each input shape. That first call is
run untimed inside the runner and reported as ``compile_s`` (compile plus one forward), so
latency never includes compilation, whatever ``--warmup`` says.
"""

from __future__ import annotations

import shutil
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from polygraphy.backend.base import BaseRunner


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

        x = self.prepare_input(torch.from_numpy(np.ascontiguousarray(feed_dict[self.input_name])).to(self.device))
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

    def prepare_input(self, x):
        """Hook for variants (channels-last): runs before the timing starts."""
        return x

    def deactivate_impl(self) -> None:
        pass


@dataclass(frozen=True)
class TorchVariant:
    device: str  # "cpu" or "cuda"
    fp16: bool = False  # CUDA autocast to float16
    channels_last: bool = False
    compile: bool = False  # torch.compile, default (inductor) backend


# Order is the order of the help text; "torch" (eager fp32 CPU) is the speedup baseline.
TORCH_VARIANTS: dict[str, TorchVariant] = {
    "torch": TorchVariant("cpu"),
    "torch-channels-last": TorchVariant("cpu", channels_last=True),
    "torch-compile": TorchVariant("cpu", compile=True),
    "torch-cuda": TorchVariant("cuda"),
    "torch-cuda-fp16": TorchVariant("cuda", fp16=True),
    "torch-cuda-channels-last": TorchVariant("cuda", channels_last=True),
    "torch-cuda-compile": TorchVariant("cuda", compile=True),
}
EAGER = {"cpu": "torch", "cuda": "torch-cuda"}


def backend_device(backend: str) -> str:
    """"cpu" or "cuda": where a backend computes, so speedups compare like with like."""
    if backend in TORCH_VARIANTS:
        return TORCH_VARIANTS[backend].device
    return "cpu" if backend.startswith("ort-cpu") else "cuda"  # ort-cpu-int8 etc. in benchmarks


def torch_reasons(*, cuda: bool, compiler: str | None = None, dynamo_ok: bool | None = None,
                  triton_ok: bool | None = None) -> dict[str, str | None]:
    """Each PyTorch backend -> None when it can run here, else why not (arguments injectable for tests)."""
    if dynamo_ok is None:
        import torch

        dynamo_ok = bool(torch._dynamo.is_dynamo_supported())
    if triton_ok is None:  # inductor's GPU code generator; CUDA wheels of torch bring it
        try:
            from torch.utils._triton import has_triton

            triton_ok = bool(cuda and has_triton())
        except Exception:  # pragma: no cover - private helper moved
            import importlib.util

            triton_ok = importlib.util.find_spec("triton") is not None
    if compiler is None:
        compiler = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    reasons: dict[str, str | None] = {}
    for name, v in TORCH_VARIANTS.items():
        reason = None
        if v.device == "cuda" and not cuda:
            reason = "no CUDA device visible to PyTorch"
        elif v.compile and not dynamo_ok:
            reason = "torch.compile is not supported on this Python/PyTorch"
        elif v.compile and v.device == "cpu" and not compiler:
            reason = "torch.compile on the CPU needs a C++ compiler (apt-get install g++)"
        elif v.compile and v.device == "cuda" and not triton_ok:
            reason = "torch.compile on CUDA needs triton (it comes with the CUDA wheels of torch)"
        reasons[name] = reason
    return reasons


class TorchVariantRunner(TorchRunner):
    """:class:`TorchRunner` with the model in channels-last memory and/or compiled.

    ``compile_s`` accumulates the untimed first call of every new input shape (compilation plus
    one forward; None for the eager variants, which compile nothing); ``compile_backend`` is what
    ``torch.compile`` uses ("inductor" in bench; tests pass "eager" to check the plumbing fast).
    """

    def __init__(self, model, variant: TorchVariant, *, compile_backend="inductor", **kwargs):
        super().__init__(model, device=variant.device, fp16=variant.fp16, **kwargs)
        self.variant, self.compile_backend = variant, compile_backend
        self.compile_s: float | None = 0.0 if variant.compile else None
        self._seen: set[tuple[int, ...]] = set()
        self._eager = model

    def activate_impl(self) -> None:
        import torch

        model = self._eager.to(self.device).eval()
        if self.variant.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = torch.compile(model, backend=self.compile_backend) if self.variant.compile else model

    def prepare_input(self, x):
        import torch

        # The input as a channels-last model wants it; TorchRunner calls this outside the timing.
        return x.contiguous(memory_format=torch.channels_last) if self.variant.channels_last else x

    def infer_impl(self, feed_dict):
        shape = tuple(feed_dict[self.input_name].shape)
        if self.variant.compile and shape not in self._seen:
            from segexport.errors import UserError, exception_line

            t0 = time.perf_counter()
            try:
                super().infer_impl(feed_dict)  # compiles for this shape: untimed, reported as compile_s
            except Exception as exc:  # inductor/dynamo failures are the model's, not a bench bug: one line
                cause = getattr(exc, "inner_exception", None) or exc.__cause__ or exc  # dynamo wraps the compiler's error
                raise UserError(f"torch.compile failed for this model ({exception_line(cause)}); "
                                f"drop {self.name} from --backends") from None
            self.compile_s += time.perf_counter() - t0
            self._seen.add(shape)
        return super().infer_impl(feed_dict)

    def deactivate_impl(self) -> None:
        import torch

        if self.variant.channels_last:  # Module.to() converted the caller's weights in place: give them back
            self._eager.to(memory_format=torch.contiguous_format)
        self.model = self._eager


def fastest_torch(stats, batch: int, device: str):
    """The PyTorch run with the lowest p50 at ``batch`` on ``device`` (None if none ran there)."""
    runs = [s for s in stats if s.batch == batch and s.backend in TORCH_VARIANTS
            and TORCH_VARIANTS[s.backend].device == device and s.p50_ms > 0]
    return min(runs, key=lambda s: s.p50_ms, default=None)


def add_best_torch_speedups(stats) -> None:
    """Speedup of every run over the fastest PyTorch backend at the same batch, from the same run.

    Like :func:`~segexport.checks.latency.add_speedups`: GPU candidates are compared with the
    fastest CUDA PyTorch run when one ran, else with the fastest CPU one.
    """
    for s in stats:
        order = ("cpu",) if backend_device(s.backend) == "cpu" else ("cuda", "cpu")
        best = next((b for b in (fastest_torch(stats, s.batch, d) for d in order) if b is not None), None)
        if best is not None and s.p50_ms > 0:
            s.speedup_vs_best_torch, s.best_torch = best.p50_ms / s.p50_ms, best.backend
