"""Atomic file output and output-path checks shared by every step that writes an artefact.

Why here and not in the CLI: library calls (the public API, the pipeline) write artefacts too,
and they must get the same guarantees without importing Typer.

Every temp file or folder segexport makes beside an output (or in the system temp directory)
is named ``.<target>.segexport-<pid>h<host>-<random><suffix>`` and kept in a registry of live temp
paths, so that

- a SIGINT/SIGTERM handler (``segexport.core.interrupts``) can remove them all before exiting,
- a later run can sweep the ones an earlier run left when it was SIGKILLed (the pid in the
  name is dead), without touching a concurrent run's temps or any file the user made.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from segexport.errors import UserError

TEMP_TAG = ".segexport-"
_LIVE: set[Path] = set()  # temp paths this process created and has not yet renamed or removed
_TEMP_RE = re.compile(r"\.segexport-(\d+)h([0-9a-f]{8})-")


def _host_tag() -> str:
    """This machine, in temp names: a folder shared between machines (NFS) holds temps of runs
    whose pid means nothing here, and those are never swept."""
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


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
    if not parent.is_dir():
        raise UserError(f"{flag} {str(path)!r}: {str(parent)!r} is not a directory: choose another {flag}")
    if not os.access(parent, os.W_OK):
        raise UserError(f"output directory {str(parent)!r} is not writable: choose another {flag}")
    if path.is_dir():
        raise UserError(f"{flag} {str(path)!r} is a directory: give a file name")
    if path.exists() and not path.is_file():  # a FIFO or device: writing would block or hit hardware
        raise UserError(f"{flag} {str(path)!r} is not a regular file: choose another {flag}")
    return path


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def require_inputs(inputs: Iterable[tuple[str | Path | None, str, str]]) -> None:
    """Refuse a missing input (``(path, flag, what)`` triples) before anything heavy is imported:
    torch and ONNX Runtime take seconds to load, and a typo deserves its one-line answer at once.
    The readers check again (and say more: a directory, a FIFO); this is only the fast first word."""
    for item, flag, what in inputs:
        if item is not None and not Path(item).exists():
            raise UserError(f"{what} {str(item)!r} not found: check the {flag} path")


def refuse_replacing(outputs: Iterable[tuple[str | Path | None, str]], force: bool,
                     inputs: Iterable[str | Path | None] = ()) -> None:
    """The overwrite rule of every command: an output file (``(path, flag)`` pairs) that already exists
    is replaced only with ``--force``. Checked before any work, so a forgotten ``--width`` costs a
    one-line error instead of the export it would have replaced. An output that is not a file
    name, or is one of the ``inputs``, is left to the checks that say so more precisely
    (``check_output_path``, :func:`refuse_overwriting_inputs`); ``--force`` lifts neither."""
    read = {Path(p).resolve() for p in inputs if p is not None}
    for item, flag in outputs:
        if item is None or Path(item).resolve() in read:
            continue
        check_output_path(item, flag)  # a directory, a FIFO, a missing parent: named as such
        if not force and (Path(item).exists() or Path(item).is_symlink()):
            raise UserError(f"{flag} {str(item)!r} exists: pass --force to replace it, or choose another {flag}")


def refuse_overwriting_inputs(outputs: Mapping[str, str | Path | None], inputs: Iterable[str | Path | None]) -> None:
    """The one check every command runs before work: no output (``{flag: path}``) may be a file
    the command reads, nor another output.

    Paths are compared resolved (symlinks, ``..``) and, when they exist, by device and inode, so
    a hard link or a symlinked folder cannot smuggle an input in as an output.
    """
    seen: dict[object, str] = {}
    for item in inputs:
        if item is None:
            continue
        p = Path(item)
        seen[("path", p.resolve())] = f"the input {str(p)!r}"
        ident = _identity(p)
        if ident is not None:
            seen[("inode", ident)] = f"the input {str(p)!r}"
    for flag, item in outputs.items():
        if item is None:
            continue
        p = Path(item)
        keys = [("path", p.resolve())] + ([("inode", _identity(p))] if _identity(p) is not None else [])
        clash = next((seen[k] for k in keys if k in seen), None)
        if clash is not None:
            raise UserError(f"{flag} {str(p)!r} is {clash}: writing it would destroy what this command reads; "
                            f"choose another {flag}")
        for k in keys:
            seen[k] = f"also given as {flag}"


MAX_PART_BYTES = 255 - 64  # a file name's limit, less the temp name segexport makes beside it


def check_name_lengths(path: str | Path, flag: str) -> None:
    """Every component of ``path`` short enough for the filesystem and for the temp beside it
    (ENAMETOOLONG would otherwise surface as a traceback, or after the work was done)."""
    long = next((part for part in Path(path).parts if len(part.encode()) > MAX_PART_BYTES), None)
    if long is not None:
        raise UserError(f"{flag} {str(path)[:60]!r}...: the name {long[:40]!r}... is longer than {MAX_PART_BYTES} "
                        f"bytes: choose a shorter {flag}")


def refuse_nested(outputs: Mapping[str, str | Path | None], inputs: Mapping[str, str | Path | None]) -> None:
    """An output *folder* may not be, hold or lie inside anything the command reads (``{label: path}``),
    nor another output folder: writing it would replace the input's files (``merge s1 s2 --out s1``,
    ``run --out dist --baseline dist/manifest.json``), or the next run would read its own outputs
    (``predict --out images/preds``). Paths are compared resolved (symlinks, ``..``)."""
    seen = [(label, Path(p).resolve()) for label, p in inputs.items() if p is not None]
    for flag, item in outputs.items():
        if item is None:
            continue
        out = Path(item).resolve()
        for label, p in seen:
            if out == p or p.is_relative_to(out) or out.is_relative_to(p):
                how = "is" if out == p else "holds" if p.is_relative_to(out) else "lies inside"
                raise UserError(f"{flag} {str(item)!r} {how} {label}: writing it would destroy what this command "
                                f"reads (or read what it writes); choose another {flag}")
        seen.append((flag, out))


def regular_file_inside(path: str | Path, root: str | Path) -> bool:
    """Whether ``path`` is a regular file, not a symlink, that (``..`` and linked folders resolved)
    lies inside ``root``: what a bundle, a cache entry or a shard may hand out as its own file.
    A symlink inside to ``/etc/passwd`` or another job's artefact is not one."""
    path, root = Path(path), Path(root)
    try:
        real = path.resolve(strict=True)
        return not path.is_symlink() and real.is_relative_to(root.resolve(strict=True)) and real.is_file()
    except (OSError, RuntimeError):
        return False


