"""``--help`` prose reads as paragraphs, not as 95-column docstring lines re-wrapped at 80."""

from __future__ import annotations

import pytest

from segexport.cli import app, reflow_help


def test_reflow_joins_prose_and_keeps_indented_examples():
    doc = """Title line.

    First line of prose
    and its continuation.

    Examples:

      segexport onnx --model deeplabv1
      # a comment kept on its own line
    """
    assert reflow_help(doc) == (
        "Title line.\n\nFirst line of prose and its continuation.\n\nExamples:\n\n"
        "  segexport onnx --model deeplabv1\n  # a comment kept on its own line"
    )


def _commands(typer_app):
    for command in typer_app.registered_commands:
        yield command
    for group in typer_app.registered_groups:
        yield from _commands(group.typer_instance)


@pytest.mark.parametrize("command", list(_commands(app)), ids=lambda c: c.callback.__name__)
def test_every_command_help_is_reflowed(command):
    assert command.help, f"{command.callback.__name__} has no help"
    for paragraph in command.help.split("\n\n"):
        lines = paragraph.splitlines()
        assert len(lines) == 1 or all(line.startswith(" ") for line in lines), paragraph


def test_help_prints_whole_sentences(run_cli):
    result = run_cli("parity", "--help")
    assert result.exit_code == 0
    flat = " ".join(line.strip(" │") for line in result.stdout.splitlines())
    assert "pixel agreement of the label maps" in flat


@pytest.mark.parametrize("args", [("onnx",), ("bench",), ("pipeline", "run")])
def test_flags_show_no_value_type_and_value_options_keep_theirs(run_cli, args):
    """A flag takes no value: `--help <bool>` or `--argmax <bool>` would teach users to write one."""
    result = run_cli(*args, "--help")
    assert result.exit_code == 0
    rows = {line.strip(" │").split()[0]: line for line in result.stdout.splitlines() if line.strip(" │").startswith("--")}
    assert "<bool>" not in result.stdout
    assert rows["--help"].split("--help", 1)[1].strip(" │").startswith("Show this message")
    assert any("<" in line for name, line in rows.items() if name != "--help")  # value options still say what they take
