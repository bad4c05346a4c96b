"""``segexport onnx``: PyTorch -> TensorRT-ready ONNX, verified before anyone touches a GPU.

The pipeline is a straight line of small steps, each a function of the previous result
(the loader idea of Polygraphy, without its lazy-callable machinery since every step here
runs exactly once):

    load model -> check input sizes -> refuse unsafe interpolation -> swap MaxPool-indices/
    MaxUnpool for the masked rewrite -> (optional ArgMax head) -> torch.onnx.export (dynamo)
    -> checker + shape inference -> onnxslim -> metadata -> lint -> verify in ONNX Runtime
    -> rename into place

Everything is written to a temp file beside ``--out`` and renamed only after lint and
verification pass, so a failed export never leaves an ``.onnx`` a later CI step could use.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from segexport._version import __version__
from segexport.data.contract import DynamicRange, ExportRecord, PreprocessContract
from segexport.errors import CheckFailed, UserError

DEFAULT_OPSET = 18  # the lowest opset the dynamo exporter emits natively; TensorRT 10.x and 11 parse 9..22
SUPPORTED_OPSETS = range(18, 23)
INPUT_NAME = "input"
LOGITS_NAME = "logits"
LABELS_NAME = "labels"

Progress = Callable[[str], None]


@dataclass
class ExportOptions:
    """What to export and how. ``dynamic`` holds ``"batch"`` and/or ``"hw"``.

    ``hw_range`` is ((min_h, min_w), (max_h, max_w)) and ``batch_range`` (min, max); when a
    dimension is dynamic and no range is given, a sensible one around the export size is
    chosen (half to double the size, batch 1 to max(8, batch)). The export size (``input_size``
    and ``batch``) is the *opt* point of the TensorRT optimisation profile.
    """

    model: str
    out: Path
    weights: Path | None = None
    num_classes: int | None = None  # None: 21 for the zoo, a user factory's own default / output
    width: float = 1.0
    output_key: str | None = None  # --output: the entry of a dict/tuple/object output to export
    upsample_logits: bool = False  # --upsample-logits: resize low-resolution logits to the input
    model_args: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int] | None = None
    batch: int = 1
    dynamic: tuple[str, ...] = ()
    hw_range: tuple[tuple[int, int], tuple[int, int]] | None = None
    batch_range: tuple[int, int] | None = None
    opset: int = DEFAULT_OPSET
    unpool: str = "mask"
    argmax: bool = False
    slim: bool = True
    verify: bool = True
    lint: bool = True
    seed: int = 0
    target: str | None = None  # segexport.core.targets name: its opset and support matrix


def target_opset(options: ExportOptions) -> int:
    """The opset the ONNX is written at: ``opset``, lowered to the target's limit when the
    default was kept (an explicit --opset above the limit is refused in _validate_options)."""
    if options.target is None:
        return options.opset
    from segexport.core.targets import get_target

    return min(options.opset, get_target(options.target).opset_max)


@dataclass
class ExportResult:
    path: Path
    record: ExportRecord
    seconds: dict[str, float]
    verify: list[Any] | None = None  # one VerifyRow per checked shape
    lint: Any | None = None
    onnx_ops: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what segexport decided for the user, one line each


@dataclass
class VerifyRow:
    shape: tuple[int, ...]
    metrics: Any  # segexport.core.metrics.ParityMetrics
    checks: list[Any]  # segexport.core.metrics.CheckResult
    noise_floor: Any | None = None  # PyTorch vs itself under float32-size input jitter, when measured
    held_to_floor: bool = False  # PyTorch failed the contract against itself: checks held to its floor
    input: str = "random"  # which probe input (segexport.core.comparison.probe_inputs): random, flat, constant
    # why this row proves nothing (PyTorch's output is 0 everywhere, or the same whatever the input), else None
    checks_nothing: str | None = None

    @property
    def failed(self) -> bool:
        return not all(c.passed for c in self.checks)

    @property
    def passed(self) -> bool:
        """Checked and right: a row that compares nothing it could get wrong has not passed."""
        return not self.failed and self.checks_nothing is None


def unchecked_shapes(rows: list[VerifyRow]) -> list[tuple[int, ...]]:
    """Shapes at which every row checks nothing: the export is unverified there."""
    shapes = list(dict.fromkeys(r.shape for r in rows))
    return [s for s in shapes if all(r.checks_nothing for r in rows if r.shape == s)]


def _mark_rows_that_check_nothing(rows: list[VerifyRow], refs: list[Any]) -> None:
    """Flag rows whose comparison could not have failed a wrong export.

    A random-init network whose activations vanish (normalization weights near 0 through a deep
    stack, as Hugging Face initialises MobileViT) outputs exactly 0, and a network that ignores
    its input (dead ReLUs, zero weights) outputs the same logits for noise and for flat regions:
    an ONNX graph computing 0 or that constant everywhere would "pass" such a row. Label-map
    exports (``--argmax``) are not judged this way: a trained network may well give one label to
    every probe.
    """
    import numpy as np

    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, (row, ref) in enumerate(zip(rows, refs)):
        if ref.ndim != 4:
            continue
        by_shape.setdefault(row.shape, []).append(i)
        if not np.any(ref):
            row.checks_nothing = "PyTorch's output is 0 everywhere"
    for idx in by_shape.values():
        if len(idx) > 1 and all(np.array_equal(refs[idx[0]], refs[i]) for i in idx[1:]):
            for i in idx:
                rows[i].checks_nothing = rows[i].checks_nothing or "PyTorch's output is the same for every probe input"


def export_onnx(options: ExportOptions, progress: Progress | None = None) -> ExportResult:
    """Run the whole pipeline; raise UserError for bad input, CheckFailed for a failed check."""
    say = progress or (lambda _msg: None)
    _validate_options(options)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = round(now - clock, 3)
        clock = now

    say("loading model")
    from segexport.core.files import atomic_output
    from segexport.models.loading import check_input_size, load_model, spec_of

    loaded = load_model(options.model, num_classes=options.num_classes, width=options.width,
                        model_args=options.model_args, weights=options.weights)
    spec = spec_of(loaded)
    size = options.input_size or spec.default_input_size
    check_input_size(spec, size)
    dynamic = _dynamic_ranges(options, size, spec.min_size)
    lap("load")

    import torch

    torch.manual_seed(options.seed)
    example = torch.randn(options.batch, 3, *size)
    # torch.export specialises any dimension that is 0 or 1 in the example (even an
    # intermediate one, e.g. FC-DenseNet's bottleneck at 1x1), silently freezing it in the
    # graph. Tracing uses fake tensors, so a large example costs nothing: trace dynamic
    # exports at the profile's maximum shape, where intermediate sizes are furthest from 1.
    trace_shape = (
        dynamic["batch"].max if "batch" in dynamic else options.batch, 3,
        dynamic["height"].max if "height" in dynamic else size[0],
        dynamic["width"].max if "width" in dynamic else size[1],
    )
    trace_example = torch.randn(*trace_shape)

    from segexport.exporter.resize import check_interpolation
    from segexport.exporter.unpool import prepare_for_export

    from segexport.models.contract import OutputAdapter, check_segmentation_output, choose_output, forward_error
    from segexport.models.loading import settle_num_classes

    try:
        output, folds = check_interpolation(loaded.model, example)
    except UserError:
        raise
    except Exception as exc:  # the model's own forward: a user model fed the wrong thing
        raise forward_error(loaded.name, example, exc) from exc
    notes: list[str] = list(loaded.notes)
    if folds:
        modules = sorted({f.module for f in folds})
        notes.append(f"{len(folds)} {folds[0].what} of a constant (module {', '.join(map(repr, modules))}) folded "
                     "into the export as PyTorch computes it (TensorRT has no such Resize)")
    choice = choose_output(loaded.name, example, output, key=options.output_key, upsample=options.upsample_logits)
    if choice.note:
        notes.append(choice.note)
    check_segmentation_output(loaded.name, example, choice.output, loaded.num_classes, adapters=True)
    if choice.key is not None or choice.upsample:
        # The adapter is part of the model's contract, not an export rewrite: verification and
        # parity compare against the adapted model too (the record says how to rebuild it).
        loaded.model = OutputAdapter(loaded.model, choice.key, choice.upsample).eval()
    settle_num_classes(loaded, int(choice.output.shape[1]))
    if loaded.num_classes_source not in ("--num-classes", "zoo default"):
        notes.append(f"{loaded.num_classes} classes, from the {loaded.num_classes_source} (override with --num-classes)")
    spec = spec_of(loaded)
    del output, choice
    export_model = prepare_for_export(loaded.model, mode=options.unpool)
    if options.argmax:
        export_model = with_argmax_head(export_model)

    say(f"exporting {loaded.name} to ONNX (opset {options.opset}, {'dynamic ' + '+'.join(options.dynamic) if options.dynamic else 'static'})")
    probes: list = []  # sizes where a guard of the trace breaks but PyTorch runs (dynamic_capture.Probe)
    onnx_model = _torch_export(export_model, trace_example, options, dynamic, notes, probes, folds)
    if probes and not options.verify:
        notes.append(f"not verified (--no-verify) at {', '.join('x'.join(map(str, p.shape)) for p in probes)}, "
                     f"where {probes[0].reason.split(' breaks at ')[0]} breaks: run without --no-verify to check it")
    lap("export")

    say("checking and simplifying the graph")
    onnx_model = _clean_up(onnx_model, slim=options.slim)
    opset = target_opset(options)
    if opset < options.opset:
        say(f"converting to opset {opset} for --target {options.target}")
        from segexport.exporter.opset import convert_to_opset

        onnx_model = convert_to_opset(onnx_model, opset, target=str(options.target))
    make_reproducible(onnx_model)
    lap("clean-up")

    from segexport.core.files import weights_path_record
    from segexport.exporter.metadata import write_record

    adapter = loaded.model if isinstance(loaded.model, OutputAdapter) else None
    record = ExportRecord(
        model=loaded.name,
        num_classes=loaded.num_classes,
        class_names=spec.class_names,
        preprocess=PreprocessContract(mean=spec.mean, std=spec.std, input_size=tuple(size)),
        batch=options.batch,
        opset=opset,
        unpool=options.unpool,
        argmax=options.argmax,
        segexport_version=__version__,
        weights_sha256=loaded.weights_sha256,
        width=options.width,
        dynamic=dynamic,
        input_name=INPUT_NAME,
        output_name=LABELS_NAME if options.argmax else LOGITS_NAME,
        output_key=adapter.key if adapter is not None else None,
        upsample_logits=adapter.upsample if adapter is not None else False,
        target=options.target,
        weights_path=weights_path_record(options.weights) if loaded.weights_sha256 else None,
    )
    write_record(onnx_model, record)
    result = ExportResult(path=Path(options.out), record=record, seconds=seconds, onnx_ops=_op_histogram(onnx_model),
                          notes=notes)

    with atomic_output(options.out) as tmp:
        _save(onnx_model, tmp)
        lap("save")
        if options.lint:
            say(f"linting against {'TensorRT' if options.target is None else options.target}'s ONNX support")
            from segexport.exporter.lint import lint_model

            result.lint = lint_model(str(tmp), target=options.target)
            lap("lint")
            if result.lint.errors:
                first = result.lint.errors[0]
                where = f" (PyTorch module {first.module!r})" if first.module else ""
                raise CheckFailed(
                    f"lint found {len(result.lint.errors)} TensorRT error(s) in the export, first: {first.message}{where}"
                    " (run `segexport lint` on a --no-verify export for the full list)", result=result
                )
        if options.verify:
            say("verifying ONNX Runtime against PyTorch")
            result.verify = verify_export(loaded.model, tmp, record, seed=options.seed, probes=probes)
            lap("verify")
            failed = [row for row in result.verify if row.failed]
            if not failed and (blind := unchecked_shapes(result.verify)):
                why = next(r.checks_nothing for r in result.verify if r.shape == blind[0])
                raise CheckFailed(
                    f"verification checked nothing at input {list(blind[0])}: {why} (for noise, flat regions and a "
                    "constant image), so a wrong graph would pass too; the network's activations vanish or it ignores "
                    "its input (an untrained network?): export it with --weights, or initialise it so it responds to "
                    "its input (--no-verify writes it unverified)", result=result)
            if failed:
                bad = next(c for c in failed[0].checks if not c.passed)
                why = next((f" -- {p.reason}: {_GUARD_HINT}" for p in probes if tuple(p.shape) == failed[0].shape),
                           f" -- {probes[0].reason}: {_GUARD_HINT}" if probes else "")
                raise CheckFailed(
                    f"ONNX Runtime disagrees with PyTorch at input {list(failed[0].shape)} ({failed[0].input}): "
                    f"{bad.message}{_TIE_HINT if failed[0].input != 'random' else ''}{why}",
                    result=result,
                )
    return result


_TIE_HINT = (" -- on an input with flat regions only: a max pool, unpool or padding of the export breaks ties"
             " unlike PyTorch (first maximum in row-major window order wins), or a normalization over H x W of a"
             " channel the flat input made constant divides rounding by sqrt(eps)")


_GUARD_HINT = ("the dynamic export follows one branch there; export static, or give --hw-range sizes the model "
               "treats alike")


def _validate_options(options: ExportOptions) -> None:
    if options.unpool not in ("mask", "native"):
        raise UserError(f"--unpool {options.unpool!r} is not one of mask, native")
    if options.opset not in SUPPORTED_OPSETS:
        raise UserError(f"--opset {options.opset} is not supported: use {SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1} (default {DEFAULT_OPSET})")
    if options.target is not None:
        from segexport.core.targets import get_target

        chosen = get_target(options.target)
        if options.opset != DEFAULT_OPSET and options.opset > chosen.opset_max:
            raise UserError(f"--opset {options.opset} is newer than --target {chosen.name} parses "
                            f"({chosen.trt_version}: opset <= {chosen.opset_max}): drop --opset")
        if chosen.dla and options.dynamic:
            raise UserError(f"--target {chosen.name} runs on DLA, which has no dynamic shapes: drop --dynamic")
    if options.batch < 1:
        raise UserError(f"--batch must be >= 1, got {options.batch}")
    unknown = set(options.dynamic) - {"batch", "hw"}
    if unknown:
        raise UserError(f"--dynamic {','.join(sorted(unknown))} is not one of batch, hw (e.g. --dynamic hw or --dynamic batch,hw)")
    out = Path(options.out)
    if out.suffix.lower() != ".onnx":
        raise UserError(f"--out {str(out)!r} must end in .onnx")
    from segexport.core.files import check_output_path, refuse_overwriting_inputs
    from segexport.core.limits import MAX_BATCH, check_seed

    check_seed(options.seed)
    if options.batch > MAX_BATCH:
        raise UserError(f"--batch {options.batch} is too large: at most {MAX_BATCH}")
    check_output_path(out, "--out")  # before the model loads and exports, not after
    source = options.model.rpartition(":")[0] if ":" in options.model else ""
    refuse_overwriting_inputs({"--out": out}, [options.weights, source if source.endswith(".py") else None])


def _dynamic_ranges(options: ExportOptions, size: tuple[int, int], min_size: int) -> dict[str, DynamicRange]:
    """min/opt/max per dynamic axis; refuse inverted or impossible ranges."""
    ranges: dict[str, DynamicRange] = {}
    if "batch" in options.dynamic:
        lo, hi = options.batch_range or (1, max(8, options.batch))
        if not 1 <= lo <= options.batch <= hi:
            raise UserError(f"--batch-range {lo}:{hi} must satisfy 1 <= min <= --batch ({options.batch}) <= max")
        if lo == hi:  # torch.export cannot make a dimension with one value dynamic
            raise UserError(f"--batch-range {lo}:{hi} has one value: widen it, or drop --dynamic batch for a static batch")
        ranges["batch"] = DynamicRange(lo, options.batch, hi)
    elif options.batch_range:
        raise UserError("--batch-range needs --dynamic batch")
    if "hw" in options.dynamic:
        h, w = size
        if options.hw_range:
            (lh, lw), (hh, hw) = options.hw_range
        else:
            lh, lw = max(min_size, h // 2), max(min_size, w // 2)
            hh, hw = 2 * h, 2 * w
        for axis, lo, opt, hi in (("height", lh, h, hh), ("width", lw, w, hw)):
            if not lo <= opt <= hi:
                raise UserError(
                    f"dynamic {axis} range is inverted: need min {lo} <= opt {opt} (from --input-size) <= max {hi}; fix --hw-range"
                )
            if lo < min_size:
                raise UserError(f"dynamic {axis} minimum {lo} is below the model's minimum size {min_size}: raise --hw-range")
            if lo == hi:
                raise UserError(f"dynamic {axis} range {lo}..{hi} has one value: widen --hw-range, or drop --dynamic hw "
                                "for a static size")
            ranges[axis] = DynamicRange(lo, opt, hi)
    elif options.hw_range:
        raise UserError("--hw-range needs --dynamic hw")
    return ranges


def with_argmax_head(model):
    """Wrap ``model`` so it returns int32 labels ``N x H x W`` (for one output channel,
    ``logit > 0``, as :func:`segexport.core.metrics.labels_of`).

    Edge devices then copy back 4 bytes a pixel instead of 4*C; int32 because TensorRT has
    no int64 tensors (it would narrow ArgMax's int64 anyway).
    """
    import torch
    from torch import nn

    class _Head(nn.Module):
        wraps_user_model = True  # segexport.exporter.scopes.user_names

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.model = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = self.model(x)
            if logits.shape[1] == 1:  # binary: one sigmoid logit, foreground where it is > 0
                return (logits[:, 0] > 0).to(torch.int32)
            return logits.argmax(dim=1).to(torch.int32)

    return _Head(model)


def _torch_export(model, example, options: ExportOptions, dynamic: dict[str, DynamicRange],
                  notes: list[str] | None = None, probes: list | None = None, folds: list | None = None):
    """torch.onnx.export (dynamo) with dynamic dims; failures name the op and module.

    ``folds`` (:mod:`segexport.exporter.constant_resize`): antialiased/bicubic resizes of constants,
    as PyTorch computed them at the export size, traced as those very tensors.

    A dynamic export is captured by :func:`segexport.exporter.dynamic_capture.capture` first, so
    a dimension torch.export would freeze is refused with its module instead of going static, and
    the exported graph's input is checked against what was asked (:func:`check_dynamic_input`)."""
    import torch
    from torch.export import Dim

    dims: dict[int, Any] = {}
    if "batch" in dynamic:
        r = dynamic["batch"]
        dims[0] = Dim("batch", min=r.min, max=r.max)
    if "height" in dynamic:
        dims[2] = Dim("height", min=dynamic["height"].min, max=dynamic["height"].max)
        dims[3] = Dim("width", min=dynamic["width"].min, max=dynamic["width"].max)
    kwargs: dict[str, Any] = {}
    if options.unpool == "native":
        from segexport.exporter.unpool import native_translation_table

        table = native_translation_table()
        if table:
            kwargs["custom_translation_table"] = table
    sink = io.StringIO()
    pooling: contextlib.AbstractContextManager = contextlib.nullcontext()
    if "height" in dynamic:  # PyTorch's own lowering freezes adaptive pooling at the traced size
        from segexport.exporter.adaptive_pool import shape_following_adaptive_pooling

        from segexport.exporter.dynamic_sizes import shape_following_sizes
        from segexport.exporter.size_casts import symbolic_size_casts
        from segexport.exporter.size_tensors import tensors_of_sizes

        pooling = contextlib.ExitStack()
        pooling.enter_context(shape_following_adaptive_pooling())
        pooling.enter_context(shape_following_sizes())
        pooling.enter_context(symbolic_size_casts(model))
        pooling.enter_context(tensors_of_sizes())
    unpooling: contextlib.AbstractContextManager = contextlib.nullcontext()
    if options.unpool == "mask":  # F.max_pool2d(return_indices=True) / F.max_unpool2d written as functions
        from segexport.exporter.functional_unpool import functional_unpooling

        unpooling = functional_unpooling()
    from segexport.exporter.constant_resize import folded_constant_resizes
    from segexport.exporter.patch_folds import patch_folds_as_reshapes
    from segexport.exporter.split_slices import splits_as_slices

    suspect = None  # a module whose guard fixed a size before torch's solver failed (dynamic_capture.Captured)
    try:
        with torch.no_grad(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), _quiet_warnings(), \
                _without_fake_tensor_cache(bool(dims)), unpooling, pooling, splits_as_slices(), patch_folds_as_reshapes(), folded_constant_resizes(model, folds or []):
            source = model
            if dims:
                from segexport.exporter.dynamic_capture import capture

                axes = {0: dynamic.get("batch"), 2: dynamic.get("height"), 3: dynamic.get("width")}
                captured = capture(model, example, {a: (r.min, r.max) for a, r in axes.items() if r})
                source = model if captured.program is None else captured.program
                suspect = captured.suspect
                if notes is not None:
                    notes.extend(captured.notes)
                if probes is not None:
                    probes.extend(captured.probes)
            program = torch.onnx.export(
                source,
                (example,),
                dynamo=True,
                opset_version=options.opset,
                input_names=[INPUT_NAME],
                output_names=[LABELS_NAME if options.argmax else LOGITS_NAME],
                # positional: any forward() argument name; a captured program carries its own
                dynamic_shapes=(dims,) if dims and source is model else None,
                verbose=False,
                optimize=False,  # onnxscript's rewriter takes minutes on FC-DenseNet103; onnxslim cleans up
                **kwargs,
            )
    except UserError:
        raise
    except Exception as exc:  # torch.export / onnx translation failure
        raise UserError(describe_export_failure(exc, model, example, dynamic=bool(dims), suspect=suspect)) from exc
    if program is None:
        raise UserError("torch.onnx.export returned nothing: please report this with your torch version")
    check_dynamic_input(program.model_proto, dims)
    return program.model_proto


def _without_fake_tensor_cache(dynamic: bool) -> contextlib.AbstractContextManager:
    """Trace a dynamic export without torch's fake-tensor dispatch cache (for this export only).

    With symbolic shapes the cache mostly builds entries that are never hit, and building them
    (sympy on every size) was a quarter of a dynamic SegNet's export time: export step 30.5 s with
    it, 22.9 s without; dynamic FC-DenseNet103 49.0 s and 39.5 s (width 1/16, 53x61, this 2-core
    machine). The ONNX files come out byte-identical either way (compared). A static trace repeats
    concrete shapes and hits it (static FC-DenseNet103 was 13.3 s with it, 16.3 s without): kept."""
    import torch._dynamo.config

    if not dynamic:
        return contextlib.nullcontext()

    return torch._dynamo.config.patch(fake_tensor_cache_enabled=False)


def check_dynamic_input(onnx_model, dims: dict[int, Any]) -> None:
    """Every axis asked dynamic is symbolic in the graph's input: the backstop for any path by which
    an export comes out static behind the user's back (lint would only see it later)."""
    shape = onnx_model.graph.input[0].type.tensor_type.shape.dim
    frozen = [(axis, shape[axis].dim_value) for axis in dims if axis < len(shape) and not shape[axis].dim_param]
    if frozen:
        names = {0: "batch", 2: "height", 3: "width"}
        raise UserError("--dynamic was asked but the exported graph fixes " + ", ".join(
            f"{names.get(a, a)} to {v}" for a, v in frozen) + ": a construct of the model turned the size into a "
            "number; please report this with the model, or export without --dynamic")


@contextlib.contextmanager
def _quiet_warnings():
    import logging
    import warnings

    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript",
                                              "torch.fx", "torch._dynamo", "torch._subclasses", "torch._guards")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for lg, lvl in zip(loggers, levels):
                lg.setLevel(lvl)