# ---------------------------------------------------------------------------------------------
# temp paths: registry, cleanup, sweeping


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def sweep_stale_temps(directory: str | Path, name: str | None = None) -> list[Path]:
    """Remove temp paths an earlier, killed segexport run left in ``directory`` (those for
    ``name`` only, when given): their pid is dead. A live run's temps are never touched."""
    directory = Path(directory) if str(directory) else Path(".")
    prefix = f".{name}{TEMP_TAG}" if name else None
    removed = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if prefix is not None and not entry.name.startswith(prefix):
            continue
        m = _TEMP_RE.search(entry.name)
        if m is None or TEMP_TAG not in entry.name or not entry.name.startswith(".") or m.group(2) != _host_tag():
            continue
        if not _pid_alive(int(m.group(1))):
            _remove(entry)
            removed.append(entry)
    return removed


def new_temp(target: str | Path, *, suffix: str | None = None, directory: bool = False,
             where: str | Path | None = None) -> Path:
    """A registered temp file (or folder) for ``target``: beside it, or in ``where`` (e.g. the
    system temp folder). Stale temps of the same target from killed runs are swept first."""
    target = Path(target)
    parent = Path(where) if where is not None else (target.parent if str(target.parent) else Path("."))
    sweep_stale_temps(parent, target.name)
    prefix = f".{target.name}{TEMP_TAG}{os.getpid()}h{_host_tag()}-"
    suffix = suffix if suffix is not None else (target.suffix or ".tmp")
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
        os.close(fd)
        tmp = Path(name)
    _LIVE.add(tmp)
    return tmp


@contextmanager
def temp_folder(name: str) -> Iterator[Path]:
    """A registered private folder in the system temp directory (``.<name>.segexport-<pid>-*``),
    removed on exit, on SIGINT/SIGTERM, or by the next run's sweep if this one is SIGKILLed."""
    where = Path(tempfile.gettempdir())
    folder = new_temp(where / name, directory=True, where=where, suffix="")
    try:
        yield folder
    finally:
        discard_temp(folder)


def forget_temp(path: Path) -> None:
    """The temp was renamed into place (or removed): it is no longer ours to clean up."""
    _LIVE.discard(Path(path))


def discard_temp(path: Path) -> None:
    """Remove a temp (file or folder) and forget it."""
    _remove(Path(path))
    forget_temp(path)


def cleanup_temps() -> None:
    """Remove every live temp path: called by the interrupt handler and at exit."""
    for path in list(_LIVE):
        discard_temp(path)


def live_temps() -> set[Path]:
    return set(_LIVE)


# ---------------------------------------------------------------------------------------------
# writing


_DISK_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def os_error_line(exc: OSError, path: Path, flag: str) -> UserError | None:
    """A write failure the user can fix (disk full, read-only, no permission) as one line."""
    if exc.errno in _DISK_ERRNOS:
        return UserError(f"no space left writing {str(path)!r} ({exc.strerror}): free disk space or choose another {flag}")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return UserError(f"cannot write {str(path)!r} ({exc.strerror}): choose another {flag}")
    return None


