"""Deployment bundles from a segexport ONNX: DeepStream (nvinfer), Triton, build-on-device scripts.

Entry points for the CLI and the pipeline: :func:`deploy_deepstream` and :func:`deploy_triton`
(plain functions returning dataclasses), and :func:`segexport.deploy.predict.predict`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["deploy_deepstream", "deploy_triton", "predict", "DEPLOY_TARGETS"]

DEPLOY_TARGETS = ("deepstream", "triton")


def __getattr__(name: str) -> Any:  # lazy: importing the package never imports onnx
    if name == "deploy_deepstream":
        from segexport.deploy.deepstream import deploy_deepstream

        return deploy_deepstream
    if name == "deploy_triton":
        from segexport.deploy.triton import deploy_triton

        return deploy_triton
    if name == "predict":
        from segexport.deploy.predict import predict

        return predict
    raise AttributeError(name)
