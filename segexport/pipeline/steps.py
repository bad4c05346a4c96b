"""The only module of the pipeline that calls the steps' library functions.

One small function a step, each taking paths and the model's settings and returning a
:class:`Outcome` of plain figures (JSON data) and a verdict. Export, calibrate, lint and engine
go through the public API (``segexport.api``), as a user's script would. Two steps call the
library below it, for reasons of their own: parity needs a "skip" verdict when no candidate
backend can run here (the API raises instead), and bench measures the latency gate's
alternating trials (:func:`segexport.checks.latency.measure_trials`: fresh runners every trial,
the fastest iteration the gate judges), where ``segexport bench`` interleaves its backends too
but keeps each runner for the run and reports per-iteration percentiles with their spread.
A step raises :class:`~segexport.errors.UserError` for input it cannot work with; the runner
records that as the step's error and goes on with the other units.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from segexport.errors import CheckFailed, UserError
from segexport.pipeline.config import ModelEntry, Settings, _size

if TYPE_CHECKING:
    from segexport.checks.memo import RunMemo


@dataclass
class Outcome:
    verdict: str  # "pass", "fail" or "skip"
    figures: dict = field(default_factory=dict)
    message: str = ""
    files: dict[str, Path] = field(default_factory=dict)  # name (relative to the model's folder) -> path


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _rel(base: Path, value: str | None) -> Path | None:
    return None if value is None else base / value


def _model_ref(ref: str, base: Path) -> str:
    """A ``file.py:factory`` reference is relative to the config; passed on relative to the
    working directory (not absolute), since the name is recorded in the ONNX metadata and an
    absolute path would make the bytes depend on where the repository was checked out."""
    if ".py:" not in ref:
        return ref
    import os

    path, _, factory = ref.rpartition(":")
    return f"{os.path.relpath(base / path)}:{factory}"


def export(entry: ModelEntry, s: Settings, out: Path, base: Path) -> Outcome:
    """fp32 ONNX, linted and verified against PyTorch (a failed verification writes nothing)."""
    from segexport import api

    hw = None
    if entry.hw_range:
        lo, _, hi = entry.hw_range.partition(":")
        hw = (_size(lo), _size(hi))
    br = None
    if entry.batch_range:
        lo, _, hi = entry.batch_range.partition(":")
        br = (int(lo), int(hi))
    try:
        result = api.export(
            model=_model_ref(entry.model, base), out=out, weights=_rel(base, entry.weights),
            num_classes=entry.num_classes, width=entry.width, model_args=dict(entry.model_args),
            input_size=_size(entry.input_size) if entry.input_size else None, batch=entry.batch,
            dynamic=entry.dynamic_axes, hw_range=hw, batch_range=br, opset=s.opset, target=s.target,
            unpool=s.unpool).details
    except CheckFailed as exc:
        return Outcome("fail", message=str(exc))
    rows = [{"shape": list(r.shape), "pixel_agreement": r.metrics.pixel_agreement,
             "max_abs": _finite(r.metrics.max_abs), "held_to_floor": r.held_to_floor, "passed": r.passed,
             "checks_nothing": r.checks_nothing}
            for r in result.verify or []]
    return Outcome("pass", {"nodes": sum(result.onnx_ops.values()), "verify": rows}, files={out.name: out})


def calibrate(src: Path, out: Path, precision: str, s: Settings, base: Path) -> Outcome:
    """fp16/int8/best ONNX (+ its provenance sidecar, + the TensorRT cache for int8). The step's
    verdict is calibrate's accuracy gate: a reduced model past its limits fails, with its figures."""
    from segexport import api

    data = s.calib_data if s.calib_data == "synthetic" else str(base / s.calib_data)
    cache = out.with_suffix(".cache") if precision in ("int8", "best") else None
    try:
        r = api.calibrate(onnx=src, precision=precision, data=data, labels=_rel(base, s.calib_labels),
                          calib_count=s.calib_count, method=s.calib_method, max_miou_drop=s.max_miou_drop,
                          max_agreement_drop=s.max_agreement_drop, out=out, trt_cache=cache, target=s.target,
                          latency=False).details  # the bench step measures latency
    except CheckFailed as exc:
        figures = _calibration_figures(exc.result) if exc.result is not None else {}
        return Outcome("fail", figures, message=str(exc))
    files = {out.name: out, out.name + ".json": Path(str(out) + ".json")}
    if r.trt_cache:
        files[r.trt_cache.name] = r.trt_cache
        files[r.trt_cache.name + ".json"] = Path(str(r.trt_cache) + ".json")
    return Outcome("pass", _calibration_figures(r), message=r.gate.line if r.gate is not None else "", files=files)


