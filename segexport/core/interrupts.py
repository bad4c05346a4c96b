"""SIGINT/SIGTERM: stop the command, remove every temp, exit 130/143 with one line.

Why a module of its own: a CI cancel sends SIGTERM, whose default action kills the process
without unwinding, so every temp file beside an output (a 135 MB ONNX, a staging folder) would
stay. The handler turns the signal into an exception that unwinds through the ``atomic_output``
blocks, and the CLI's guard removes what is left (:func:`segexport.core.files.cleanup_temps`).

Native code that calls back into Python (TensorRT's logger, the ONNX parser) may swallow the
exception raised inside the callback; the handler therefore also *records* the signal, and
:func:`raise_if_interrupted` re-raises it after such a native call returns.
"""

from __future__ import annotations

import signal

_pending: int | None = None


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived.

    A ``KeyboardInterrupt`` on purpose: every library and every layer of segexport already treats
    Ctrl-C as "stop now, unwind, clean up" (``except Exception`` lets it pass, the pipeline stops
    instead of recording a step error, polygraphy and torch re-raise it). A cancelled CI job must
    get exactly that treatment; only the exit code (143, not 130) tells the two apart, so callers
    check ``Terminated`` before ``KeyboardInterrupt``.
    """

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def exit_code(exc: BaseException) -> int:
    """128 + the signal number, as a shell reports a process killed by it."""
    return 128 + (exc.signum if isinstance(exc, Terminated) else signal.SIGINT)


def _handler(signum, _frame) -> None:
    global _pending
    _pending = signum
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def install() -> None:
    """Install the handlers (main thread only: the CLI entry point calls this)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, _handler)
        except (ValueError, OSError):  # not the main thread, or not supported
            pass


def note(signum: int = signal.SIGINT) -> None:
    """Record an interrupt seen (and swallowed) inside a native callback."""
    global _pending
    _pending = signum


def raise_if_interrupted() -> None:
    """Re-raise an interrupt that native code swallowed; call after parser/builder calls."""
    global _pending
    signum, _pending = _pending, None
    if signum is None:
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def pending() -> int | None:
    """The signal recorded since the last :func:`clear` (None: none arrived)."""
    return _pending


def clear() -> None:
    global _pending
    _pending = None
