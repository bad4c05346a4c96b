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


class _OrtSessionFileFinder:
    """Import ``onnxruntime`` with ``$TMPDIR`` pointed at a segexport temp folder, for that import only.

    Why: onnxruntime's telemetry (the 1DS SDK) writes a 51-byte session file, ``.ses``, into
    ``$TMPDIR`` when the package is imported, and never removes it: every calibration left one
    behind. The SDK reads ``$TMPDIR`` at that moment only, so the file lands in a registered temp
    folder (``core.files.temp_folder``) that is removed once the import is done (or, if the
    process is killed, by the next run's sweep). A meta-path finder rather than one import
    function because onnxruntime is imported lazily from many places (and by polygraphy).
    """

    def find_spec(self, name, path=None, target=None):
        if name != "onnxruntime":
            return None
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            import os

            from segexport.core.files import temp_folder

            with temp_folder("onnxruntime") as where:
                before = os.environ.get("TMPDIR")
                os.environ["TMPDIR"] = str(where)
                try:
                    run(module)
                finally:
                    if before is None:
                        os.environ.pop("TMPDIR", None)
                    else:
                        os.environ["TMPDIR"] = before

        spec.loader.exec_module = exec_module  # this spec's loader only
        return spec


def keep_onnxruntime_session_file_private() -> None:
    """Install :class:`_OrtSessionFileFinder` once (before onnxruntime is first imported)."""
    import sys

    if "onnxruntime" not in sys.modules and not any(isinstance(f, _OrtSessionFileFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _OrtSessionFileFinder())
