"""The public Python API: one small function per step, named and parameterised like the CLI.

``segexport onnx --model unet --input-size 256x256`` is ``segexport.export(model="unet",
input_size=(256, 256))``: keyword arguments are the flags with underscores (``--no-verify`` is
``verify=False``, ``--json`` is ``json_out``, ``--model-arg`` is ``model_args``). Each function
composes library steps and returns a typed result (paths, figures, ``passed``); the CLI calls
these same functions and only renders what they return.

Errors: bad input raises :class:`~segexport.errors.UserError` whose message names the
parameter (``unpool=``); a failed check raises :class:`~segexport.errors.CheckFailed` after any
report describing it is written, with the result (``passed=False``) in ``.result``. A result
that is returned passed.

Import cost: this module imports nothing heavy; each function imports its step. ``lint`` and
``build_engine`` never import torch, so they run on a box without PyTorch (a Jetson, a Triton
build host).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from segexport.core.arguments import checked
from segexport.core.precisions import EXPORT_PRECISIONS, PRECISIONS
from segexport.errors import CheckFailed, UserError

Progress = Callable[..., None]  # progress(message, ...): a status line for long steps

__all__ = ["export", "calibrate", "build_engine", "lint", "parity", "bench", "debug",
           "ExportResult", "CalibrationResult", "EngineResult", "LintResult", "ParityResult", "BenchResult"]


def _names(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"batch,hw"`` or ``("batch", "hw")`` -> ``("batch", "hw")``."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(s.strip() for s in items if s and s.strip())


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


@dataclass
class ExportResult:
    onnx: Path | None  # the verified fp32 ONNX; None when the export failed its checks (nothing written)
    details: Any  # segexport.exporter.export.ExportResult: record, verification rows, lint, seconds
    calibrated_onnx: Path | None = None  # with precision= other than fp32
    calibration: Any | None = None  # segexport.calib.pipeline.CalibrateResult
    passed: bool = True


@checked
def export(*, model: str = "deeplabv1", out: str | Path | None = None, weights: str | Path | None = None,
           num_classes: int | None = None, width: float = 1.0, model_args: Mapping[str, Any] | None = None,
           output_key: str | None = None, upsample_logits: bool = False,
           input_size: tuple[int, int] | None = None, batch: int = 1, dynamic: str | Iterable[str] = (),
           hw_range: tuple[tuple[int, int], tuple[int, int]] | None = None, batch_range: tuple[int, int] | None = None,
           opset: int = 18, target: str | None = None, argmax: bool = False, unpool: str = "mask", slim: bool = True, verify: bool = True,
           lint: bool = True, seed: int = 0, precision: str = "fp32", calib_data: str = "synthetic",
           calib_count: int = 32, progress: Progress | None = None) -> ExportResult:
    """Export ``model`` to TensorRT-ready ONNX, verified against PyTorch (``segexport onnx``).

    With ``precision`` fp16/int8/best the verified ONNX is then calibrated into
    ``<out>.<precision>.onnx`` (as :func:`calibrate` would). ``unpool="native"`` keeps ONNX
    MaxUnpool, which TensorRT cannot parse, so the TensorRT lint is skipped for it.
    ``num_classes=None``: 21 for the zoo, a user factory's own default (or checkpoint head, or
    output). ``output_key`` / ``upsample_logits`` are ``--output`` / ``--upsample-logits``.
    """
    from segexport.models.registry import check_model_request

    check_model_request(model, num_classes, width)  # before torch is imported: a typo costs no wait
    from segexport.exporter.export import ExportOptions, export_onnx

    if precision not in EXPORT_PRECISIONS:
        raise UserError(f"--precision {precision!r} is not one of {', '.join(EXPORT_PRECISIONS)}")
    if precision != "fp32" and argmax:
        raise UserError("--precision needs logits to calibrate: drop --argmax (or export twice)")
    if precision != "fp32":  # refuse bad calibration input before the export, not after it
        from segexport.calib.data import check_calibration_source

        check_calibration_source(calib_data, calib_count)
    options = ExportOptions(
        model=model, out=Path(out) if out is not None else default_export_path(model), weights=_path(weights),
        num_classes=num_classes, width=width, model_args=dict(model_args or {}), output_key=output_key,
        upsample_logits=upsample_logits, input_size=tuple(input_size) if input_size else None, batch=batch,
        dynamic=tuple(sorted(set(_names(dynamic)))), hw_range=hw_range, batch_range=batch_range, opset=opset,
        target=target,
        unpool=unpool, argmax=argmax, slim=slim, verify=verify, lint=lint and unpool != "native", seed=seed)
    try:
        details = export_onnx(options, progress=progress)
    except CheckFailed as exc:  # lint or verification failed: nothing was written, the figures are kept
        if exc.result is not None:
            exc.result = ExportResult(onnx=None, details=exc.result, passed=False)
        raise
    result = ExportResult(onnx=details.path, details=details)
    if precision != "fp32":
        try:
            reduced = calibrate(onnx=details.path, precision=precision, data=calib_data, calib_count=calib_count,
                                progress=None if progress is None else lambda msg, *_a, **_k: progress(msg))
        except CheckFailed as exc:  # the fp32 ONNX stands (it passed); the reduced one failed its check
            result.calibration = exc.result  # the failed calibration's figures (its gate verdict), nothing written
            result.passed, exc.result = False, result
            raise
        result.calibrated_onnx, result.calibration = reduced.onnx, reduced.details
    return result


@dataclass
class CalibrationResult:
    onnx: Path  # the reduced-precision ONNX
    precision: str  # what it holds (``best`` resolves to fp16 or int8)
    details: Any  # segexport.calib.pipeline.CalibrateResult: costs, kept layers, latency, mIoU
    trt_cache: Path | None = None
    passed: bool = True


def default_export_path(model: str) -> Path:
    """Where ``export`` writes without ``out``: ``<model>.onnx`` (a factory's name for ``module:factory``)."""
    return Path(f"{model.rpartition(':')[2] if ':' in model else model}.onnx")


@checked
def calibrate(*, onnx: str | Path, precision: str = "int8", data: str = "synthetic", labels: str | Path | None = None,
              eval_data: str | None = None, eval_labels: str | Path | None = None, calib_count: int = 32,
              eval_count: int | None = None, seed: int = 0, method: str = "percentile",
              max_miou_drop: float | None = None, max_agreement_drop: float | None = None,
              out: str | Path | None = None, trt_cache: str | Path | None = None, trt_version: str | None = None,
              rank_by: str = "ort-cpu", keep_float: Sequence[str] = (), target: str | None = None,
              latency: bool = True, progress: Progress | None = None) -> CalibrationResult:
    """Reduce an exported ONNX to FP16 or INT8 and measure the cost on the CPU (``segexport calibrate``).
    ``target`` (e.g. ``jetpack5``): the TensorRT the cache header names, checked against the export's
    recorded target and recorded in the output when the export had none.

    ``latency=False`` skips the ONNX Runtime latency proxy of the report (two more sessions): the
    pipeline, whose bench step measures latency properly, passes it."""
    from segexport.calib.pipeline import CalibrateOptions, run_calibrate

    opts = CalibrateOptions(onnx=Path(onnx), precision=precision, data=str(data), labels=_path(labels),
                            eval_data=eval_data, eval_labels=_path(eval_labels), count=calib_count,
                            eval_count=eval_count, seed=seed, method=method, max_miou_drop=max_miou_drop,
                            max_agreement_drop=max_agreement_drop, out=_path(out), trt_cache=_path(trt_cache),
                            trt_version=trt_version, rank_by=rank_by, keep_float=_names(keep_float), target=target,
                            latency=latency)
    details = run_calibrate(opts, progress=progress)
    return CalibrationResult(onnx=details.out, precision=details.precision, details=details,
                             trt_cache=details.trt_cache)


@dataclass
class EngineResult:
    engine: Path
    sidecar: Path  # <engine>.json: what later steps check before they run it
    info: Any  # segexport.engines.builder.EngineInfo
    passed: bool = True


@checked
def build_engine(*, onnx: str | Path, out: str | Path | None = None, backend: str = "auto",
                 precision: str | None = None, calib_cache: str | Path | None = None, workspace: int | None = None,
                 timing_cache: str | Path | None = None, version_compat: bool = False,
                 hardware_compat: str | None = None, target_cc: str | Sequence[str] = (),
                 target: str | None = None) -> EngineResult:
    """Build a serialized TensorRT / TensorRT-RTX engine with its sidecar (``segexport engine``).
    ``target``: a segexport.core.targets name, checked against the export's recorded one and the
    installed TensorRT (None: the recorded one). Needs no torch."""
    from segexport.engines.builder import build_engine as build, sidecar_path

    if precision not in (None,) + PRECISIONS:
        raise UserError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    onnx = Path(onnx)
    out = Path(out) if out is not None else onnx.with_suffix(".engine")
    info = build(onnx, out, backend=backend, precision=precision, workspace_mib=workspace,
                 timing_cache=timing_cache, calibration_cache=calib_cache, version_compatible=version_compat,
                 hardware_compatibility=hardware_compat, target_compute_capabilities=_names(target_cc),
                 target=target)
    return EngineResult(engine=out, sidecar=sidecar_path(out), info=info)


@dataclass
class LintResult:
    onnx: Path
    report: Any  # segexport.exporter.lint.LintReport: every finding with node and PyTorch module
    errors: int = 0
    warnings: int = 0
    passed: bool = True


@checked
def lint(*, onnx: str | Path, parser: str = "auto", build: bool = False, target: str | None = None) -> LintResult:
    """Check an ONNX against TensorRT's ONNX support (``segexport lint``); CheckFailed on errors.
    ``target`` picks the TensorRT version (and DLA pre-flight); None: the recorded one. Needs no torch."""
    from segexport.exporter.lint import lint_model

    if parser not in ("auto", "trt", "rtx", "none"):
        raise UserError(f"--parser {parser!r} is not one of auto, trt, rtx, none")
    if target is not None:
        from segexport.core.targets import get_target

        get_target(target)  # an unknown name fails before the file is read
    if build:
        _check_builder(parser)
    report = lint_model(Path(onnx), parser=parser, build=build, target=target)
    result = LintResult(onnx=Path(onnx), report=report, errors=len(report.errors), warnings=len(report.warnings),
                        passed=not report.errors)
    if not result.passed:
        raise CheckFailed(f"{onnx}: {len(report.errors)} TensorRT error(s); first: {report.errors[0].message}",
                          result=result)
    return result


def _check_builder(parser: str) -> None:
    """A build that was asked for and cannot happen is an error, not a pass with "parser: not run"."""
    if parser == "none":
        raise UserError("--build needs the real builder, which --parser none turns off: drop one of the two")
    if parser == "auto":  # an explicit trt/rtx names its own package when missing
        from segexport.core.tensorrt import available

        if available("trt") is None and available("rtx") is None:
            raise UserError("--build needs TensorRT-RTX or TensorRT, and neither is installed here: "
                            "pip install 'segexport[rtx]' (or drop --build for the static checks alone)")


@dataclass
class ParityResult:
    report: Any  # segexport.checks.reports.ParityReport: every pair's metrics and checks
    written: list[Path] = field(default_factory=list)  # the report files (json_out, junit, markdown)
    passed: bool = True


@checked
def parity(*, onnx: str | Path, model: str | None = None, weights: str | Path | None = None,
           engine: str | Path | None = None, backends: str | Iterable[str] = ("ort-cpu",),
           images: str | Path | None = None, labels: str | Path | None = None, count: int = 4, seed: int = 0,
           thresholds: Mapping[str, float] | None = None, json_out: str | Path | None = None,
           junit: str | Path | None = None, markdown: str | Path | None = None, save_diff: str | Path | None = None,
           progress: Progress | None = None, trust_model_code: bool = False) -> ParityResult:
    """Compare every backend with PyTorch eager on the same inputs (``segexport parity``).
    The reports are written before a failure is raised, so CI can publish them."""
    from segexport.models.registry import check_model_request

    check_model_request(model, None, 1.0)  # an override's name, before torch is imported
    from segexport.checks.parity import ParityOptions, run_parity
    from segexport.checks.reports import write_json, write_junit, write_markdown
    from segexport.core.files import atomic_outputs, check_output_path, refuse_overwriting_inputs

    outputs = [(_path(json_out), "--json", write_json), (_path(junit), "--junit", write_junit),
               (_path(markdown), "--markdown", write_markdown)]
    # every report path is checked before the comparison runs: a typo must not cost the run,
    # nor leave some reports written and others not
    for path, flag, _writer in outputs:
        if path is not None:
            check_output_path(path, flag)
    save_diff = _path(save_diff)
    _check_save_diff(save_diff)
    # no report may overwrite what parity reads (the ONNX, the weights, the engine, the images)
    refuse_overwriting_inputs({**{flag: path for path, flag, _w in outputs}, "--save-diff": save_diff},
                              [onnx, weights, engine, engine and Path(str(engine) + ".json"), images, labels])
    opts = ParityOptions(onnx=Path(onnx), model=model, weights=_path(weights), engine=_path(engine),
                         backends=_names(backends), images=_path(images), labels=_path(labels), count=count,
                         seed=seed, thresholds=dict(thresholds or {}), save_diff=save_diff,
                         trust_model_code=trust_model_code)
    report = run_parity(opts, progress=progress)
    if weights is None and report.weights is not None:  # the checkpoint the ONNX records: read, never replaced
        refuse_overwriting_inputs({**{flag: path for path, flag, _w in outputs}, "--save-diff": save_diff},
                                  [Path(report.weights)])
    if not report.pairs:  # before any report is written: an empty report would read as a pass
        raise UserError("no candidate backend could run here: " + "; ".join(f"{k}: {v}" for k, v in report.skipped.items()))
    result = ParityResult(report=report, passed=report.passed)
    # all reports land together or none does: a JUnit that cannot be written (disk full) must
    # not leave a JSON saying "pass" for CI to read
    chosen = [(path, flag, writer) for path, flag, writer in outputs if path is not None]
    with atomic_outputs([(path, flag) for path, flag, _w in chosen]) as staged:
        for path, _flag, writer in chosen:
            writer(report, staged[path])
    result.written.extend(path for path, _f, _w in chosen)
    if not result.passed:
        failed = [f"{p.candidate}: {c.message}" for p in report.pairs for c in p.checks if not c.passed]
        raise CheckFailed(f"parity failed ({len(failed)} check(s)); first: {failed[0]}", result=result)
    return result


def _check_save_diff(save_diff: Path | None) -> None:
    """--save-diff must be a folder parity can write PNGs into (or create), checked up front."""
    import os

    if save_diff is None:
        return
    if save_diff.exists() and not save_diff.is_dir():
        raise UserError(f"--save-diff {str(save_diff)!r} is a file: give a directory for the PNGs")
    folder = save_diff if save_diff.exists() else (save_diff.parent if str(save_diff.parent) else Path("."))
    if not folder.is_dir():
        raise UserError(f"--save-diff {str(save_diff)!r}: {str(folder)!r} does not exist: create it or choose another")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"--save-diff {str(save_diff)!r}: {str(folder)!r} is not writable: choose another folder")


