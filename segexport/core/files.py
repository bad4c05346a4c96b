"""Atomic file output and output-path checks shared by every step that writes an artefact.

Why here and not in the CLI: library calls (the public API, the pipeline) write artefacts too,
and they must get the same guarantees without importing Typer.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from segexport.errors import UserError


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