def _calibration_figures(r) -> dict:
    """What report.md shows of a calibration: agreement with fp32 (all pixels, confident pixels),
    ΔmIoU with labels, and whether the gate judged at all."""
    gate = r.gate
    drop = None
    if r.miou and "fp32" in r.miou and r.precision in r.miou:
        drop = _finite(r.miou["fp32"] - r.miou[r.precision])
    return {"chosen": r.precision, "cost": _finite(r.cost), "cost_kind": r.cost_kind,
            "pixel_agreement": r.pixel_agreement, "miou": r.miou, "miou_drop": drop,
            "kept_float": [k.module or k.node for k in r.kept_float],
            "gate": None if gate is None else {"judged": gate.judged, "passed": gate.passed,
                                               "confident_agreement": gate.confident_agreement,
                                               "confident_fraction": gate.confident_fraction, "line": gate.line}}


def lint(onnx: Path) -> Outcome:
    """TensorRT op-support lint; the real parser (TensorRT / TensorRT-RTX) runs where installed."""
    from segexport import api

    try:
        report = api.lint(onnx=onnx).report
    except CheckFailed as exc:
        report = exc.result.report
    figures = {"errors": len(report.errors), "warnings": len(report.warnings), "parser": report.parser,
               "parser_skipped": report.parser_skipped}
    if report.errors:
        return Outcome("fail", figures, report.errors[0].message)
    return Outcome("pass", figures)


def engine(onnx: Path, out: Path, s: Settings) -> Outcome:
    """An engine where a builder is installed (TensorRT, else TensorRT-RTX ahead of time)."""
    from segexport import api
    from segexport.engines.runtime import find_flavour

    backend = {"auto": "auto", "trt": "trt", "trt-rtx": "rtx"}[s.engine]
    if backend == "auto" and find_flavour("auto") is None:
        return Outcome("skip", message="no TensorRT or TensorRT-RTX installed (pip install segexport[rtx])")
    if s.target is not None and backend == "auto":  # a Jetson target's engine is built on the Jetson, not here
        from segexport.core.targets import builder_mismatch, get_target

        flavour = find_flavour("auto")
        why = flavour and builder_mismatch(get_target(s.target), flavour.backend, flavour.version)
        if why:
            return Outcome("skip", message=f"{why.removeprefix('--')}")
    built = api.build_engine(onnx=onnx, out=out, backend=backend, target_cc=tuple(s.engine_targets or ()),
                             target=s.target)
    info, side = built.info, built.sidecar
    return Outcome("pass", {"backend": info.backend, "tensorrt": info.tensorrt_version, "precision": info.precision,
                            "bytes": info.engine_bytes}, files={out.name: out, side.name: side})