@checked
def bench(*, model: str | None = None, onnx: str | Path | None = None, engine: str | Path | None = None,
          backends: str | Iterable[str] = ("torch", "ort-cpu"), batch: int | Iterable[int] = (1,),
          input_size: tuple[int, int] | None = None, width: float = 1.0, num_classes: int | None = None, warmup: int = 5,
          iterations: int = 20, duration: float | None = None, trials: int = 5, json_out: str | Path | None = None,
          baseline: str | Path | None = None, max_regression: str | float = "10%",
          progress: Progress | None = None, trust_model_code: bool = False):
    """Latency, its spread and throughput per backend and batch, the backends timed interleaved
    (``segexport bench``); returns :class:`segexport.checks.bench.BenchResult` (``.warning``: the
    backends the spread cannot rank). CheckFailed when slower than ``baseline``."""
    from segexport.checks.bench import BenchOptions, run_bench

    batches = (batch,) if isinstance(batch, int) else tuple(batch)
    return run_bench(BenchOptions(model=model, onnx=_path(onnx), engine=_path(engine), backends=_names(backends),
                                  batch=batches, input_size=tuple(input_size) if input_size else None, width=width,
                                  num_classes=num_classes, warmup=warmup, iterations=iterations, duration=duration,
                                  trials=trials, json_out=_path(json_out), baseline=_path(baseline),
                                  max_regression=max_regression, trust_model_code=trust_model_code),
                     progress=progress)



def __getattr__(name: str):  # BenchResult lives with the bench step; named here for the API's users
    if name == "BenchResult":
        from segexport.checks.bench import BenchResult

        return BenchResult
    raise AttributeError(name)


def debug(*, reference: str | Path, candidate: str | Path, data: str = "synthetic", count: int = 4, seed: int = 0,
          frontier: int = 8, progress: Progress | None = None) -> Any:
    """The first PyTorch module whose output ``candidate`` (an fp16/int8 ONNX from :func:`calibrate`)
    gets wrong against ``reference`` (its fp32 export) (``segexport debug``): a
    :class:`segexport.checks.localize.Localization` with every module measured, the first diverging
    one, the labels it alone changes, and the flag to try."""
    from segexport.checks.localize import localize

    return localize(Path(reference), Path(candidate), data=str(data), count=count, seed=seed, frontier=frontier,
                    progress=progress)