_OP_RE = re.compile(r"\baten[.:]{1,2}([A-Za-z0-9_]+)")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


# Raised by torch's exporter itself, not by an op or the model: its own bookkeeping of symbolic
# sizes (``KeyError: ((s53/2)//2)``), an assert of its solver (``AssertionError: True != False``).
_INTERNAL = (KeyError, AssertionError, IndexError)


def describe_export_failure(exc: BaseException, model, example=None, *, dynamic: bool = False,
                            suspect: Any = None) -> str:
    """One line: which PyTorch op failed, in which module, and what to try. An internal error of
    the exporter names the module being traced and the construct (symbolic sizes when dynamic),
    never only torch's raw text. ``suspect`` (a :class:`segexport.exporter.dynamic_capture.Guard`):
    where a size was equated to a number before torch's solver failed, named when the traceback
    holds no frame of the model (the solver runs after the trace)."""
    text = ""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 20:
        chain.append(seen)
        text += "".join(traceback.format_exception_only(type(seen), seen)) + "\n"
        seen = seen.__cause__ or seen.__context__
    text = _ANSI_RE.sub("", text)
    ops = [m.group(1) for m in _OP_RE.finditer(text) if m.group(1) not in ("default",)]
    op = ops[0] if ops else None
    module = _failing_module(exc, model)
    if module is None and op and example is not None:
        module = _module_calling(model, example, op)
    # The outer exception is torch.onnx's "step 1/3" banner; the cause is at the bottom of the chain.
    cause = next((e for e in reversed(chain) if str(e).strip()), exc)
    lines = [ln.strip() for ln in _ANSI_RE.sub("", str(cause)).splitlines() if ln.strip()]
    first = lines[0] if lines else type(cause).__name__
    if len(first) > 160:
        first = first[:157] + "..."
    where = f" in module {module!r}" if module else ""
    what = f"op aten::{op}" if op else type(cause).__name__
    if isinstance(cause, _INTERNAL) and not op:
        what = f"an internal error of torch's exporter ({type(cause).__name__})"
        where = f" while tracing module {module!r}" if module else where
        if not module and suspect is not None and dynamic:
            line = f" ({suspect.line})" if suspect.line else ""
            where = (f" after module {suspect.module!r}{line} made a size one value (guard {suspect.expr[:80]}), "
                     "which the range cannot hold")
        if dynamic:
            fix = ("the module's size arithmetic (sizes computed in Python from x.shape, a reshape to sizes of another "
                   "tensor) is more than torch.export's symbolic sizes handle: export without --dynamic hw, or "
                   "compute the sizes from the tensors in that module (x.shape[-2:] passed on, not recomputed)")
        else:
            fix = "try another --opset, or replace the construct in that module; please report it with your torch version"
        return f"ONNX export failed with {what}{where}: {first} -- {fix}"
    if "data-dependent" in text or "GuardOnDataDependentSymNode" in text:
        fix = ("the model branches on tensor values (`if x.mean() > 0:`), which torch.export cannot trace: "
               "compute both branches and choose with torch.where, or use torch.cond")
    else:
        fix = "try another --opset, --unpool native, or replace the op in your model"
    return f"ONNX export failed at {what}{where}: {first} -- {fix}"