def parity(onnx: Path, entry: ModelEntry, s: Settings, base: Path, memo: RunMemo | None = None) -> Outcome:
    """Label agreement, boundary band and mIoU (with labels) of ONNX Runtime vs PyTorch. ``memo``:
    the run's PyTorch model, reference outputs and noise floor, shared by the model's variants."""
    from segexport.checks.parity import ParityOptions, run_parity

    _record_of(onnx, entry)
    files, held_out, note = _parity_inputs(s, base)
    report = run_parity(ParityOptions(
        onnx=onnx, model=_model_ref(entry.model, base), weights=_rel(base, entry.weights), backends=tuple(s.parity_backends),
        images=_rel(base, s.parity_images), labels=_rel(base, s.parity_labels), count=s.parity_count,
        thresholds=dict(s.thresholds or {}), synthetic=not s.parity_images and not files, image_files=tuple(files),
        model_args=dict(entry.model_args), memo=memo))
    if not report.pairs:
        return Outcome("skip", {"skipped": report.skipped}, "no parity backend can run here: "
                       + "; ".join(f"{k}: {v}" for k, v in report.skipped.items()))
    pair = report.pairs[0]
    m = pair.metrics
    drop = None if pair.miou_reference is None else pair.miou_reference - pair.miou_candidate
    figures = {"candidate": pair.candidate, "inputs": note or report.inputs, "pixel_agreement": m.pixel_agreement,
               "boundary_agreement": _finite(m.boundary_agreement), "max_abs": _finite(m.max_abs),
               "miou_reference": pair.miou_reference, "miou": pair.miou_candidate, "miou_drop": drop,
               "held_to_floor": pair.held_to_floor,
               "checks": [{"name": c.name, "value": _finite(float(c.value)), "limit": _finite(float(c.limit)),
                           "passed": c.passed} for p in report.pairs for c in p.checks]}
    failed = [c for p in report.pairs for c in p.checks if not c.passed]
    return Outcome("fail" if failed else "pass", figures, failed[0].message if failed else "")


def _parity_inputs(s: Settings, base: Path) -> tuple[list[Path], bool, str]:
    """What parity is judged on: ``parity_images`` when given; else the calibration folder's images
    that calibration did not use (real images beat synthetic ones); else held-out synthetic images
    (flat regions and ties, which random noise never has). Returns (files, held out, what to say)."""
    if s.parity_images:
        return [], True, ""
    calib = s.calib_data
    if calib and calib != "synthetic" and (base / calib).is_dir():
        from segexport.data.images import held_out_images

        files, held_out = held_out_images(base / calib, calib_count=s.calib_count, count=s.parity_count)
        what = "held out from calibration" if held_out else "the calibration images themselves (none held out)"
        return files, held_out, f"{len(files)} images of calib_data, {what}"
    return [], True, ""


def _record_of(onnx: Path, entry: ModelEntry):
    """The ONNX's export record, held to the config entry it must have come from.

    The model a step rebuilds is always the config's (which the trust check covered), never the
    one an artefact records: the artefact may come from a cache or a shard another job wrote, and
    a file never names code that runs. A record that disagrees with the entry is a damaged artefact.
    """
    from segexport.exporter.metadata import read_record
    from segexport.models.registry import is_zoo_name

    record = read_record(onnx)
    zoo = is_zoo_name(entry.model)  # a user factory may choose its own class count
    wrong = [f"{k} {got!r} (the config says {want!r})" for k, got, want in (
        ("model", record.model, entry.model if zoo else record.model), ("width", record.width, entry.width),
        ("num_classes", record.num_classes, entry.num_classes if zoo else record.num_classes)) if got != want]
    if wrong:
        raise UserError(f"{onnx.name} records {'; '.join(wrong)[:200]}: it was not exported from this config entry "
                        "(a damaged cache entry or shard?): delete it from the cache and re-run")
    return record


