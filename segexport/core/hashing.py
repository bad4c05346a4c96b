"""SHA-256 of files, without torch: provenance, caches and sidecars are hashed on boxes
(a Jetson, a Triton build host) where PyTorch is not installed."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