def _failing_module(exc: BaseException, model) -> str | None:
    """The innermost module of ``model`` on the failing traceback, by its qualified name."""
    from segexport.exporter.scopes import name_of, user_names

    names = user_names(model)
    found = None
    seen: BaseException | None = exc
    while seen is not None:
        tb = seen.__traceback__
        while tb is not None:
            self_obj = tb.tb_frame.f_locals.get("self")
            name = name_of(names, self_obj) if self_obj is not None else None
            if name is not None:
                found = name or type(self_obj).__name__
            tb = tb.tb_next
        seen = seen.__cause__ or seen.__context__
    return found


def _module_calling(model, example, op: str) -> str | None:
    """Run the model once and return the innermost module that dispatches ``aten::op``.

    Failures in the ONNX translation step happen after tracing, so the traceback no longer
    holds the user's frames; replaying the forward with a dispatch-level spy finds the caller.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from segexport.exporter.scopes import module_stack

    found: list[str] = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not found and func.__name__.split(".")[0] == op:
                found.append(stack[-1] if stack else "")
            return func(*args, **(kwargs or {}))

    with module_stack(model) as stack:
        try:
            with Spy(), torch.no_grad():
                model(example)
        except Exception:
            pass
    return (found[0] or type(model).__name__) if found else None


def _clean_up(model, *, slim: bool):
    import onnx

    onnx.checker.check_model(model)
    scopes = _module_scopes(model)
    if slim:
        import onnxslim

        # Type every tensor before onnxslim sees the graph. torch.onnx writes Resize scales as
        # `Constant(value_floats=[1, 1, 2, 2])` with no value_info; onnxslim (>= 0.1.85) folds an
        # untyped constant into a DOUBLE initializer, which ONNX (and TensorRT) refuse as Resize
        # scales. With the types known it keeps float32; _float_resize_scales below is the
        # backstop for any onnxslim that still widens them.
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), _quiet_warnings():
            model = onnxslim.slim(model)
    _float_resize_scales(model)
    _fold_required_constants(model)
    _restore_module_scopes(model, scopes)
    # One set of intermediate shapes, inferred from the final graph: onnxslim keeps the exporter's
    # value_info and inference would append its own, leaving two (sometimes contradicting) entries
    # per tensor, which ONNX Runtime trips over when it plans buffers at odd dynamic sizes.
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def _float_resize_scales(model) -> list[str]:
    """Cast constant ``Resize`` scales that are not float32 back to float32, in place.

    The ONNX spec types ``scales`` as tensor(float); a graph tool that widens a folded
    constant to float64 makes the file invalid for every runtime. The values are exact small
    ratios (2.0, 0.5, 1.5), so the cast is lossless. Returns the tensors it cast.
    """
    import numpy as np
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant" and n.output}
    cast: list[str] = []
    for node in model.graph.node:
        if node.op_type != "Resize" or len(node.input) < 3 or not node.input[2]:
            continue
        name = node.input[2]
        if name in inits and inits[name].data_type not in (TensorProto.FLOAT, TensorProto.UNDEFINED):
            arr = numpy_helper.to_array(inits[name]).astype(np.float32)
            inits[name].CopyFrom(numpy_helper.from_array(arr, name))
            cast.append(name)
        elif name in consts:
            for attr in consts[name].attribute:
                if attr.name == "value" and attr.t.data_type != TensorProto.FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float32), attr.t.name))
                    cast.append(name)
    return cast


def _fold_required_constants(model) -> list[str]:
    """Replace each ``axes`` input TensorRT needs as a build-time constant, when it is computed
    from constants (``Reshape(Constant)``, ``Range(0, 2, 1)``), by an initializer holding its value.

    The parser folds some such subgraphs but not all (TensorRT-RTX 1.7 refuses ReduceMean axes
    from a ``Reshape`` of constants: "Axis input must resolve to a build-time constant"), and
    onnxslim, which would fold them, is optional (``--no-slim``). Evaluated with ONNX's reference
    runtime on just the constant ancestors; producers left without consumers are dropped.
    Returns the tensors folded.
    """
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    from segexport.core.graph import folded_constants
    from segexport.exporter.lint import AXES_MUST_BE_CONSTANT

    graph = model.graph
    literal = {i.name for i in graph.initializer}
    constants = folded_constants(model)
    producer = {o: n for n in graph.node for o in n.output if o}
    wanted = []
    for node in graph.node:
        idx = AXES_MUST_BE_CONSTANT.get(node.op_type)
        if idx is None or len(node.input) <= idx or not node.input[idx]:
            continue
        name = node.input[idx]
        if name in constants and name not in literal and producer.get(name) is not None \
                and producer[name].op_type != "Constant" and name not in wanted:
            wanted.append(name)
    if not wanted:
        return []
    needed: list = []
    seen: set[int] = set()

    def visit(tensor: str) -> None:
        node = producer.get(tensor)
        if node is None or id(node) in seen:
            return
        seen.add(id(node))
        for i in node.input:
            if i:
                visit(i)
        needed.append(node)

    for name in wanted:
        visit(name)
    order = {id(n): k for k, n in enumerate(graph.node)}
    needed.sort(key=lambda n: order[id(n)])
    used_inits = {i for n in needed for i in n.input} & literal
    sub = helper.make_model(
        helper.make_graph(needed, "fold", [], [helper.make_tensor_value_info(w, onnx.TensorProto.UNDEFINED, None)
                                               for w in wanted],
                          [i for i in graph.initializer if i.name in used_inits]),
        opset_imports=list(model.opset_import))
    values = ReferenceEvaluator(sub).run(None, {})
    for name, value in zip(wanted, values):
        graph.initializer.append(numpy_helper.from_array(value, name))
    for node in needed:  # the folded outputs now come from initializers
        node.output[:] = ["" if o in wanted else o for o in node.output]
    _drop_dead_nodes(model)
    return wanted


def _drop_dead_nodes(model) -> None:
    """Remove nodes none of whose outputs is read (repeatedly, so dead chains go too)."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    while True:
        read = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o and o in read for o in n.output)]
        if not dead:
            return
        keep = [n for n in graph.node if all(n is not d for d in dead)]
        del graph.node[:]
        graph.node.extend(keep)


