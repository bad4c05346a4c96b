"""The two failures a user sees, and the exit codes CI scripts rely on.

``UserError`` is anything the user can fix (a bad flag, a missing file, a checkpoint for
another model): its message is one line that names the problem *and* the fix, and the CLI
exits with 2. ``CheckFailed`` means the tool ran correctly but an artefact failed a
threshold (parity, lint, latency gate): exit 1, so a CI job goes red for the right reason.
The CLI (``segexport.cli``) is the only place that turns them into output and exit codes.

One policy for failed checks, in every step (export verification, lint, calibration budgets,
parity, the latency gate): the step writes whatever report describes the failure, then raises
``CheckFailed``; where the step got as far as a result, the exception carries it as ``.result``
(its ``passed`` is False) so a caller still has the figures (parity's report, lint's findings,
bench's timings). A result that is *returned* passed its checks.

Parameters, not flags: messages are written once, naming the CLI flag (``--unpool``). ``str()``
of an error, which is what a Python caller of :mod:`segexport.api` sees, names the keyword
argument instead (``unpool=``); the CLI prints :attr:`SegexportError.cli_message`, the flag
form. One table (:data:`PARAMS`) holds the flags whose parameter is not simply the flag with
dashes made underscores, so the sixty-odd messages need no second wording. Flags inside
backticks are shell commands the user may run (```segexport onnx --dynamic hw```) and stay.
"""

from __future__ import annotations

import re

# flag -> the keyword argument of the public API that sets it, where the plain spelling differs
PARAMS: dict[str, str] = {
    "--model-arg": "model_args",
    "--no-slim": "slim=False",
    "--no-verify": "verify=False",
    "--no-lint": "lint=False",
    "--json": "json_out",
    "--threshold": "thresholds",
    "--output": "output_key",
}
_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")
_TICKED = re.compile(r"(`[^`]*`)")


def param_of(flag: str) -> str:
    """``--input-size`` -> ``input_size=``; ``--no-verify`` -> ``verify=False``."""
    name = PARAMS.get(flag, flag[2:].replace("-", "_"))
    return name if "=" in name else f"{name}="


def for_python(message: str) -> str:
    """The message with every CLI flag outside backticks named as its keyword argument."""
    parts = _TICKED.split(message)
    return "".join(part if part.startswith("`") else _FLAG.sub(lambda m: param_of(m.group(0)), part)
                   for part in parts)

EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2


class SegexportError(Exception):
    """Base class; ``exit_code`` is what the CLI returns. The message is kept to one line."""

    exit_code = EXIT_BAD_INPUT
    label = "error"

    def __init__(self, message: str, *, result: object = None) -> None:
        self.cli_message = " ".join(str(message).split())
        self.result = result  # CheckFailed: the step's typed result, with the figures that failed
        super().__init__(for_python(self.cli_message))


def exception_line(exc: BaseException) -> str:
    """``Type: first line of the message``: a foreign exception (the user's own code, torch)
    quoted inside one of our one-line errors."""
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class UserError(SegexportError):
    """Bad input the user can fix; the message must say how."""

    exit_code = EXIT_BAD_INPUT


class CheckFailed(SegexportError):
    """An artefact was produced but failed a check (parity, lint, regression gate)."""

    exit_code = EXIT_CHECK_FAILED
    label = "check failed"