@contextmanager
def blocked_signals() -> Iterator[None]:
    """SIGINT/SIGTERM wait while renames commit, so several outputs land all together."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (AttributeError, OSError, ValueError):  # not on this platform
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextmanager
def atomic_outputs(targets: Sequence[tuple[str | Path, str]], *, sidecars: Sequence[tuple[str | Path, str]] = ()
                   ) -> Iterator[dict[Path, Path]]:
    """Stage several outputs, then replace them all together: ``{target: temp}`` is yielded.

    Nothing is renamed unless the whole block succeeds. ``sidecars`` describe ``targets``
    (provenance, engine info): their old versions are removed before any target is replaced and
    the new ones renamed in last, so at no moment does a sidecar describe an artefact that is
    not there (an interrupted commit leaves an artefact without a sidecar, which every reader
    refuses). SIGINT/SIGTERM are held back during the renames.
    """
    checked = [(check_output_path(p, flag), flag) for p, flag in [*targets, *sidecars]]
    staged: dict[Path, Path] = {}
    flags = {p: f for p, f in checked}
    try:
        for path, flag in checked:
            try:
                staged[path] = new_temp(path)
            except OSError as exc:
                raise UserError(f"output directory {str(path.parent)!r} is not writable ({exc.strerror}): "
                                f"choose another {flag}") from exc
        try:
            yield staged
        except OSError as exc:
            bad = next((p for p, t in staged.items() if exc.filename and Path(exc.filename) == t), None)
            target = bad or next(iter(staged))
            line = os_error_line(exc, target, flags[target])
            if line is not None:
                raise line from exc
            raise
        side = [Path(p) for p, _ in sidecars]
        with blocked_signals():
            for path in staged:
                as_if_created(staged[path], 0o666)  # mkstemp makes 0600; artefacts are shared files
            for path in side:
                if path.exists():
                    path.unlink()
            for path, tmp in staged.items():
                if path not in side:
                    os.replace(tmp, path)
                    forget_temp(tmp)
            for path in side:
                os.replace(staged[path], path)
                forget_temp(staged[path])
    finally:
        for tmp in staged.values():
            if tmp in _LIVE:
                discard_temp(tmp)


@contextmanager
def atomic_output(path: str | Path, suffix: str | None = None, flag: str = "--out") -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename onto ``path`` only if the block succeeds.

    A crash, a failed check or a SIGTERM never leaves a half-written artefact (nor the temp)
    that a later CI step could pick up. A full disk or a read-only folder is one line naming
    the path and ``flag``.
    """
    path = check_output_path(path, flag)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        tmp_path = new_temp(path, suffix=suffix)
    except OSError as exc:
        raise UserError(f"output directory {str(parent)!r} is not writable ({exc.strerror}): choose another {flag}") from exc
    try:
        try:
            yield tmp_path
        except OSError as exc:
            line = os_error_line(exc, path, flag)
            if line is not None:
                raise line from exc
            raise
        as_if_created(tmp_path, 0o666)
        with blocked_signals():
            os.replace(tmp_path, path)
            forget_temp(tmp_path)
    finally:
        if tmp_path in _LIVE:
            discard_temp(tmp_path)


@contextmanager
def staged_folder(out: str | Path) -> Iterator[Path]:
    """A registered hidden folder beside ``out`` (same filesystem, so the commit is a rename),
    removed unless :func:`commit_folder` moved it into place: on an error, on SIGINT/SIGTERM (the
    interrupt handler's cleanup), or by a later run's sweep after a SIGKILL."""
    out = Path(out)
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = new_temp(out, directory=True, suffix=".partial")
    except OSError as exc:
        raise UserError(f"cannot write beside --out {str(out)[:200]!r} ({exc.strerror}): choose another --out") from None
    as_if_created(stage, 0o777)  # mkdtemp makes 0700; an output folder is a shared one
    try:
        yield stage
    finally:
        if stage in _LIVE:
            discard_temp(stage)


def commit_folder(stage: Path, out: Path) -> None:
    """Replace ``out`` (absent, or a folder the caller checked may be replaced) by ``stage``, with
    SIGINT/SIGTERM held back: at every moment ``out`` is the old folder or the new one."""
    out = Path(out)
    with blocked_signals():
        old = None
        if out.exists():
            old = new_temp(out, directory=True, suffix=".old")
            os.replace(out, old)  # onto an empty folder: allowed, atomic
        os.replace(stage, out)
        forget_temp(stage)
        if old is not None:
            discard_temp(old)


def weights_path_record(path: str | Path | None) -> str | None:
    """How an export records where its checkpoint was: relative to the working directory, in
    POSIX form, as the pipeline records a ``file.py:factory`` model, so neither the bytes nor
    the record depend on where the checkout lives (an absolute path would leak its layout)."""
    if path is None:
        return None
    try:
        return Path(os.path.relpath(Path(path).absolute())).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return Path(path).absolute().as_posix()