# Node metadata kept in the exported graph: which PyTorch module a node came from. Lint
# findings and the FP16 overflow analysis name modules with it. The exporter's stack traces
# and FX dumps are dropped: they bloat the file and leak local paths.
SCOPE_KEYS = ("namespace", "pkg.torch.onnx.name_scopes", "pkg.torch.onnx.class_hierarchy")


def _module_scopes(model) -> dict[str, list[tuple[str, str]]]:
    """Node name (and, as a fallback, output tensor name) -> the node's scope metadata."""
    scopes: dict[str, list[tuple[str, str]]] = {}
    for node in model.graph.node:
        kept = [(p.key, p.value) for p in node.metadata_props if p.key in SCOPE_KEYS]
        if not kept:
            continue
        if node.name:
            scopes[f"node:{node.name}"] = kept
        for out in node.output:
            if out:
                scopes.setdefault(f"out:{out}", kept)
    return scopes


def _restore_module_scopes(model, scopes: dict[str, list[tuple[str, str]]]) -> None:
    """Re-attach scopes after onnxslim (which drops node metadata).

    By node name first: when onnxslim removes a no-op node (a zero Pad), the node before it
    takes over its output name, and matching by output would give it the removed node's scope.
    """
    for node in model.graph.node:
        kept = scopes.get(f"node:{node.name}") or next((scopes[f"out:{o}"] for o in node.output if f"out:{o}" in scopes), None)
        del node.metadata_props[:]
        for key, value in kept or []:
            prop = node.metadata_props.add()
            prop.key, prop.value = key, value


