"""Content-addressed step cache: a step's key is the SHA-256 of everything it reads.

Inputs of a key: the step name, the part of the model's config that the step reads, the
SHA-256 of the weights / user model source / data folders it reads, the SHA-256 of the
upstream artefact (the ONNX it calibrates, lints, builds or checks), and the versions of
segexport and of the libraries that do the work. Same key = same bytes out (exports are
byte-reproducible), so the cached files and figures are reused as they are.

Layout: ``CACHE/<step>/<key[:2]>/<key>/entry.json`` plus the step's files. An entry is
written to a temp folder and renamed, so a killed run never leaves half an entry. Entries
are data (JSON and artefacts), never code. ``CACHE/last-inputs/<step>/<slot hash>.json`` holds
the inputs each model's (or variant's) step last ran with, so a dry run can say which input
changed when a key misses (a content address alone cannot say what it used to be).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from segexport._version import __version__
from segexport.errors import UserError
from segexport.core import jsonio
from segexport.core.hashing import sha256_file

SCHEMA = 1

# which libraries decide each step's bytes or figures
LIBRARIES = {
    "export": ("torch", "onnx", "onnxscript", "onnxslim"),
    "calibrate": ("onnx", "onnxruntime", "onnxconverter-common"),
    "lint": ("onnx", "tensorrt", "tensorrt-rtx", "tensorrt_rtx"),
    "engine": ("tensorrt", "tensorrt-rtx", "tensorrt_rtx"),
    "parity": ("torch", "onnxruntime"),
    "bench": ("torch", "onnxruntime"),
    "deploy": ("onnx",),
}


@lru_cache(maxsize=None)
def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions(step: str) -> dict[str, str]:
    """segexport's version and the step's libraries' (read from package metadata: no imports)."""
    out = {"segexport": __version__, "python": platform.python_version()}
    for dist in LIBRARIES.get(step, ()):
        v = _version(dist)
        if v is not None:
            out[dist] = v
    return out


def machine() -> dict[str, object]:
    """What a latency figure depends on besides the code (a cached bench is per machine kind)."""
    return {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "system": platform.system()}


@lru_cache(maxsize=4096)
def _hash_file(path: str, inode: int, mtime_ns: int, size: int) -> str:
    """One file's SHA-256, computed once per (file, version) in a run: a pipeline asks for the same
    weights and calibration images once per variant and step."""
    return sha256_file(path)


MAX_DATA_FILES = 100_000  # a data folder of a config; "/" or a home folder is a mistake, not data


def _refuse(path: Path, exc: OSError):
    raise UserError(f"{path}: cannot read {exc.filename or ''} ({exc.strerror}): point the config at the data "
                    "folder itself") from exc


