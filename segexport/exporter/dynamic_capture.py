"""The ``torch.export`` step of a dynamic export, done here so no dimension goes static unsaid.

Why: ``torch.onnx.export(model, dynamic_shapes=...)`` answers a constraint violation by retrying
with torch.export's *suggested fixes*. When the fix is "height = 256" (a Python ``int()`` or
``math.ceil`` of a size, a reshape to a fixed patch grid: Hugging Face MobileViT and BEiT) the
retry succeeds with the dimension frozen, and the export comes out static behind the user's
back; when the fix is "height = 4*_height" (ERFNet's concat of a strided conv and a pool, equal
only at even sizes) the retry fails inside the exporter with ``KeyError: ((s53/2)//2)``.

How: capture with ``torch.export.export`` (non-strict, as torch.onnx does) and hand the
program to ``torch.onnx.export``. On a constraint violation, the suggested fixes are read with
torch's own parser: a dimension fixed to a number is refused in one line naming the module whose
code added the first equality guard on the input size (a logging handler on the symbolic-shape
logger walks the Python stack for the innermost module of the model at that moment) and the
source line; a dimension that must be a multiple is exported as that multiple and said in a note.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from segexport.errors import UserError

_SHAPES_LOGGER = "torch.fx.experimental.symbolic_shapes"


@dataclass
class Guard:
    expr: str
    module: str | None
    line: str | None  # "file.py:42" of the model's code that added it
    condition: Any = None  # the sympy boolean itself, to evaluate at every size of the range


@dataclass
class GuardLog:
    """Guards on symbolic sizes added while tracing, each with the module whose code added it."""

    model: Any
    guards: list[Guard] = field(default_factory=list)

    def first_equality(self) -> Guard | None:
        """The first guard equating a size expression to something: what froze or restricted a
        dimension (range guards like ``s0 >= 2`` restrict nothing the profile did not)."""
        return next((g for g in self.guards if g.expr.startswith(("Eq(", "Ne("))), None) or \
            next(iter(self.guards), None)


def _codes(cls) -> set:
    """The code objects of the functions a module class defines (its MRO up to nn.Module)."""
    import torch

    out = set()
    for klass in cls.__mro__:
        if klass is torch.nn.Module:
            break
        for attr in vars(klass).values():
            func = getattr(attr, "__func__", attr)
            code = getattr(func, "__code__", None)
            if code is not None:
                out.add(code)
    return out


class _Recorder(logging.Handler):
    """Each guard with the innermost module of the model running when it was added.

    The module comes from forward hooks (a stack of the model's modules now in their forward), not
    from the frames' ``f_locals``: reading a running frame's locals snapshots them on CPython 3.11,
    and a trace of Hugging Face BEiT then found a stale fake tensor ("We found a fake tensor in the
    exported program constant's list"). The line is the innermost frame running that module's code.
    """

    def __init__(self, log: GuardLog, name_of: Callable[[Any], str | None], root: str) -> None:
        super().__init__(logging.INFO)
        self.log, self.name_of, self.root = log, name_of, root
        self.stack: list[Any] = []
        self.codes: dict[type, set] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if "[guard added]" not in record.msg:
            return
        args = record.args if isinstance(record.args, tuple) else ()
        if args and "suppressed" in str(args[0]):
            return
        expr = str(args[1]) if len(args) > 1 else ""
        condition = module = line = None
        owner = self.stack[-1] if self.stack else None
        if owner is not None:
            module = self.name_of(owner) or self.root
            codes = self.codes.setdefault(type(owner), _codes(type(owner)))
        frame: Any = sys._getframe()
        while frame is not None:
            if condition is None and frame.f_code.co_name == "_log_guard":  # ShapeEnv._log_guard(prefix, g, ...)
                condition = frame.f_locals.get("g")
            if owner is not None and frame.f_code in codes:
                line = f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}"
                break
            frame = frame.f_back
        self.log.guards.append(Guard(expr, module, line, condition))


@contextlib.contextmanager
def recording_guards(model) -> Iterator[GuardLog]:
    import torch

    log = GuardLog(model)
    from segexport.exporter.scopes import name_of, user_names

    names = user_names(model)
    logger = logging.getLogger(_SHAPES_LOGGER)
    handler = _Recorder(log, lambda module: name_of(names, module), type(model).__name__)

    def entered(module, args):
        if name_of(names, module) is not None:
            handler.stack.append(module)

    def left(module, args, output):
        if handler.stack and handler.stack[-1] is module:
            handler.stack.pop()

    hooks = [torch.nn.modules.module.register_module_forward_pre_hook(entered),
             torch.nn.modules.module.register_module_forward_hook(left)]
    level, propagate, handlers = logger.level, logger.propagate, list(logger.handlers)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # recorded, not printed (torch's own handlers are set aside meanwhile)
    logger.handlers[:] = [handler]
    try:
        yield log
    finally:
        for hook in hooks:
            hook.remove()
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


_AXES = {0: "batch", 2: "height", 3: "width"}


def _is_violation(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch._dynamo.exc.UserError) and \
        exc.error_type == torch._dynamo.exc.UserErrorType.CONSTRAINT_VIOLATION


def _where(guard: Guard | None) -> str:
    if guard is None or guard.module is None:
        return "the model's forward"
    return f"module {guard.module!r}" + (f" ({guard.line})" if guard.line else "")


def _input_symbols(program, axes) -> dict[int, Any]:
    """Axis -> the sympy symbol torch.export gave it, or the int it froze it to."""
    user = program.graph_signature.user_inputs[0]
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == user)
    shape = node.meta["val"].shape
    out: dict[int, Any] = {}
    for axis in axes:
        d = shape[axis]
        out[axis] = int(d) if isinstance(d, int) else d.node.expr
    return out


def _values(lo: int, hi: int, limit: int) -> list[int]:
    """Every size of ``lo..hi``, or ``limit`` spread over it with each one's neighbour (parities)."""
    if hi - lo + 1 <= limit:
        return list(range(lo, hi + 1))
    step = (hi - lo) / (limit // 2 - 1)
    picks = {lo, hi} | {int(lo + i * step) for i in range(limit // 2)}
    return sorted({v for p in picks for v in (p, p + 1) if lo <= v <= hi})


def _judged(guard: Guard) -> bool:
    """Guards the exported graph depends on. ``Ne(size, 1)`` (and 0) are torch.export's own
    assumption that a dynamic size is not 0 or 1 (so it never specialises broadcasting); the
    graph it writes is the same at 1, so a profile starting at batch 1 is not refused for them."""
    import sympy

    c = guard.condition
    return c is not None and not (isinstance(c, sympy.Ne) and any(a in (0, 1) for a in c.args))


def _fixes_a_number(condition) -> bool:
    """``Eq(size expression, 34)``: the trace relied on a size being one number (``int(math.ceil(h /
    p) * p)``, a reshape to a fixed grid); the graph computes something else at any other size.
    Every other broken guard (``Ne``, "not 1" bounds torch.export assumes, a crop that clamps) may
    or may not change the graph, so verification runs the export where it breaks."""
    import sympy

    return isinstance(condition, sympy.Eq) and any(getattr(side, "is_number", False) for side in condition.args)


def _holds(condition, at: dict) -> bool:
    try:
        return bool(condition.subs(at))
    except (TypeError, ValueError, ZeroDivisionError):  # not decidable at this point: not a size restriction we can judge
        return True


def _violations(guards: list[Guard], symbols: dict[int, Any], ranges: dict[int, tuple[int, int]]):
    """``(guard, {axis: size})`` for each guard some size of the range breaks, at its first such size."""
    import itertools

    axis_of = {sym: axis for axis, sym in symbols.items()}
    seen: set[str] = set()
    found = []
    for guard in guards:
        if not _judged(guard) or guard.expr in seen:
            continue
        seen.add(guard.expr)
        free = [s for s in getattr(guard.condition, "free_symbols", ()) if s in axis_of]
        if not free or len(free) != len(guard.condition.free_symbols):
            continue
        grids = [_values(*ranges[axis_of[s]], 1024 if len(free) == 1 else 24) for s in free]
        for point in itertools.product(*grids):
            if not _holds(guard.condition, dict(zip(free, point))):
                found.append((guard, {axis_of[s]: v for s, v in zip(free, point)}))
                break
    return found


def _valid_sizes(guards: list[Guard], symbol, lo: int, hi: int) -> list[int]:
    """The sizes of one axis that every guard on that axis alone allows."""
    own = [g for g in guards if _judged(g) and getattr(g.condition, "free_symbols", None) == {symbol}]
    return [v for v in _values(lo, hi, 1024) if all(_holds(g.condition, {symbol: v}) for g in own)]


def _pattern(axis: str, sizes: list[int]) -> str:
    import math

    if len(sizes) > 1:
        step = math.gcd(*[b - a for a, b in zip(sizes, sizes[1:])])
        if sizes == list(range(sizes[0], sizes[-1] + 1, step)):
            rest = sizes[0] % step
            return f"{axis} a multiple of {step}" if rest == 0 else f"{axis} = {step}k + {rest}"
    return f"{axis} in {sizes[:6]}{'...' if len(sizes) > 6 else ''}"


def _readable(fix: str) -> str:
    """``height = 4*_height`` -> ``height a multiple of 4``; any other suggestion as torch wrote it."""
    found = re.match(r"\s*(\w+)\s*=\s*(\d+)\*_\w+\s*$", fix)
    return f"{found.group(1)} a multiple of {found.group(2)}" if found else fix.strip()


@dataclass
class Captured:
    program: Any  # the ExportedProgram, or None: let torch.onnx try its own strategies
    notes: list[str] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    # when torch's solver failed inside itself: the guard that first equated a size (with its module),
    # which the caller names if torch.onnx then fails too (its traceback holds no frame of the model)
    suspect: Guard | None = None


def capture(model, example, ranges: dict[int, tuple[int, int]]) -> Captured:
    """The ExportedProgram (with notes and probes) of ``model`` with the axes of ``ranges`` (axis ->
    (min, max)) dynamic; raise UserError when the export would be wrong at a size PyTorch runs at. The
    program is None when the failure is not about sizes (or torch's solver itself failed): the caller
    then lets torch.onnx try its own strategies, and checks the graph's input dims afterwards.

    Captured with ``Dim.DYNAMIC``, so torch.export keeps what it cannot prove as guards instead
    of failing (it cannot prove many true floor-division facts, e.g. that a transposed conv's
    ``output_size`` crop always fits, and would "fix" the range to ``4*k - 2``). Each recorded
    guard is then evaluated at every size of the range. An axis left with one valid size, or a
    guard fixing a size expression to a number that breaks where PyTorch runs, is refused naming
    the module; where a guard breaks and PyTorch fails there too (ERFNet's concat at odd sizes) a
    note says which sizes the model runs at; any other broken guard's size is returned as a
    :class:`Probe` for verification to run the export at (most are harmless: a Slice that is a
    no-op at the traced size, torch's assumption that a size is not 1).
    """
    import torch
    from torch.export import Dim

    strict = {axis: Dim(_AXES.get(axis, f"axis{axis}"), min=lo, max=hi) for axis, (lo, hi) in ranges.items()}
    with recording_guards(model) as log:
        try:  # torch.export proves every guard on one size over the range (not those on several: else)
            program = torch.export.export(model, (example,), dynamic_shapes=(strict,), strict=False)
        except Exception as exc:
            # torch's solver failing while it words its own fixes (SwinUNETR: "Cannot create Dim with
            # inconsistent min=4, max=4") also goes to torch.onnx's strategies: judging those guards
            # here refused a dynamic SegNet that torch.onnx exports right (its odd-size ceil guard)
            if not _is_violation(exc):  # not about sizes (or torch's solver failed): torch.onnx's own strategies
                hull = (min(lo for lo, _ in ranges.values()), max(hi for _, hi in ranges.values()))
                return Captured(None, suspect=_narrowing_guard(log.guards, lambda _symbol: hull)
                                or _first_size_equality(log))
            violation, culprit = exc, log.first_equality()
        else:
            _refuse_joint_numbers(model, example, program, log.guards, ranges)
            return Captured(program)
    dims = {axis: Dim.DYNAMIC(min=lo, max=hi) for axis, (lo, hi) in ranges.items()}
    with recording_guards(model) as log:
        try:
            program = torch.export.export(model, (example,), dynamic_shapes=(dims,), strict=False)
        except Exception:  # torch cannot keep its guards either (an internal error of its solver)
            return _refined(model, example, strict, violation, culprit)
    symbols = _input_symbols(program, ranges)
    frozen = {axis: v for axis, v in symbols.items() if isinstance(v, int)}
    if frozen:
        culprit = log.first_equality()
        raise UserError(f"--dynamic: {_where(culprit)} fixes " + ", ".join(f"{_AXES.get(a, a)} to {v}" for a, v in
                                                                           frozen.items()) + f": {_FIX}")
    broken = _violations(log.guards, symbols, ranges)
    if not broken:
        return Captured(program)
    patterns = []
    for axis, sym in symbols.items():
        sizes = _valid_sizes(log.guards, sym, *ranges[axis])
        if len(sizes) <= 1:
            guard = _narrowing_guard(log.guards, lambda symbol: ranges[axis] if symbol == sym else None) or \
                next((g for g, at in broken if axis in at), broken[0][0])
            raise UserError(f"--dynamic: {_where(guard)} fixes {_AXES.get(axis, axis)} to "
                            f"{sizes[0] if sizes else example.shape[axis]} (guard {guard.expr[:100]}): {_FIX}")
        if len(sizes) < ranges[axis][1] - ranges[axis][0] + 1:
            patterns.append(_pattern(_AXES.get(axis, str(axis)), sizes))
    probes: list[Probe] = []
    failing_in_torch: list[Guard] = []
    for guard, at in broken[:4]:  # does PyTorch itself run where a guard breaks?
        shape = [lo for lo, _ in (ranges.get(a, (example.shape[a], 0)) for a in range(example.dim()))]
        for axis, value in at.items():
            shape[axis] = value
        if not torch_runs_at(model, shape, example.dtype):
            failing_in_torch.append(guard)  # PyTorch fails there too: not a size the model supports
            continue
        where = "x".join(map(str, shape[2:] or shape))
        if _fixes_a_number(guard.condition):
            raise UserError(f"--dynamic: {_where(guard)} holds only at some sizes (guard {guard.expr[:100]}), and "
                            f"PyTorch runs at {where} where the export would be wrong: {_FIX}")
        probes.append(Probe(tuple(shape), f"{_where(guard)}'s guard {guard.expr[:80]} breaks at {where}"))
    notes = []
    if failing_in_torch:
        notes.append(f"{_where(failing_in_torch[0])} runs only at some sizes ({', '.join(patterns) or 'see its guards'}; "
                     "PyTorch fails at the others too): the export is right at every size the model runs at; give "
                     "--hw-range corners among them")
    return Captured(program, notes, probes)


def torch_runs_at(model, shape, dtype=None) -> bool:
    """Whether the model's own forward runs on a random batch of ``shape``."""
    import torch

    try:
        with torch.no_grad():
            model(torch.randn(*shape, dtype=dtype))
    except Exception:
        return False
    return True


def _refuse_joint_numbers(model, example, program, guards: list[Guard], ranges) -> None:
    """Refuse a guard that fixes an expression of *several* sizes to a number where PyTorch runs.

    Why: torch.export's solver turns a guard on one size into a constraint violation, but lets one
    on several pass unsaid. ``int(sqrt((h // 8) * (w // 8)))`` (a ViT folding its tokens back to a
    square grid) guards ``Eq(TruncToInt(...), 8)``; the named-``Dim`` export succeeds and its
    reshapes hold the traced grid, so the graph fails or is wrong at every other size.
    """
    symbols = _input_symbols(program, ranges)
    inputs = {sym for sym in symbols.values() if not isinstance(sym, int)}
    joint = [g for g in guards if g.condition is not None and _fixes_a_number(g.condition)
             and len(inputs & set(getattr(g.condition, "free_symbols", ()))) >= 2]
    for guard, at in _violations(joint, symbols, ranges)[:4]:
        shape = list(example.shape)
        for axis, value in at.items():
            shape[axis] = value
        if not torch_runs_at(model, shape, example.dtype):
            continue  # PyTorch fails there too: not a size the model runs at
        where = "x".join(map(str, shape[2:] or shape))
        raise UserError(f"--dynamic: {_where(guard)} holds only at some sizes (guard {guard.expr[:100]}), and PyTorch "
                        f"runs at {where} where the export would be wrong: {_FIX}")


def _narrowing_guard(guards: list[Guard], range_of) -> Guard | None:
    """The guard that leaves a size one value (or none) of its range, taking the guards in the order
    the trace added them: the one that froze the axis, not the first one to restrict it.

    Why not the first restricting guard: MONAI's SwinUNETR first checks that H is a multiple of 32
    (a restriction the range can keep: 32, 64, 96, 128), then a BasicLayer computes
    ``int(np.ceil(h / window))`` and the trace fixes that ceil to one number; only the second
    makes the export static, and its module is the one to change. ``range_of(symbol)`` gives the
    (min, max) of a size symbol, or None for a symbol not judged.
    """
    left: dict[Any, list[int]] = {}
    for guard in guards:
        if guard.module is None or not _judged(guard):
            continue
        free = getattr(guard.condition, "free_symbols", set())
        if len(free) != 1:
            continue
        (symbol,) = free
        bounds = range_of(symbol)
        if bounds is None:
            continue
        sizes = left.get(symbol) or _values(*bounds, 1024)
        kept = [v for v in sizes if _holds(guard.condition, {symbol: v})]
        if len(kept) <= 1 < len(sizes):
            return guard
        left[symbol] = kept or sizes
    return None


def _first_size_equality(log: GuardLog) -> Guard | None:
    """The first guard equating a size expression to a number, from a module of the model: where a
    size became one value, what torch's solver then cannot reconcile with the range."""
    return next((g for g in log.guards if g.module and g.expr.startswith("Eq(") and g.condition is not None
                 and _fixes_a_number(g.condition)), None)


@dataclass(frozen=True)
class Probe:
    """A size of the profile where a guard of the trace breaks but PyTorch runs: verify there too."""

    shape: tuple[int, ...]
    reason: str


def _refined(model, example, dims: dict, violation: BaseException, culprit: Guard | None) -> Captured:
    """torch.export's own suggested fixes (what torch.onnx retries with): a dimension that must be
    a multiple is exported as that multiple, said in a note; one fixed to a number is refused."""
    import torch
    from torch.export.dynamic_shapes import refine_dynamic_shapes_from_suggested_fixes

    message = getattr(violation, "msg", str(violation))
    try:
        refined = refine_dynamic_shapes_from_suggested_fixes(message, (dims,))[0]
    except Exception:  # torch could not read its own suggestion
        refined = None
    frozen = {axis: value for axis, value in (refined or {}).items() if isinstance(value, int)}
    if refined is None or frozen:
        what = ", ".join(f"{_AXES.get(a, a)} to {v}" for a, v in frozen.items()) or "the input size"
        guard = f" (guard {culprit.expr[:100]})" if culprit is not None else ""
        raise UserError(f"--dynamic: {_where(culprit)} fixes {what}{guard}, so the export could only be static: "
                        f"{_FIX}") from violation
    fixes = [_readable(ln) for ln in message.split("Suggested fixes:")[-1].splitlines()
             if re.match(r"\s*(height|width|batch)\s*=", ln)]
    try:
        program = torch.export.export(model, (example,), dynamic_shapes=(refined,), strict=False)
    except Exception as exc:
        raise UserError(f"--dynamic: {_where(culprit)} keeps torch.export from making the size dynamic"
                        + (f" (guard {culprit.expr[:100]})" if culprit else "") + f": {_FIX}") from exc
    return Captured(program, [f"{_where(culprit)} holds only at some sizes ({', '.join(fixes)}, torch.export's own "
                              "finding): the export is dynamic over those; give --hw-range corners among them"])


_FIX = ("keep sizes as shapes there (no Python `if` on x.shape, no int() or math.ceil() of a size, no reshape "
        "to a fixed grid), or export without --dynamic hw at the size it needs")