_ADDRESS_RE = re.compile(r" at 0x[0-9a-fA-F]+")
_ABS_PATH_RE = re.compile(r"(?<![\w.])(?:/[^/\s'\"<>:]+)+/([^/\s'\"<>:]+\.py)")


def _scrub(text: str) -> str:
    """``<function sym_min at 0x7f15...>`` -> ``<function sym_min>``; ``/home/me/x/net.py`` -> ``net.py``."""
    return _ABS_PATH_RE.sub(r"\1", _ADDRESS_RE.sub("", text))


def make_reproducible(model) -> None:
    """Drop what differs between two exports of the same model: memory addresses (torch.export
    names symbolic-shape helpers ``<function sym_min at 0x...>`` in node scopes), absolute source
    paths and doc strings (stack traces). Why: a content-keyed cache (``segexport pipeline``) only
    hits when the same inputs give the same bytes."""
    model.doc_string = ""
    model.graph.doc_string = ""
    for prop in model.metadata_props:
        prop.value = _scrub(prop.value)
    graphs = [model.graph] + [f for f in model.functions]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            node.doc_string = ""
            for prop in node.metadata_props:
                prop.value = _scrub(prop.value)
            graphs.extend(a.g for a in node.attribute if a.HasField("g"))
            graphs.extend(g for a in node.attribute for g in a.graphs)


