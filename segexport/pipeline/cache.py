"""Content-addressed step cache: a step's key is the SHA-256 of everything it reads.

Inputs of a key: the step name, the part of the model's config that the step reads, the
SHA-256 of the weights / user model source / data folders it reads, the SHA-256 of the
upstream artefact (the ONNX it calibrates, lints, builds or checks), and the versions of
segexport and of the libraries that do the work. Same key = same bytes out (exports are
byte-reproducible), so the cached files and figures are reused as they are.

Layout: ``CACHE/<step>/<key[:2]>/<key>/entry.json`` plus the step's files. An entry is
written to a temp folder and renamed, so a killed run never leaves half an entry. Entries
are data (JSON and artefacts), never code.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from segexport._version import __version__
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


def _file_hash(p: Path) -> str:
    st = p.stat()
    return _hash_file(str(p.resolve()), st.st_ino, st.st_mtime_ns, st.st_size)


def hash_path(path: str | Path | None) -> str | None:
    """SHA-256 of a file, or of a folder's (relative name, content hash) list; None for None.

    A folder is keyed by every file in it, not by its own mtime: replacing an image inside a
    sub-folder leaves the folder's mtime as it was, and must still change the key."""
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        return None
    if p.is_file():
        return _file_hash(p)
    digest = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        digest.update(f"{f.relative_to(p).as_posix()}\0{_file_hash(f)}\n".encode())
    return digest.hexdigest()


def step_key(step: str, inputs: dict) -> str:
    blob = json.dumps({"schema": SCHEMA, "step": step, "inputs": inputs, "versions": versions(step)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class StepCache:
    """Get and put step results; ``root=None`` is ``--no-cache`` (every lookup misses)."""

    def __init__(self, root: Path | None) -> None:
        self.root = Path(root) if root is not None else None

    def _dir(self, step: str, key: str) -> Path:
        assert self.root is not None
        return self.root / step / key[:2] / key

    def get(self, step: str, key: str) -> dict | None:
        """The cached entry, if present and every file in it is intact (a damaged one is a miss)."""
        if self.root is None:
            return None
        where = self._dir(step, key)
        try:
            entry = json.loads((where / "entry.json").read_text())
        except (OSError, ValueError):
            return None
        if entry.get("schema") != SCHEMA or entry.get("key") != key:
            return None
        for name, sha in entry.get("files", {}).items():
            f = where / "files" / name
            if Path(name).is_absolute() or ".." in Path(name).parts or not f.is_file() or sha256_file(f) != sha:
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
