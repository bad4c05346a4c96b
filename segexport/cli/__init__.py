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
import signal
import sys

import typer
from rich.markup import escape

from segexport._version import __version__
from segexport.cli.common import err_console
from segexport.errors import SegexportError

def _flags_show_no_value_type() -> None:
    """Typer 0.2x prints a value type after every option, ``<bool>`` after flags (``--help <bool>``,
    ``--dynamic-batch <bool>``), which reads as if the flag took a value. A flag takes none: show
    no type for it, as click and earlier Typer did. Guarded, so a Typer without the hook is untouched."""
    option = getattr(getattr(typer, "core", None), "TyperOption", None)
    show = getattr(option, "display_type_rich", None)
    if show is None or getattr(show, "_segexport", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else show(self, ctx)

    display_type_rich._segexport = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


_flags_show_no_value_type()

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
        from segexport.core.files import cleanup_temps
        from segexport.core.interrupts import Terminated, clear, exit_code

        clear()
        try:
            return callback(*args, **kwargs)
        except (KeyboardInterrupt, Terminated) as exc:
            # click would turn Ctrl-C into "Aborted!" and exit 1, and SIGTERM would skip every
            # cleanup: remove what this run staged, say one line, exit as a shell expects
            cleanup_temps()
            err_console.print("[bold red]interrupted[/]", highlight=False)
            raise typer.Exit(exit_code(exc)) from None
        except SegexportError as exc:
            cleanup_temps()
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
    for name in ("onnx", "lint", "engine", "parity", "bench", "data", "calibrate", "pipeline", "deploy", "predict", "debug"):
        importlib.import_module(f"segexport.cli.{name}_cmd").register(app)
    _guard_all(app)


_register()


class _QuietPipe:
    """stdout that survives a reader that went away (``segexport models | head -1``): the rest of
    the output is dropped and the command finishes with its real exit code."""

    def __init__(self, stream) -> None:
        self._stream, self._closed = stream, False

    def write(self, text: str) -> int:
        if not self._closed:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._close()
        return len(text)

    def flush(self) -> None:
        if not self._closed:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._close()

    def _close(self) -> None:
        import os

        self._closed = True
        try:  # the interpreter flushes fd 1 at exit: point it at /dev/null so that flush cannot fail
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
        except (OSError, ValueError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _prepare_process() -> None:
    """What only a real process gets (not CliRunner): safe output streams, signal handlers,
    library warnings kept off the user's terminal."""
    import warnings

    from segexport.core import interrupts

    for stream in (sys.stdout, sys.stderr):
        try:  # a ✓ on an ASCII terminal prints as "?" instead of raising UnicodeEncodeError
            stream.reconfigure(errors="replace")
        except (AttributeError, ValueError):
            pass
    sys.stdout = _QuietPipe(sys.stdout)
    interrupts.install()
    import atexit

    from segexport.core.files import cleanup_temps

    atexit.register(cleanup_temps)  # any exit path: no temp of this run outlives it
    # segexport reports what matters in its own words; torch's pickle UserWarnings, numpy's
    # RuntimeWarnings on a diverged candidate and friends would only bury the one-line result
    for category in (UserWarning, RuntimeWarning, DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)


def main() -> None:
    """Console-script entry point."""
    from segexport.core.files import cleanup_temps
    from segexport.core.interrupts import Terminated, exit_code

    from segexport.core import interrupts

    try:
        _prepare_process()
        app()
    except (KeyboardInterrupt, Terminated) as exc:  # outside a command (while importing, parsing options)
        cleanup_temps()
        err_console.print("[bold red]interrupted[/]", highlight=False)
        sys.exit(exit_code(exc))
    except SystemExit as exc:
        # Typer turns an interrupt outside a command (start-up, option parsing) into exit 130, a
        # SIGTERM included: a cancelled job exits 143 wherever the signal landed
        if exc.code == 130 and interrupts.pending() not in (None, signal.SIGINT):
            cleanup_temps()
            sys.exit(128 + interrupts.pending())
        raise