def _save(model, path: Path) -> None:
    import onnx

    data = model.SerializeToString()
    path.write_bytes(data)
    del data
    onnx.checker.check_model(str(path))


def _op_histogram(model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def verification_shapes(record: ExportRecord) -> list[tuple[int, int, int, int]]:
    """The export shape, the min and max corners of a dynamic profile, and, when the export
    shape is itself a corner of a dynamic H/W range (``--hw-range 64x64:128x128`` exported at
    64x64), a size inside it: a graph right at both corners can still be wrong in between
    (a size frozen at one corner, a pad computed for one parity)."""
    (lo, opt, hi) = record.profile_shapes()[record.input_name]
    shapes = [opt]
    for s in (lo, hi):
        if s not in shapes:
            shapes.append(s)
    if len(shapes) > 1 and opt in (lo, hi):
        inner = (*opt[:2], *(_inner_size(a, b) for a, b in zip(lo[2:], hi[2:])))
        if inner not in shapes and inner[2:] != tuple(opt[2:]):
            shapes.append(inner)
    if lo[2] < hi[2] and lo[3] < hi[3] and all(s[2] == s[3] for s in shapes):
        shapes.append(off_diagonal(lo, opt, hi))
    return shapes


def off_diagonal(lo, opt, hi) -> tuple[int, int, int, int]:
    """The profile corner of least height and most width, checked when every other shape is square.

    A TensorRT profile is a box: an engine with dynamic H and W takes 32x128 as readily as
    128x128. A network that reshapes its tokens to a square grid (``int(sqrt(n))``: Hugging Face
    DPT's reassemble stage) is right at every square size and wrong, or failing, at every other;
    corners that are all square would never show it. The width is inside the range, not its end:
    at 32x128 the grid of 2x8 patches still has a square number of cells, so DPT runs there."""
    w = _inner_size(lo[3], hi[3])
    return (opt[0], opt[1], lo[2], w if w != lo[2] else hi[3])


def _inner_size(lo: int, hi: int) -> int:
    """A size strictly inside ``lo..hi`` near its middle, on the coarsest power-of-two grid (up to
    32) that has one, so a network that needs multiples of its stride still takes it; ``lo`` when
    the range has no inside."""
    if hi - lo < 2:
        return lo
    step = 32
    while step > 1:
        inside = [k * step for k in range(lo // step + 1, -(-hi // step)) if lo < k * step < hi]
        if inside:
            return min(inside, key=lambda v: abs(v - (lo + hi) / 2))
        step //= 2
    return (lo + hi) // 2


def verify_export(torch_model, onnx_path: Path, record: ExportRecord, *, seed: int = 0,
                  probes: list | None = None) -> list[VerifyRow]:
    """Compare PyTorch eager (the *unmodified* model) with ONNX Runtime on seeded inputs:
    noise and an input with flat regions at every shape, and a constant image at the export
    shape (:func:`segexport.core.comparison.probe_inputs`). Noise never ties, so it cannot see a
    tie-break that differs from PyTorch's; flat regions tie in every pool window inside them.

    Comparing against the original model, not the export-prepared copy, is what proves the
    MaxUnpool rewrite exact. The strict fp32 contract (99.99 % labels, max-abs 1e-4 x max|ref|)
    applies first; only when it fails is the reference's own float32 noise floor measured, and
    if PyTorch fails the contract against itself the export is held to that floor instead
    (:mod:`segexport.core.noise_floor`; the CLI says so when it happens).
    """
    import numpy as np
    import torch

    from segexport.core.comparison import CONSTANT_MAX_ABS_REL, PROBE_KINDS, judge, probe_inputs
    from segexport.core.metrics import EXPORT_THRESHOLDS, labels_of
    from segexport.core.noise_floor import measure_floor
    from segexport.core.sessions import ort_runner

    import onnxruntime

    # A shape the graph cannot run becomes one CheckFailed line below; ORT would also log it.
    onnxruntime.set_default_logger_severity(4)
    strict = EXPORT_THRESHOLDS["fp32"]
    constant = replace(strict, max_abs_rel=max(strict.max_abs_rel or 0.0, CONSTANT_MAX_ABS_REL))
    rows: list[VerifyRow] = []
    rng = np.random.default_rng(seed)

    def reference(x: np.ndarray) -> np.ndarray:
        try:
            with torch.no_grad():
                out = torch_model(torch.from_numpy(x)).numpy()
        except Exception as exc:  # the model itself cannot take a corner of the dynamic profile
            from segexport.errors import exception_line
            from segexport.exporter.dynamic_capture import torch_runs_at

            (lo, opt, hi) = record.profile_shapes()[record.input_name]
            module = _failing_module(exc, torch_model)
            where = f" in module {module!r}" if module else ""
            n, c, h, w = x.shape  # H = W at that width runs (the low corner, also square, ran): the shape is the cause
            if tuple(x.shape) == off_diagonal(lo, opt, hi) and h != w and torch_runs_at(torch_model, (n, c, w, w)):
                raise UserError(f"{record.model} runs at the square sizes of the profile but fails in PyTorch itself "
                                f"at {'x'.join(map(str, x.shape))}{where} ({exception_line(exc)[:120]}): it takes only H = W "
                                "(a reshape to a square grid), and a TensorRT profile is a box of H and W; export "
                                "without --dynamic hw at the size you deploy") from exc
            raise UserError(f"{record.model} fails in PyTorch itself at {'x'.join(map(str, x.shape))}, a size of the "
                            f"dynamic profile{where} ({exception_line(exc)[:160]}): give --hw-range sizes the model accepts "
                            f"(e.g. multiples of its total stride)") from exc
        if tuple(out.shape[-2:]) != tuple(x.shape[-2:]):  # the contract held at the export size only
            raise UserError(f"{record.model} returns {'x'.join(map(str, out.shape))} for a {'x'.join(map(str, x.shape))} "
                            "input, a size of the dynamic profile: its output does not follow the input size there "
                            "(a reshape to a fixed or square grid): export without --dynamic hw, or give --hw-range "
                            "sizes it follows")
        return labels_of(out).astype(np.int32) if record.argmax else out

    probes_list = [(shape, kind, x) for k, shape in enumerate(verification_shapes(record))
              # noise and a flat-region input at every shape (ties at odd corners too), a constant one at the export size
              for kind, x in probe_inputs(shape, rng, PROBE_KINDS if k == 0 else ("random", "flat"))]
    # sizes where a guard of the dynamic trace breaks but PyTorch runs (segexport.exporter.dynamic_capture)
    probes_seen = {tuple(p[0]) for p in probes_list}
    for extra in probes or []:
        if tuple(extra.shape) not in probes_seen:
            probes_seen.add(tuple(extra.shape))
            probes_list.append((tuple(extra.shape), "random", rng.standard_normal(extra.shape, dtype=np.float32)))
    refs = []
    with ort_runner(onnx_path) as runner:
        for shape, kind, x in probes_list:
            ref = reference(x)
            refs.append(ref)
            try:
                got = np.asarray(runner.infer({record.input_name: x})[record.output_name])
            except Exception as exc:  # onnxruntime's Fail/RuntimeException: the graph cannot run this shape
                from segexport.errors import exception_line

                detail = _ANSI_RE.sub("", exception_line(exc)).split("Status Message:")[-1].strip()[:200]
                fix = ("the model's forward depends on the input size in Python (e.g. pads odd sizes), and the "
                       "dynamic export froze one case: export static, or give --hw-range sizes the model treats alike "
                       "(e.g. multiples of its stride)" if record.dynamic else "please report this with the model")
                raise CheckFailed(f"ONNX Runtime cannot run the export at input {'x'.join(map(str, shape))} "
                                  f"({detail}): {fix}") from exc
            verdict = judge(ref, got, constant if kind == "constant" else strict,
                            floors=lambda: measure_floor(reference, x, ref, rng, keep_flat=kind != "random"))
            rows.append(VerifyRow(shape=tuple(shape), metrics=verdict.metrics, checks=verdict.checks,
                                  noise_floor=verdict.noise_floor, held_to_floor=verdict.held_to_floor, input=kind))
    _mark_rows_that_check_nothing(rows, refs)
    return rows
