"""Keyword arguments of the public API checked against their annotations, once, at the boundary.

Why: the Python API (README, docs/api.md) promises a :class:`~segexport.errors.UserError` for every bad argument, but a
Python caller can pass anything (``input_size="64x64"``, the CLI's own spelling, failed with "too
many values to unpack"; ``num_classes=2.5`` reached torch; ``config=None`` a ``TypeError``). The
CLI calls the same functions, so both share these checks. The checks are read from each
function's own annotations (strings, under ``from __future__ import annotations``), so a new
parameter is checked without a second list; an annotation not known here is left to the step.
The CLI spellings of sizes are accepted and converted: ``"64x64"``, ``"32x32:96x96"``, ``"1:8"``.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Callable

from segexport.errors import PARAMS, UserError

_SIZE = re.compile(r"\s*(\d{1,9})\s*(?:[xX]\s*(\d{1,9}))?\s*")


def _flag(name: str) -> str:
    """The CLI flag of a keyword argument (errors are worded with flags; ``str()`` names the argument)."""
    return next((f for f, p in PARAMS.items() if p.split("=")[0] == name and "=" not in p),
                "--" + name.replace("_", "-"))


def _bad(name: str, value: Any, want: str) -> UserError:
    shown = repr(value)
    return UserError(f"{_flag(name)} {shown[:60]} is not {want}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _size(name: str, v: Any) -> tuple[int, int]:
    if isinstance(v, str):
        m = _SIZE.fullmatch(v)
        if not m:
            raise _bad(name, v, "a size: HxW, e.g. (64, 64) or \"64x64\"")
        return int(m.group(1)), int(m.group(2) or m.group(1))
    if isinstance(v, Iterable) and not isinstance(v, (bytes, Mapping)):
        items = tuple(v)
        if len(items) == 2 and all(_is_int(i) for i in items):
            return items  # type: ignore[return-value]
    raise _bad(name, v, "a size: (height, width) integers, or \"HxW\"")


def _hw_range(name: str, v: Any):
    if isinstance(v, str):
        lo, sep, hi = v.partition(":")
        if not sep:
            raise _bad(name, v, "a range: \"32x32:96x96\" or ((32, 32), (96, 96))")
        return _size(name, lo), _size(name, hi)
    if isinstance(v, Iterable) and not isinstance(v, (bytes, Mapping)):
        items = tuple(v)
        if len(items) == 2:
            return _size(name, items[0]), _size(name, items[1])
    raise _bad(name, v, "a range: \"32x32:96x96\" or ((32, 32), (96, 96))")


def _int_pair(name: str, v: Any) -> tuple[int, int]:
    if isinstance(v, str):
        m = re.fullmatch(r"\s*(\d{1,9})\s*:\s*(\d{1,9})\s*", v)
        if m:
            return int(m.group(1)), int(m.group(2))
    elif isinstance(v, Iterable) and not isinstance(v, (bytes, Mapping)):
        items = tuple(v)
        if len(items) == 2 and all(_is_int(i) for i in items):
            return items  # type: ignore[return-value]
    raise _bad(name, v, "a range: (min, max) integers, or \"1:8\"")


def _names(name: str, v: Any, item: Callable[[Any], bool], what: str):
    """A string (the CLI's comma list, kept as given) or an iterable of items, made a tuple."""
    if isinstance(v, str):
        return v
    if isinstance(v, Iterable) and not isinstance(v, (bytes, Mapping)):
        items = tuple(v)
        if all(item(i) for i in items):
            return items
    raise _bad(name, v, what)


def _pathlike(v: Any) -> bool:
    return isinstance(v, (str, os.PathLike)) and (not isinstance(v, str) or "\0" not in v)


def _check(name: str, ann: str, v: Any) -> Any:
    """``v`` checked (and, for the CLI's spellings, converted) against the annotation ``ann``."""
    optional = ann.endswith(" | None")
    if v is None:
        if optional:
            return None
        raise _bad(name, v, "given: it takes no None")
    base = ann.removesuffix(" | None")
    simple: dict[str, tuple[Callable[[Any], bool], str]] = {
        "str": (lambda x: isinstance(x, str), "a string"),
        "int": (_is_int, "an integer"),
        # a type check only: NaN, infinity and ranges are the step's to refuse, in its own words
        "float": (lambda x: isinstance(x, (int, float)) and not isinstance(x, bool), "a number"),
        "bool": (lambda x: isinstance(x, bool), "True or False"),
        "str | Path": (_pathlike, "a path"),
        "str | float": (lambda x: isinstance(x, (str, int, float)) and not isinstance(x, bool),
                        "a number or a string like \"10%\""),
        "Progress": (callable, "a callable"),
    }
    if base in simple:
        ok, want = simple[base]
        if not ok(v):
            raise _bad(name, v, want)
        return v
    if base == "tuple[int, int]":
        return _size(name, v) if name == "input_size" else _int_pair(name, v)
    if base == "tuple[tuple[int, int], tuple[int, int]]":
        return _hw_range(name, v)
    if base.startswith("Mapping["):
        if not isinstance(v, Mapping) or not all(isinstance(k, str) for k in v):
            raise _bad(name, v, "a mapping of names to values")
        return v
    if base in ("str | Iterable[str]", "str | Sequence[str]"):
        return _names(name, v, lambda x: isinstance(x, str), "a string or a list of strings")
    if base == "int | Iterable[int]":
        if _is_int(v):
            return (v,)
        if isinstance(v, str):
            raise _bad(name, v, "an integer or a list of integers")
        return _names(name, v, _is_int, "an integer or a list of integers")
    return v


def checked(fn: Callable) -> Callable:
    """Check every keyword argument of ``fn`` against its annotation before ``fn`` runs."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise UserError(f"{fn.__name__}(): {exc}: see help(segexport.{fn.__name__})") from None
        for name, value in list(bound.arguments.items()):
            ann = sig.parameters[name].annotation
            if isinstance(ann, str):
                bound.arguments[name] = _check(name, ann, value)
        return fn(*bound.args, **bound.kwargs)

    return wrapper
