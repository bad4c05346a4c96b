"""The one way segexport writes JSON: strict, so every file it writes parses everywhere.

Python's ``json.dumps`` writes ``NaN`` and ``Infinity`` by default; they are not JSON, and jq,
JavaScript and most CI parsers reject the whole file. A non-finite number becomes ``null`` (a
metric that could not be computed), and ``allow_nan=False`` makes any that slips through an
error instead of a corrupt file.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(value: Any) -> Any:
    """NaN/inf become None, numpy scalars plain Python numbers, tuples lists, keys strings; recursively."""
    if isinstance(value, dict):
        return {str(k): finite_or_none(v) for k, v in value.items()}  # JSON keys are strings
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    try:  # numpy scalars without importing numpy here
        import numpy as np
    except ImportError:  # pragma: no cover
        return value
    if isinstance(value, np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(finite_or_none(value), allow_nan=False, **kwargs)


def no_constant(name: str):
    """``parse_constant`` for :func:`json.loads`: NaN/Infinity in a file are an error, not a float."""
    raise ValueError(f"{name} is not a JSON number")


def loads(text: str) -> Any:
    """JSON read from a file, strictly: NaN/Infinity refused (ValueError), as segexport never writes them."""
    return json.loads(text, parse_constant=no_constant)
