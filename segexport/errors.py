"""The two failures a user sees, and the exit codes CI scripts rely on.

``UserError`` is anything the user can fix (a bad flag, a missing file, a checkpoint for
another model): its message is one line that names the problem *and* the fix, and the CLI
exits with 2. ``CheckFailed`` means the tool ran correctly but an artefact failed a
threshold (parity, lint, latency gate): exit 1, so a CI job goes red for the right reason.
The CLI (``segexport.cli``) is the only place that turns them into output and exit codes.
"""

from __future__ import annotations

EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2


class SegexportError(Exception):
    """Base class; ``exit_code`` is what the CLI returns. The message is kept to one line."""

    exit_code = EXIT_BAD_INPUT
    label = "error"

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


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
