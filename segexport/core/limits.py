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


def check_elements(shape: tuple[int, ...], what: str, fix: str = "use a smaller --count or size") -> None:
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise UserError(f"{what} of shape {list(shape)} would not fit in memory: {fix}")


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


MAX_NAME_CHARS = 256
# Characters with a meaning in the files names are written into: nvinfer's key files (`;` separates
# list items, `#` starts a comment, `=` splits key and value) and Triton's pbtxt (`"`, `\`).
_CONFIG_SYNTAX = set(';#="\\')


def check_label(text, key: str) -> str:
    """A class name: one printable line. Names end up one a line in labels.txt and inside config
    comments; a newline would shift every later label, or start a new config key (a hostile ONNX's
    ``custom-lib-path=/x.so`` would make DeepStream load code). Raises ValueError."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_NAME_CHARS or not text.isprintable():
        raise ValueError(f"{key} {str(text)[:40]!r} is not one printable line of 1..{MAX_NAME_CHARS} characters")
    return text


def check_tensor_name(text, key: str) -> str:
    """A graph input/output name written into deployment configs: one printable line without the
    characters those formats give a meaning (``; # = " \\``). Raises ValueError."""
    check_label(text, key)
    bad = sorted(set(text) & _CONFIG_SYNTAX)
    if bad or text != text.strip():
        raise ValueError(f"{key} {text[:40]!r} holds characters deployment configs give a meaning "
                         f"({' '.join(bad) or 'leading/trailing space'})")
    return text
