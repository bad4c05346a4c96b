"""Every command that takes an ONNX refuses a file that is not one, on one line.

protobuf parses many short byte strings (here a one-line text file) as an *empty*
ModelProto, so these files get past ``onnx.load``; without the graph-output check they
linted clean and failed later inside TensorRT's builder.
"""

from __future__ import annotations

import pytest

from tests.conftest import assert_one_line_error

COMMANDS = {
    "lint": lambda f: ("lint", f, "--parser", "none"),
    "engine": lambda f: ("engine", f),
    "parity": lambda f: ("parity", "--onnx", f),
    "calibrate": lambda f: ("calibrate", f, "--precision", "fp16"),
    "bench": lambda f: ("bench", "--onnx", f, "--backends", "ort-cpu", "--input-size", "16"),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_text_file_that_protobuf_parses_is_not_an_onnx_model(run_cli, tmp_path, command):
    bogus = tmp_path / "labels.onnx"
    bogus.write_text("x\n")
    assert_one_line_error(run_cli(*COMMANDS[command](bogus)), "is not an ONNX model", "no graph outputs")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_directory_is_not_an_onnx_model(run_cli, tmp_path, command):
    assert_one_line_error(run_cli(*COMMANDS[command](tmp_path)), "is a directory", "give the .onnx file")
