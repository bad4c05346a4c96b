"""What a pipeline run computes once per model instead of once per variant.

The fp32, fp16 and int8 variants of one model are all judged against the same PyTorch model on
the same inputs: parity's reference is that model's output on them, and its float32 noise floor
(the reference against itself on jittered inputs, six more forward passes) depends on nothing
else either. Without a memo each variant rebuilt the model, re-ran the reference and, for a
chaotic untrained network, re-measured the floor: on the zoo at width 1/4 that was a third of
the parity and bench steps' time. A :class:`RunMemo` lives for one ``pipeline run``; a
``segexport parity`` or ``bench`` call gets a fresh one, so nothing is shared between commands.

Keys hold everything the value depends on (the model's build arguments, the weights file's
identity, the inputs' bytes), so a memo can never hand one variant another's figures.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

T = TypeVar("T")


def file_identity(path: str | Path | None) -> tuple | None:
    if path is None:
        return None
    p = Path(path).resolve()
    st = p.stat()
    return (str(p), st.st_ino, st.st_mtime_ns, st.st_size)


def array_digest(x: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (inputs of a few MB: milliseconds)."""
    h = hashlib.sha256(f"{x.dtype}{x.shape}".encode())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


class RunMemo:
    """Values computed once per run: built PyTorch models and reference outputs/floors."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self.hits = 0

    def get(self, key: tuple, compute: Callable[[], T]) -> T:
        text = json.dumps(key, sort_keys=True, default=str)
        if text in self._values:
            self.hits += 1
            return self._values[text]
        value = compute()
        self._values[text] = value
        return value

    def model(self, ref: str, *, weights: str | Path | None = None, **build: Any):
        """:func:`segexport.models.loading.load_model` once per (ref, build arguments, weights file).

        The model is shared read-only: every user runs it in eval mode under no_grad, and the
        channels-last bench variant converts it back after its trial."""
        from segexport.models.loading import load_model

        key = ("model", ref, build, file_identity(weights))
        return self.get(key, lambda: load_model(ref, weights=weights, **build))
