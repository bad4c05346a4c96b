"""segexport: ship PyTorch semantic-segmentation networks to NVIDIA GPUs.

The public API, one function per step, keyword arguments named like the CLI flags::

    import segexport

    onnx = segexport.export(model="unet", width=0.25, input_size=(128, 128), out="unet.onnx").onnx
    int8 = segexport.calibrate(onnx=onnx, precision="int8").onnx
    segexport.parity(onnx=int8)              # raises segexport.CheckFailed when a check fails

Kept import-light on purpose (PEP 562): ``import segexport`` loads neither Typer, torch, onnx
nor TensorRT; each function imports its step on first use (:mod:`segexport.api`).
"""

from __future__ import annotations

from segexport._version import __version__
from segexport.core.sessions import keep_onnxruntime_session_file_private
from segexport.errors import CheckFailed, SegexportError, UserError

keep_onnxruntime_session_file_private()  # onnxruntime's telemetry leaves no .ses in $TMPDIR

_API = ("export", "calibrate", "build_engine", "lint", "parity", "bench", "debug")
__all__ = ["__version__", *_API, "run_pipeline", "deploy", "build_model", "list_models", "export_onnx",
           "CheckFailed", "SegexportError", "UserError"]


def __getattr__(name: str):  # PEP 562: lazy public API
    if name in _API:
        from segexport import api

        return getattr(api, name)
    if name == "run_pipeline":  # the pipeline's keyword API lives with it (it calls the steps' API)
        from segexport.pipeline import run_pipeline

        return run_pipeline
    if name == "deploy":  # the package: segexport.deploy.deploy_triton / deploy_deepstream / deploy_all
        import importlib

        return importlib.import_module("segexport.deploy")
    if name in ("build_model", "list_models"):
        from segexport.models import registry

        return getattr(registry, name)
    if name == "export_onnx":
        from segexport.exporter.export import export_onnx

        return export_onnx
    raise AttributeError(name)


def __dir__() -> list[str]:
    return sorted(__all__)
