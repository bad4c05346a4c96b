"""One way to open an ONNX Runtime session, for every step that runs an ONNX on the CPU
(calibration, FP16 range probes, sensitivity search, latency proxies) and for the runners.

Why one function: the provider list and how a path, bytes or an in-memory ModelProto are
handed over should not differ between steps (an in-memory model is serialized once here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

CPU = ("CPUExecutionProvider",)


def ort_session(model: Any, providers: Sequence[str] = CPU):
    """An ``onnxruntime.InferenceSession`` for a path, serialized bytes or a ``ModelProto``."""
    import onnxruntime as ort

    if isinstance(model, Path):
        model = str(model)
    elif not isinstance(model, (str, bytes)):
        model = model.SerializeToString()
    return ort.InferenceSession(model, providers=list(providers))


def ort_runner(onnx_path: str | Path, providers: Sequence[str] = CPU, name: str | None = None):
    """Polygraphy's ``OnnxrtRunner`` over the same kind of session: what export verification
    and the ``ort-*`` parity/bench backends run (activate / infer / deactivate)."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    quiet_polygraphy()
    return OnnxrtRunner(SessionFromOnnx(str(onnx_path), providers=list(providers)), name=name)


def quiet_polygraphy() -> None:
    """Polygraphy logs every session it creates; segexport prints its own summaries."""
    from polygraphy.logger import G_LOGGER

    from segexport.core.onnx_io import quiet_onnxruntime

    G_LOGGER.module_severity = G_LOGGER.ERROR
    quiet_onnxruntime()  # and ONNX Runtime's own C++ warnings (ANSI-coloured, straight to stderr)
