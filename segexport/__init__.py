"""segexport: ship PyTorch semantic-segmentation networks to NVIDIA GPUs.

Kept import-light on purpose: ``segexport --help`` must not pay for torch, onnx or
TensorRT. The public functions below import their modules on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "build_model", "list_models", "export_onnx"]


def __getattr__(name: str):  # PEP 562: lazy public API
    if name in ("build_model", "list_models"):
        from segexport.models import registry

        return getattr(registry, name)
    if name == "export_onnx":
        from segexport.exporter.export import export_onnx

        return export_onnx
    raise AttributeError(name)