def _file_hash(p: Path, root: Path) -> str:
    try:
        st = p.stat()
        return _hash_file(str(p.resolve()), st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError as exc:
        _refuse(root, exc)


def hash_path(path: str | Path | None) -> str | None:
    """SHA-256 of a file, or of a folder's (relative name, content hash) list; None for None.

    A folder is keyed by every file in it, not by its own mtime: replacing an image inside a
    sub-folder leaves the folder's mtime as it was, and must still change the key. A folder of
    more than ``MAX_DATA_FILES`` files, or one that cannot be read, is one line."""
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        return None
    if p.is_file():
        return _file_hash(p, p)
    files: list[Path] = []
    for folder, _dirs, names in os.walk(p, onerror=lambda exc: _refuse(p, exc)):
        files += [Path(folder) / n for n in names if (Path(folder) / n).is_file()]
        if len(files) > MAX_DATA_FILES:
            raise UserError(f"{p} holds more than {MAX_DATA_FILES} files: point the config at the data folder "
                            "itself, not a parent of it")
    digest = hashlib.sha256()
    for f in sorted(files):
        digest.update(f"{f.relative_to(p).as_posix()}\0{_file_hash(f, p)}\n".encode())
    return digest.hexdigest()


def step_key(step: str, inputs: dict) -> str:
    blob = json.dumps({"schema": SCHEMA, "step": step, "inputs": inputs, "versions": versions(step)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def check_entry(where: Path, step: str, key: str) -> dict:
    """A cache entry's ``entry.json`` and files, validated like any file (schema, types, ranges,
    hashes, files inside the entry); raises ValueError with the first problem."""
    from segexport.core.files import regular_file_inside as inside
    from segexport.pipeline.records import check_step

    if not inside(where / "entry.json", where):
        raise ValueError("entry.json is not a regular file inside the entry")
    try:
        entry = jsonio.loads((where / "entry.json").read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ValueError(f"entry.json is not JSON: {' '.join(str(exc).split())[:80]}") from None
    if not isinstance(entry, dict):
        raise ValueError("entry.json is not an object")
    if entry.get("schema") != SCHEMA or entry.get("key") != key or entry.get("step") != step:
        raise ValueError(f"not a schema {SCHEMA} entry for this {step} key")
    files = entry.get("files")
    if not isinstance(files, dict) or not all(isinstance(n, str) and isinstance(h, str) and _SHA_RE.match(h)
                                              for n, h in files.items()):
        raise ValueError("files is not a name -> SHA-256 table")
    check_step(step, entry.get("result"), verdicts=("pass", "fail", "skip"))
    for name, sha in files.items():
        f = where / "files" / name
        if not name or Path(name).is_absolute() or ".." in Path(name).parts or not inside(f, where):
            raise ValueError(f"file {name[:60]!r} is not a regular file inside the entry")
        if sha256_file(f) != sha:
            raise ValueError(f"file {name[:60]!r} differs from its SHA-256")
    return entry


class StepCache:
    """Get and put step results; ``root=None`` is ``--no-cache`` (every lookup misses)."""

    def __init__(self, root: Path | None) -> None:
        self.root = Path(root) if root is not None else None
        self.notes: dict[str, str] = {}  # "step/key" -> why a present entry was not used

    def _dir(self, step: str, key: str) -> Path:
        assert self.root is not None
        return self.root / step / key[:2] / key

    def get(self, step: str, key: str) -> dict | None:
        """The cached entry, if present, well-formed and every file in it intact; anything else is
        a miss, its reason kept in :attr:`notes` (an entry is a file another job may have written)."""
        if self.root is None:
            return None
        where = self._dir(step, key)
        if not (where / "entry.json").exists() and not (where / "entry.json").is_symlink():
            return None
        try:
            entry = check_entry(where, step, key)
        except ValueError as exc:
            self.notes[f"{step}/{key[:12]}"] = f"cache entry {where} ignored ({exc})"
            return None
        entry["_dir"] = str(where / "files")
        return entry

    def restore(self, entry: dict, dest: Path) -> None:
        """Copy a hit's files into ``dest`` (the model's output folder)."""
        src = Path(entry["_dir"])
        for name in entry.get("files", {}):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, target)

    def put(self, step: str, key: str, result: dict, files: dict[str, Path]) -> None:
        """Store ``result`` (JSON data) and ``files`` (name -> path) under ``key``."""
        if self.root is None:
            return
        where = self._dir(step, key)
        if where.exists():
            return
        where.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", dir=where.parent))
        try:
            (tmp / "files").mkdir()
            shas = {}
            for name, path in files.items():
                target = tmp / "files" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                shas[name] = sha256_file(target)
            entry = {"schema": SCHEMA, "step": step, "key": key, "result": result, "files": shas}
            (tmp / "entry.json").write_text(json.dumps(entry, indent=1, sort_keys=True))
            os.replace(tmp, where)
        except OSError:
            pass  # a full or read-only cache costs a rerun next time, never this run
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _json_data(value):
    """``value`` as JSON reads it back (tuples as lists, paths as strings): what a record compares."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


class LastInputs:
    """The inputs a step of one slot (a model's export, a variant's other steps) last ran with.

    Written by every real run, read by dry runs only to *explain* a miss: the files are data
    another job may have written, so a damaged one is simply no record, and only the names of
    this run's own inputs (and short scalar values) are ever shown from it.
    """

    def __init__(self, root: Path | None) -> None:
        self.root = None if root is None else Path(root) / "last-inputs"

    def _file(self, step: str, slot: str) -> Path:
        assert self.root is not None
        return self.root / step / f"{hashlib.sha256(slot.encode()).hexdigest()[:32]}.json"

    def put(self, step: str, slot: str, key: str, inputs: dict, verdict: str) -> None:
        if self.root is None:
            return
        doc = {"schema": SCHEMA, "slot": slot, "key": key, "verdict": verdict, "inputs": _json_data(inputs),
               "versions": versions(step)}
        target = self._file(step, slot)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.stem[:12]}.", dir=target.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(doc, f, sort_keys=True)
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError:
            pass  # a full or read-only cache loses an explanation, never this run

    def get(self, step: str, slot: str) -> dict | None:
        if self.root is None:
            return None
        try:
            doc = jsonio.loads(self._file(step, slot).read_text())
        except (OSError, ValueError, RecursionError):
            return None
        ok = (isinstance(doc, dict) and doc.get("slot") == slot and isinstance(doc.get("key"), str)
              and isinstance(doc.get("inputs"), dict) and isinstance(doc.get("versions"), dict))
        return doc if ok else None


# what a changed input is called in a dry run's reason (others are config keys of the step)
INPUT_NAMES = {"weights_sha256": "weights", "weights_path": "weights path", "model_source_sha256": "model source", "upstream_sha256": "input ONNX",
               "engine_sha256": "engine", "calib_data_sha256": "calib_data files",
               "calib_labels_sha256": "calib_labels files", "images_sha256": "parity_images files",
               "labels_sha256": "parity_labels files", "machine": "machine"}


def _shown(value) -> str:
    if isinstance(value, str) and _SHA_RE.match(value):
        return value[:8]
    if value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= 24):
        return repr(value)
    return "..."


def _change(name: str, old, new) -> str:
    return f"{name} {_shown(old)} -> {_shown(new)}"


def changed_inputs(step: str, last: dict, inputs: dict) -> list[str]:
    """What differs between a step's last recorded run and now, named for people:
    ``config width 0.0625 -> 0.125``, ``weights 1a2b3c4d -> 5e6f7a8b``, ``versions torch``."""
    old, new = last["inputs"], _json_data(inputs)
    out: list[str] = []
    for k in sorted(new):  # this run's names only: the record is a file, its keys are not shown
        a, b = old.get(k), new[k]
        if a == b:
            continue
        if k == "config" and isinstance(a, dict) and isinstance(b, dict):  # the export's config section
            out += [_change(f"config {sub}", a.get(sub), b[sub]) for sub in sorted(b) if a.get(sub) != b[sub]]
        else:
            out.append(_change(INPUT_NAMES.get(k, f"config {k}"), a, b))
    now = versions(step)
    out += [_change(f"version of {k}", last["versions"].get(k), v) for k, v in sorted(now.items())
            if last["versions"].get(k) != v]
    return out
