"""The public API: keyword arguments named like the flags, typed results, one failure policy."""

from __future__ import annotations

from pathlib import Path

import pytest

import segexport
from segexport.errors import CheckFailed, UserError


def _onnx(path: Path, op: str) -> Path:
    """A one-node 1x3x8x8 graph around ``op`` (Relu passes the lint, MaxUnpool does not)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    if op == "MaxUnpool":
        idx = numpy_helper.from_array(np.zeros((1, 3, 4, 4), dtype=np.int64), "idx")
        nodes = [helper.make_node("MaxPool", ["input"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
                 helper.make_node("MaxUnpool", ["p", "idx"], ["logits"], kernel_shape=[2, 2], strides=[2, 2],
                                  name="unpool")]
        inits = [idx]
    else:
        nodes, inits = [helper.make_node(op, ["input"], ["logits"], name="n")], []
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 8, 8])
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_the_api_is_declared_on_the_package():
    for name in ("export", "calibrate", "build_engine", "lint", "parity", "bench"):
        assert callable(getattr(segexport, name)) and name in dir(segexport)
    with pytest.raises(AttributeError):
        segexport.no_such_step  # noqa: B018


def test_lint_returns_a_typed_result(tmp_path):
    result = segexport.lint(onnx=_onnx(tmp_path / "ok.onnx", "Relu"), parser="none")
    assert result.passed and result.errors == 0 and result.onnx == tmp_path / "ok.onnx"


def test_a_failed_lint_raises_check_failed_with_the_findings(tmp_path):
    with pytest.raises(CheckFailed) as err:
        segexport.lint(onnx=_onnx(tmp_path / "bad.onnx", "MaxUnpool"), parser="none")
    result = err.value.result
    assert result is not None and not result.passed and result.errors >= 1
    assert any(f.op == "MaxUnpool" for f in result.report.errors)


@pytest.mark.parametrize("call, param, flag", [
    (lambda tmp: segexport.export(model="unet", unpool="bogus", out=tmp / "x.onnx"), "unpool=", "--unpool"),
    (lambda tmp: segexport.export(model="unet", precision="fp64", out=tmp / "x.onnx"), "precision=", "--precision"),
    (lambda tmp: segexport.lint(onnx=tmp / "ok.onnx", parser="cuda"), "parser=", "--parser"),
    (lambda tmp: segexport.build_engine(onnx=tmp / "ok.onnx", precision="fp64"), "precision=", "--precision"),
    (lambda tmp: segexport.bench(), "model=", "--model"),
])
def test_bad_input_names_the_parameter_and_the_cli_names_the_flag(tmp_path, call, param, flag):
    _onnx(tmp_path / "ok.onnx", "Relu")
    with pytest.raises(UserError) as err:
        call(tmp_path)
    assert param in str(err.value) and flag not in str(err.value)
    assert flag in err.value.cli_message
    assert not (tmp_path / "x.onnx").exists()


def test_pipeline_and_deploy_are_reachable_from_the_package_without_shadowing():
    """`segexport.pipeline` and `segexport.deploy` are packages; the pipeline's API function is
    `run_pipeline`, so importing the package (as the CLI does) cannot hide it."""
    import segexport
    import segexport.pipeline.config  # noqa: F401  (sets the package attribute)

    assert callable(segexport.run_pipeline) and segexport.run_pipeline.__module__ == "segexport.pipeline"
    assert callable(segexport.deploy.deploy_triton) and callable(segexport.deploy.deploy_deepstream)


BAD_CALLS = [
    ("export", {"num_classes": 2.5}, "num_classes="),
    ("export", {"num_classes": "3"}, "num_classes="),
    ("export", {"width": None}, "width="),
    ("export", {"width": float("nan")}, "width="),
    ("export", {"input_size": "64"}, None),  # accepted spelling, reaches the export (bad model below)
    ("export", {"input_size": "sixty"}, "input_size="),
    ("export", {"input_size": (64,)}, "input_size="),
    ("export", {"hw_range": "32x32"}, "hw_range="),
    ("export", {"batch_range": "8"}, "batch_range="),
    ("export", {"dynamic": 5}, "dynamic="),
    ("export", {"model": None}, "model="),
    ("export", {"verify": "no"}, "verify="),
    ("export", {"model_args": ["a"]}, "model_args="),
    ("export", {"out": 5}, "out="),
    ("export", {"progress": "print"}, "progress="),
    ("export", {"unknown": 1}, "unexpected keyword"),
    ("calibrate", {"onnx": None}, "onnx="),
    ("calibrate", {"onnx": "x.onnx", "calib_count": 2.0}, "calib_count="),
    ("calibrate", {"onnx": "x.onnx", "max_miou_drop": "1"}, "max_miou_drop="),
    ("build_engine", {"onnx": "x.onnx", "target_cc": 87}, "target_cc="),
    ("lint", {"onnx": 1.5}, "onnx="),
    ("lint", {}, "missing"),
    ("parity", {"onnx": "x.onnx", "backends": None}, "backends="),
    ("parity", {"onnx": "x.onnx", "backends": ["ort-cpu", 3]}, "backends="),
    ("parity", {"onnx": "x.onnx", "count": True}, "count="),
    ("parity", {"onnx": "x.onnx", "thresholds": [("a", 1)]}, "thresholds="),
    ("bench", {"batch": "1"}, "batch="),
    ("bench", {"batch": [1, 2.5]}, "batch="),
    ("bench", {"warmup": -1.5}, "warmup="),
    ("run_pipeline", {"config": None}, "config="),
    ("run_pipeline", {"config": "c.toml", "jobs": "2"}, "jobs="),
    ("run_pipeline", {"config": "c.toml", "shard": 1}, "shard="),
]


@pytest.mark.parametrize("fn, kwargs, says", [c for c in BAD_CALLS if c[2]], ids=lambda v: str(v)[:40])
def test_every_bad_argument_is_a_user_error_naming_it(fn, kwargs, says):
    import segexport

    with pytest.raises(segexport.UserError) as info:
        getattr(segexport, fn)(**kwargs)
    assert says in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_the_cli_spelling_of_sizes_is_accepted_by_the_api():
    from segexport.core.arguments import _check

    assert _check("input_size", "tuple[int, int] | None", "64x48") == (64, 48)
    assert _check("input_size", "tuple[int, int] | None", [32, 32]) == (32, 32)
    assert _check("hw_range", "tuple[tuple[int, int], tuple[int, int]] | None", "32x32:96x64") == ((32, 32), (96, 64))
    assert _check("batch_range", "tuple[int, int] | None", "1:8") == (1, 8)
    assert _check("batch", "int | Iterable[int]", 4) == (4,)
    assert _check("backends", "str | Iterable[str]", "ort-cpu,trt") == "ort-cpu,trt"
