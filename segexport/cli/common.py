"""What every command shares: the consoles, option parsers, and atomic file writes.

Command modules import only this and typer at module level; torch, onnx and TensorRT are
imported inside the command body so ``segexport --help`` stays instant.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rich.console import Console

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


def as_if_created(path: Path, mode: int) -> None:
    """Give a path made by mkstemp/mkdtemp (private, 0600/0700) the permissions a plain create
    would have given it under the current umask: ``mode`` (0o666 files, 0o777 folders) minus it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def check_output_path(path: str | Path, flag: str = "--out") -> Path:
    """Refuse an output path that cannot be written, naming ``flag``; commands call this
    before any long work so a typo in the last argument costs nothing."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise UserError(f"output directory {str(parent)!r} does not exist: create it or choose another {flag}")
    if not os.access(parent, os.W_OK):
        raise UserError(f"output directory {str(parent)!r} is not writable: choose another {flag}")
    if path.is_dir():
        raise UserError(f"{flag} {str(path)!r} is a directory: give a file name")
    return path


@contextmanager
def atomic_output(path: str | Path, suffix: str | None = None, flag: str = "--out") -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename onto ``path`` only if the block succeeds.

    A crash or a failed check never leaves a half-written artefact that a later CI step
    could pick up. The directory must exist and be writable; otherwise the user is told
    which directory and how to fix it.
    """
    path = check_output_path(path, flag)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp", dir=parent)
    except OSError as exc:
        raise UserError(f"output directory {str(parent)!r} is not writable ({exc.strerror}): choose another {flag}") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        as_if_created(tmp_path, 0o666)  # mkstemp makes 0600; artefacts are shared files
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
