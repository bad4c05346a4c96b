"""What every command shares: the consoles and option parsers (atomic writes live in core.files).

Command modules import only this and typer at module level; torch, onnx and TensorRT are
imported inside the command body so ``segexport --help`` stays instant.
"""

from __future__ import annotations

import re

from rich.console import Console
from rich.status import Status

from segexport.core.files import as_if_created, atomic_output, check_output_path  # noqa: F401  (re-exported)
from segexport.core.tables import print_table  # noqa: F401  (re-exported: every command's tables)
from segexport.errors import UserError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def parse_size(text: str, flag: str = "--input-size") -> tuple[int, int]:
    """``"512"`` or ``"360x480"`` -> (H, W)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX,]\s*(\d+))?\s*", text or "")
    if not m:
        raise UserError(f"{flag} {text!r} is not a size: write HxW, e.g. 512x512 or 360x480")
    h = int(m.group(1))
    w = int(m.group(2)) if m.group(2) else h
    if h < 1 or w < 1:
        raise UserError(f"{flag} {text!r} must be positive, e.g. 512x512")
    from segexport.core.limits import check_side

    check_side(h, w, flag)  # 100000x100000 would allocate tens of GB before failing
    return h, w


def parse_model_args(pairs: list[str] | None) -> dict[str, object]:
    """``--model-arg key=value`` pairs -> kwargs; values parsed as int/float/bool when they look like one."""
    out: dict[str, object] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"--model-arg {pair!r} must be key=value, e.g. --model-arg in_channels=1")
        key, value = pair.split("=", 1)
        key = key.strip()
        if not key.isidentifier():
            raise UserError(f"--model-arg key {key!r} is not a Python identifier")
        out[key] = _literal(value.strip())
    return out


def _literal(value: str) -> object:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def write_json(path, doc: dict) -> None:
    """Strict JSON (NaN/inf -> null: bare NaN breaks jq and CI parsers), written atomically."""
    from segexport.core.jsonio import dumps

    with atomic_output(path, flag="--json") as tmp:
        tmp.write_text(dumps(doc, indent=2) + "\n")


class Stages:
    """What a long command says while it works (``progress=stages.update``).

    On a terminal a rich spinner whose text follows the stage; anywhere else (a CI log, a pipe),
    where a spinner prints nothing, one line a stage with the seconds since the start, so a
    two-minute export is never two minutes of silence. Lines go to stdout, beside the results
    they precede, and stderr keeps its one line for an error.
    """

    def __init__(self, first: str, out: Console | None = None) -> None:
        self.console = out or console
        self.first = first
        self._status: Status | None = None
        self._start = 0.0
        self._last: str | None = None

    def __enter__(self) -> "Stages":
        import time

        self._start = time.perf_counter()
        if self.console.is_terminal:
            status = self.console.status(f"[bold]{self.first}[/]…", spinner="dots")
            status.__enter__()
            self._status = status
        return self

    def update(self, message: str) -> None:
        import time

        if self._status is not None:
            self._status.update(f"[bold]{message}[/]…")
        elif message != self._last:
            self.console.print(f"[dim]… {message} ({time.perf_counter() - self._start:.0f} s)[/]", markup=True,
                               highlight=False)
        self._last = message

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()

    def __exit__(self, *exc) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)
