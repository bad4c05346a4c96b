"""Deployment bundles from a segexport ONNX: DeepStream (nvinfer), Triton, build-on-device scripts.

Entry points for the CLI and the pipeline: :func:`deploy_deepstream` and :func:`deploy_triton`
(plain functions returning dataclasses), and :func:`segexport.deploy.predict.predict`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["deploy_deepstream", "deploy_triton", "deploy_all", "predict", "DEPLOY_TARGETS"]

DEPLOY_TARGETS = ("deepstream", "triton")


def deploy_all(onnx_path: Any, out: Any, targets: Any = DEPLOY_TARGETS, **options: Any) -> dict[str, Any]:
    """Each requested bundle into ``out/<target>`` (the pipeline's ``deploy = ["triton", "deepstream"]``);
    returns {target: result}. Unknown targets are refused before anything is written; ``options`` go
    to every target that takes them (e.g. ``engine``, ``target_trt``)."""
    import inspect
    from pathlib import Path

    from segexport.errors import UserError

    unknown = [t for t in targets if t not in DEPLOY_TARGETS]
    if unknown:
        raise UserError(f"deploy target {unknown[0]!r} is not one of {', '.join(DEPLOY_TARGETS)}")
    from segexport.deploy.bundle import check_out_dir

    out = check_out_dir(out)
    created = not out.exists()
    out.mkdir(exist_ok=True)
    results = {}
    try:
        for target in targets:
            fn = __getattr__(f"deploy_{target}")
            accepted = inspect.signature(fn).parameters
            results[target] = fn(onnx_path, out / target, **{k: v for k, v in options.items() if k in accepted})
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    return results


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
