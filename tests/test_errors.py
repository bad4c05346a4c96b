"""Library errors name parameters; the CLI prints the same error naming flags."""

from __future__ import annotations

from segexport.errors import CheckFailed, UserError, for_python


def test_flags_become_parameters_for_python_callers():
    err = UserError("--input-size '3x' is not a size: write HxW, or pass --no-verify and --model-arg k=v")
    assert str(err) == "input_size= '3x' is not a size: write HxW, or pass verify=False and model_args= k=v"
    assert err.cli_message == "--input-size '3x' is not a size: write HxW, or pass --no-verify and --model-arg k=v"


def test_shell_commands_in_backticks_keep_their_flags():
    text = "export it with `segexport onnx --dynamic hw` or choose another --out"
    assert for_python(text) == "export it with `segexport onnx --dynamic hw` or choose another out="


def test_a_failed_check_carries_its_result():
    result = object()
    err = CheckFailed("parity failed", result=result)
    assert err.result is result and err.exit_code == 1
