"""Upper bounds on sizes a user (or a file) can ask for.

Why bounds at all: ``--num-classes 100000000`` builds a classifier with billions of weights for
minutes before the kernel kills it, ``--input-size 100000`` or ``--count 10**9`` allocate more
memory than any machine has. The limits are far above any real segmentation workload (Cityscapes
is 19 classes at 1024x2048; ADE20K-full has 3688 classes) and are checked before work starts.
"""

from __future__ import annotations

import math

from segexport.errors import UserError

MAX_NUM_CLASSES = 65536
MAX_SIDE = 16384  # pixels per side of an input
MAX_BATCH = 4096
MAX_COUNT = 100_000  # images/tensors a check or a synthetic set may hold
MAX_INPUT_ELEMENTS = 1 << 30  # N*3*H*W float32 of one input array held in memory (4 GiB)


def check_num_classes(n: int, flag: str = "--num-classes") -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_NUM_CLASSES:
        raise UserError(f"{flag} {n!r} is out of range: give 1..{MAX_NUM_CLASSES}")


def check_side(h: int, w: int, flag: str = "--input-size") -> None:
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SIDE:
            raise UserError(f"{flag} {h}x{w} is out of range: each side must be 1..{MAX_SIDE} pixels")


def check_count(n: int, flag: str = "--count") -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_COUNT:
        raise UserError(f"{flag} {n!r} is out of range: give 1..{MAX_COUNT}")


def check_elements(shape: tuple[int, ...], what: str) -> None:
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise UserError(f"{what} of shape {list(shape)} would not fit in memory: use a smaller --count or size")


def finite_number(value, key: str, *, positive: bool = False) -> float:
    """A JSON number read from a file: not a bool, a string, NaN or infinity."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
            positive and value <= 0):
        raise ValueError(f"{key} = {str(value)[:40]!r} is not a finite{' positive' if positive else ''} number")
    return float(value)


MAX_SEED = 2**63 - 1
MAX_ITERATIONS = 10_000_000


def check_seed(seed: int, flag: str = "--seed") -> None:
    """numpy's generators take 0..2**63-1 (a negative seed is a ValueError deep inside)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"{flag} must be an integer in 0..{MAX_SEED}, got {seed}")