def bench(onnx: Path, entry: ModelEntry, s: Settings, base: Path, memo: RunMemo | None = None) -> Outcome:
    """Interleaved trials of every backend (PyTorch eager in the same trials, for the ratio the
    latency gate uses); figures hold each trial's median so a later run can judge robustly."""
    import numpy as np

    from segexport.checks.latency import measure_trials
    from segexport.checks.runners import available_backends

    record = _record_of(onnx, entry)
    size = tuple(record.preprocess.input_size)
    reasons = available_backends()
    names = [b for b in s.bench_backends if not reasons.get(b)]
    skipped = {b: reasons[b] for b in s.bench_backends if reasons.get(b)}
    if not [b for b in names if not b.startswith("torch")]:
        return Outcome("skip", {"skipped": skipped}, "no artefact backend can run here: "
                       + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    torch_model = None
    if any(b.startswith("torch") for b in names):
        from segexport.checks.memo import RunMemo

        # the same build parity's reference uses, so one run builds each model once
        torch_model = (memo or RunMemo()).model(
            _model_ref(entry.model, base), num_classes=record.num_classes, width=record.width,
            model_args=dict(entry.model_args), output_key=record.output_key, upsample_logits=record.upsample_logits,
            weights=_rel(base, entry.weights)).model
    rng = np.random.default_rng(0)
    results = {}
    for b in s.bench_batches:
        if "batch" not in record.dynamic and b != record.batch:
            skipped[f"b{b}"] = f"the ONNX's batch is fixed at {record.batch}"
            continue
        feed = {record.input_name: rng.standard_normal((b, 3, *size), dtype=np.float32)}
        runners = runner_factories(names, onnx, torch_model, record.output_name, s.bench_threads)
        with torch_threads(s.bench_threads):
            budget = (s.bench_budget_s / len(s.bench_batches)) if s.bench_budget_s else None  # per variant
            results[str(b)] = measure_trials(runners, feed, batch=b, trials=s.bench_trials, warmup=s.bench_warmup,
                                             iterations=s.bench_iterations, budget_s=budget)
    return Outcome("pass", {"input_size": list(size), "batches": results, "skipped": skipped,
                            "cpu_threads": s.bench_threads or "library default"})


def runner_factories(names: list[str], onnx: Path, torch_model, output_name: str, threads: int) -> dict:
    """name -> factory of a fresh runner. With ``threads`` (> 0) the CPU backends run that many
    intra-op threads. Why 1 by default: on a shared 2-core runner a two-thread inference waits
    for both cores at once, so under load even its fastest iteration moved by +43 % on unchanged
    code (benchmarks/results/latency_gate_cpu.json), while one thread's fastest iteration holds."""
    from segexport.checks.runners import make_runner

    def ort_cpu():
        import onnxruntime as ort
        from polygraphy.backend.onnxrt import OnnxrtRunner

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        return OnnxrtRunner(lambda: ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"]),
                            name="ort-cpu")

    return {n: ort_cpu if (n == "ort-cpu" and threads) else
            (lambda n=n: make_runner(n, onnx_path=onnx, model=torch_model, output_name=output_name)) for n in names}


@contextmanager
def torch_threads(threads: int):
    """PyTorch's CPU intra-op threads for the block (its own setting restored after)."""
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def deploy_available() -> bool:
    """Whether segexport.deploy (Triton / DeepStream bundles) can be imported here."""
    try:
        import segexport.deploy  # noqa: F401
    except ImportError:
        return False
    return True


def deploy(onnx: Path, engine_path: Path | None, kinds: list[str], out_dir: Path, s: Settings | None = None) -> Outcome:
    """Triton / DeepStream bundles from segexport.deploy (issue 15), imported only when asked for."""
    try:
        import segexport.deploy as deploy_mod
    except ImportError:
        raise UserError("deploy bundles need segexport.deploy, which this install lacks: "
                        "remove `deploy` from the config or upgrade segexport") from None
    from segexport.engines.builder import read_engine_info

    # Bundles carry TensorRT engines only: a TensorRT-RTX plan proves the build here but is not what
    # Triton's tensorrt_plan or DeepStream load, so the bundle then ships the ONNX + build_engine.sh.
    left_out = engine_path is not None and read_engine_info(engine_path).backend != "trt"
    if left_out:
        engine_path = None
    files: dict[str, Path] = {}
    for kind in kinds:
        fn = getattr(deploy_mod, f"deploy_{kind}", None)
        if fn is None:
            raise UserError(f"segexport.deploy has no deploy_{kind}: remove {kind!r} from `deploy` or upgrade segexport")
        target = out_dir / f"{onnx.stem}.{kind}"
        limits = {} if s is None else {"max_agreement_drop": s.max_agreement_drop, "max_miou_drop": s.max_miou_drop}
        try:  # a reduced ONNX is re-judged against its fp32 source before it is bundled
            fn(onnx, target, **limits) if engine_path is None else fn(onnx, target, engine=engine_path, **limits)
        except CheckFailed as exc:
            return Outcome("fail", {"bundles": kinds}, message=str(exc))
        for f in sorted(p for p in target.rglob("*") if p.is_file()):
            files[f.relative_to(out_dir).as_posix()] = f
    return Outcome("pass", {"bundles": kinds, "engine_in_bundle": engine_path is not None,
                            **({"note": "TensorRT-RTX plan not bundled: build on the target with build_engine.sh"}
                               if left_out else {})}, files=files)
