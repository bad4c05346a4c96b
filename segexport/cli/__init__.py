"""The Typer app. Commands live one group a module; this file only wires them up.

The only place that prints errors or chooses exit codes: a :class:`SegexportError` becomes
one red line on stderr and its exit code (2 bad input, 1 check failed).
"""

from __future__ import annotations

import sys

import typer

from segexport import __version__
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


def _register() -> None:
    from segexport.cli import models as models_cli

    models_cli.register(app)
    for name in ("onnx", "lint", "engine", "parity", "bench", "data", "calibrate"):
        try:
            module = __import__(f"segexport.cli.{name}_cmd", fromlist=["register"])
        except ModuleNotFoundError as exc:  # command group not built yet
            if exc.name != f"segexport.cli.{name}_cmd":
                raise
            continue
        module.register(app)


_register()


def main() -> None:
    """Console-script entry point: run the app, turning our errors into one line + exit code."""
    try:
        app(standalone_mode=False)
    except SegexportError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("[bold red]aborted[/]")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)
    except __import__("click").exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
