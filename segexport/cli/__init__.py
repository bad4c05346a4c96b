"""The Typer app. Commands live one group a module; this file only wires them up.

Every command callback is wrapped by :func:`_guard`: a :class:`SegexportError` becomes one
line on stderr and ``typer.Exit`` with its code (2 bad input, 1 check failed). Wrapping at
registration means command modules never repeat try/except, and the behaviour is the same
from the console script, ``python -m segexport`` and ``typer.testing.CliRunner``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys

import typer
from rich.markup import escape

from segexport._version import __version__
from segexport.cli.common import err_console
from segexport.errors import SegexportError

app = typer.Typer(
    name="segexport",
    help=(
        "Ship PyTorch segmentation networks to NVIDIA GPUs: model zoo -> TensorRT-ready "
        "ONNX -> FP16/INT8 -> engines, with parity and latency checks that can fail CI.\n\n"
        "Start with:  segexport models   then   segexport onnx --model deeplabv1"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"segexport {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """segexport: PyTorch segmentation -> ONNX -> TensorRT, verified."""


def _guard(callback):
    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except SegexportError as exc:
            # cli_message names flags (--unpool) where str(exc) names parameters (unpool=), see errors.py;
            # the message is plain text: paths, model names and hints like `segexport[tensorrt]` must
            # print as written, not be read as rich markup (or crash on a stray "[/x]")
            err_console.print(f"[bold red]{exc.label}:[/] {escape(exc.cli_message)}", soft_wrap=True, markup=True,
                              highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] != "torch":
                raise
            # a box without PyTorch (a Jetson, a Triton build host): lint and engine work there, this step does not
            err_console.print(f"[bold red]error:[/] segexport {callback.__name__.removesuffix('_command')} needs "
                              "PyTorch, which is not installed here: pip install torch, or run this step where it is "
                              "(lint and engine need only ONNX)", soft_wrap=True, highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def reflow_help(doc: str | None) -> str | None:
    """Join the hard-wrapped lines of each prose paragraph of a command docstring.

    Why: Typer >= 0.13 keeps single newlines in rich mode, then wraps again at the terminal
    width, so a docstring wrapped at 95 columns prints as ragged half-lines in an 80-column
    ``--help``. Paragraphs whose lines are all indented (the examples) keep their breaks.
    """
    if not doc:
        return doc
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(
        p if all(line.startswith(" ") for line in p.splitlines()) else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    )


def _guard_all(typer_app: typer.Typer) -> None:
    for command in typer_app.registered_commands:
        if command.callback is not None and not getattr(command.callback, "__wrapped__", None):
            if command.help is None:
                command.help = reflow_help(command.callback.__doc__)
            command.callback = _guard(command.callback)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _guard_all(group.typer_instance)


def _register() -> None:
    from segexport.cli import models as models_cli

    models_cli.register(app)
    for name in ("onnx", "lint", "engine", "parity", "bench", "data", "calibrate", "pipeline", "deploy", "predict"):
        importlib.import_module(f"segexport.cli.{name}_cmd").register(app)
    _guard_all(app)


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)
