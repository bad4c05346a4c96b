"""`lint --build` that gets no build is a failure naming the extra, never a ✓ with "parser: not run"."""

from __future__ import annotations

from tests.conftest import assert_one_line_error
from tests.test_import_light import small_onnx  # noqa: F401  (fixture)


def test_build_without_a_builder_fails_naming_the_rtx_extra(small_onnx, run_cli, monkeypatch):  # noqa: F811
    import segexport.core.tensorrt as trt

    monkeypatch.setattr(trt, "available", lambda backend: None)  # a box with neither TensorRT nor TensorRT-RTX
    result = run_cli("lint", str(small_onnx), "--build")
    assert_one_line_error(result, "--build", "segexport[rtx]")
    assert "✓" not in result.stdout
    # the static checks alone still pass there
    assert run_cli("lint", str(small_onnx)).exit_code == 0


def test_build_with_the_parser_turned_off_is_a_contradiction(small_onnx, run_cli):  # noqa: F811
    assert_one_line_error(run_cli("lint", str(small_onnx), "--build", "--parser", "none"), "--parser none")
