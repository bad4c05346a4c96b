"""``segexport calibrate``: one ``--precision`` for TensorRT 11 (precision in the ONNX) and
TensorRT 10 / Jetson (calibration cache), with the accuracy cost measured before any GPU.

fp16  -> overflow/underflow analysis, FP16 ONNX (float32 I/O), at-risk nodes kept FP32
int8  -> one calibration; Q/DQ ONNX (symmetric, per-channel, conv-family inputs) and a
         TensorRT calibration cache from the same ranges; with a budget, the most sensitive
         layers stay in float
best  -> every reduced candidate (budgeted int8, fp16) is built and measured; of those within
         the budget the one with the lowest ONNX Runtime CPU latency wins. CPU latency is a
         proxy (TensorRT's kernels rank differently), so the report lists every candidate
Every artefact gets a provenance sidecar; the reduced ONNX passes the TensorRT lint.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from segexport.core.graph import has_qdq
from segexport.core.precisions import CALIBRATION_TARGETS
from segexport.errors import CheckFailed, UserError

PRECISIONS = CALIBRATION_TARGETS  # the name older imports use
RANK_BY = ("ort-cpu", "tensorrt")


@dataclass
class CalibrateOptions:
    onnx: Path
    precision: str = "int8"
    data: str = "synthetic"
    labels: Path | None = None
    eval_data: str | None = None
    eval_labels: Path | None = None
    count: int = 32
    eval_count: int | None = None  # held-out synthetic samples; default max(8, count // 2)
    seed: int = 0
    # percentile (99.99): a real outlier clip at no search cost. ORT's "entropy" at its default bins
    # has one candidate threshold (minmax), and with a real KL search it clips heavy-tailed score/skip
    # tensors hard (figures: benchmarks/results/precision_cpu.json)
    method: str = "percentile"
    max_miou_drop: float | None = None
    max_agreement_drop: float | None = None
    out: Path | None = None
    trt_cache: Path | None = None
    trt_version: str | None = None
    # --precision best: "ort-cpu" = measured ONNX Runtime CPU latency (a proxy for a CPU
    # deployment); "tensorrt" = TensorRT's kernel speed order (int8, then fp16), for GPUs.
    rank_by: str = "ort-cpu"
    # PyTorch module names (fnmatch patterns; a module includes its submodules) kept in float: what
    # `segexport debug` suggests for the module it finds diverging
    keep_float: tuple[str, ...] = ()
    latency: bool = True  # the ONNX Runtime CPU latency proxy in the report (the pipeline benches instead)
    # segexport.core.targets name (--target): must agree with the export's recorded target; names the
    # cache header's TensorRT and is recorded in the output when the export recorded none
    target: str | None = None


@dataclass
class CalibrateResult:
    out: Path
    precision: str
    cost: float | None
    cost_kind: str
    kept_float: list = field(default_factory=list)
    fp16_blocked: list = field(default_factory=list)
    trt_cache: Path | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    pixel_agreement: float | None = None
    boundary_agreement: float | None = None
    miou: dict[str, float] = field(default_factory=dict)
    candidates: list[dict] = field(default_factory=list)  # --precision best: every precision tried
    calib_samples: int = 0  # what calibration used (a folder may hold fewer than --calib-count)
    lint_warnings: int = 0
    range_fallback: dict[str, str] = field(default_factory=dict)  # int8: tensor -> why minmax replaced --method
    gate: object = None  # segexport.calib.gate.Verdict: the accuracy gate's verdict (judged, passed, line)


Progress = Callable[..., None]  # progress(message, done=None, total=None)


def run_calibrate(opts: CalibrateOptions, progress: Progress | None = None) -> CalibrateResult:
    """Build the reduced ONNX (+ sidecar, + TensorRT cache for int8) and measure its cost.

    ``progress(message, done, total)`` is called as the steps advance (counts when known).
    """
    from segexport.exporter.metadata import read_record

    say = progress or (lambda *_a, **_k: None)
    if opts.precision not in PRECISIONS:
        raise UserError(f"--precision {opts.precision!r} is not one of {', '.join(PRECISIONS)}")
    if opts.rank_by not in RANK_BY:
        raise UserError(f"--rank-by {opts.rank_by!r} is not one of {', '.join(RANK_BY)}")
    if opts.precision == "fp16" and opts.trt_cache:
        raise UserError("--trt-cache holds INT8 ranges: use --precision int8 (or best) to write one")
    src = Path(opts.onnx)
    _check_numbers(opts)
    snapshot_dir = None
    try:
        # read the source once: a file replaced mid-run must not give an INT8 model of the new
        # weights with the old SHA-256 in its provenance; every later step reads this private copy
        snapshot_dir, snap, src_sha = _snapshot(src)
        record = read_record(snap)
        if record.precision != "fp32":
            raise UserError(f"{src.name} is already {record.precision}: calibrate the fp32 export")
        if record.argmax:
            raise UserError(f"{src.name} ends in ArgMax: calibrate an export without --argmax (logits are needed)")
        if opts.target is not None:
            from segexport.core.targets import resolve_target

            graph = onnx.load(str(snap), load_external_data=False)
            opset = next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), None)
            chosen = resolve_target(opts.target, record.target, src.name, opset=opset)
            record = replace(record, target=chosen.name if chosen is not None else None)
        out, cache_path = _output_paths(opts, src)
        return _calibrate(opts, record, src, snap, src_sha, out, cache_path, say)
    finally:
        if snapshot_dir is not None:
            from segexport.core.files import discard_temp

            discard_temp(snapshot_dir)


def _snapshot(src: Path) -> tuple[Path, Path, str]:
    """Copy ``src`` (and its external data files) into a private registered temp folder, hashing
    the very bytes copied. Returns (folder, copy, SHA-256)."""
    import hashlib
    import tempfile

    from segexport.core.files import new_temp
    from segexport.core.onnx_io import check_external_data, load_onnx

    graph = load_onnx(src)  # one-line errors for a missing/non-ONNX file, external data contained
    where = Path(tempfile.gettempdir())
    folder = new_temp(where / "segexport-calib", directory=True, where=where, suffix="")
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {str(src)!r} ({exc.strerror})") from exc
    snap = folder / src.name
    snap.write_bytes(data)
    for extra in check_external_data(graph, src):
        rel = extra.relative_to(src.parent)
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(extra.read_bytes())
    return folder, snap, hashlib.sha256(data).hexdigest()


def _calibrate(opts, record, src: Path, snap: Path, src_sha: str, out, cache_path, say) -> CalibrateResult:
    from segexport.calib.data import load_calibration_data

    say("loading calibration data")
    calib = load_calibration_data(opts.data, record.preprocess, count=opts.count, seed=opts.seed,
                                  num_classes=record.num_classes)
    evaluation = _evaluation(opts, record, snap, calib.inputs)
    budget, kind = _budget(opts, evaluation)
    evaluation.metric = "miou" if kind == "mIoU pt" else "agreement"

    model32 = onnx.load(str(snap))
    if opts.precision == "best":
        precision, built, candidates, int8 = _best(opts, record, snap, model32, calib.inputs, evaluation,
                                                   budget, kind, say)
    else:
        say(f"building {opts.precision}")
        precision = opts.precision
        built = _build(precision, opts, record, snap, model32, calib.inputs, evaluation, budget, say)
        candidates, int8 = [], built
    model = built["model"]
    if opts.precision != "best":  # best has judged its candidates against the budget already
        _check_budget(precision, model, built["cost"], budget, kind, explicit=_has_budget(opts))
    from segexport.exporter.metadata import write_record

    write_record(model, replace(record, precision=precision, source_onnx_sha256=src_sha))
    out = out or src.with_name(f"{src.stem}.{precision}.onnx")  # never the source: that one is fp32
    return _write_and_report(opts, model, precision, built, candidates, int8, record, src, snap, src_sha,
                             out, cache_path, calib, evaluation, kind, say)


def _write_and_report(opts, model, precision, built, candidates, int8: dict, record, src, snap, src_sha, out,
                      cache_path, calib, evaluation, kind, say) -> CalibrateResult:
    """Stage the ONNX, its sidecar and the TensorRT cache (+ sidecar), measure, then replace them
    all together: a failure or a Ctrl-C anywhere, the measuring step included, leaves the previous
    good outputs untouched. ``int8`` is the INT8 build (its ranges and float-kept layers make the
    cache), whichever precision ``--precision best`` chose."""
    calibration = int8.get("calibration")
    from segexport.calib.provenance import Provenance, sidecar_for, tool_versions, write_provenance
    from segexport.core.files import atomic_outputs

    cache = None
    if calibration is not None and (opts.trt_cache or (precision == "int8" and opts.trt_version)):
        cache = cache_path or src.with_suffix(".cache")
        from segexport.core.files import refuse_overwriting_inputs

        refuse_overwriting_inputs({"--out": out, "--trt-cache": cache}, [src])
    targets = [(out, "--out")] + ([(cache, "--trt-cache")] if cache is not None else [])
    sidecars = [(sidecar_for(p), flag) for p, flag in targets]
    with atomic_outputs(targets, sidecars=sidecars) as staged:
        onnx.save(model, str(staged[out]))
        say(f"checking the {precision} ONNX (ONNX checker, NVIDIA's parser where installed)")
        report = self_check(staged[out], precision, tensorrt=record.unpool != "native")
        result = CalibrateResult(out=out, precision=precision, cost=built["cost"], cost_kind=kind,
                                 kept_float=built.get("kept", []), fp16_blocked=built.get("blocked", []),
                                 lint_warnings=len(report.warnings), candidates=candidates,
                                 calib_samples=len(calib.inputs),
                                 range_fallback=dict(calibration.fallback) if calibration is not None else {})
        common = dict(source_onnx=str(src), source_onnx_sha256=src_sha, data_source=calib.source,
                      data_manifest_sha256=calib.manifest_sha256, count=len(calib.inputs),
                      method=opts.method if precision == "int8" else "range-analysis",
                      preprocess=record.preprocess.__dict__ | {}, versions=tool_versions())
        write_provenance(Provenance(artefact=str(out), kind=f"{precision}-onnx",
                                    extra={"kept_float": [k.__dict__ for k in result.kept_float],
                                           "fp16_blocked": [b.__dict__ for b in result.fp16_blocked],
                                           "range_fallback": result.range_fallback}, **common),
                         path=staged[sidecar_for(out)])
        if cache is not None:
            # the cache is for the fp32 ONNX (TensorRT 10 implicit INT8), whichever ONNX --precision best kept
            from segexport.calib.trt_cache import cache_version, write_cache

            version = cache_version(opts.trt_version, record.target)
            kept = [k.node for k in int8.get("kept", [])]
            amax, float_inputs = cache_ranges(snap, calibration.amax, kept)
            write_cache(staged[cache], amax, trt_version=version, algorithm=opts.method)
            write_provenance(Provenance(artefact=str(cache), kind="trt-cache",
                                        extra={"trt_version": version, "kept_float": kept,
                                               "ranges_left_out": float_inputs},
                                        **(common | {"method": opts.method})), path=staged[sidecar_for(cache)])
            result.trt_cache = cache
        say("measuring the accuracy and latency cost")
        _report(result, evaluation, snap, staged[out], record, opts)
        if not result.gate.passed:  # raised inside the staging: the failed artefact is never renamed into place
            raise CheckFailed(f"{out.name} not written: {result.gate.line}", result=result)
    return result


def self_check(path: Path, precision: str, *, tensorrt: bool = True):
    """Hold a freshly written reduced-precision ONNX to what a deployment will: ONNX's full
    checker (types and shapes, which catches duplicate or mistyped initializers) and the lint
    with NVIDIA's real parser when ``tensorrt``/``tensorrt_rtx`` is installed. A file that
    fails is never reported as a success (it is not renamed into place).

    ``tensorrt=False`` (an ``--unpool native`` export, which keeps ONNX MaxUnpool for ONNX Runtime
    and which TensorRT never parses, as ``segexport onnx`` says): only the findings that hold for
    any runtime fail it -- a comparison reading a reduced copy of its operand."""
    from segexport.errors import exception_line
    from segexport.exporter.lint import lint_model

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError, shape_inference.InferenceError
        raise CheckFailed(f"the {precision} ONNX segexport wrote is invalid ({exception_line(exc)[:300]}): "
                          "please report this with the source ONNX") from exc
    report = lint_model(path, parser="auto" if tensorrt else "none")
    errors = report.errors if tensorrt else [f for f in report.errors if f.code == "exact-compare-reduced"]
    if errors:
        raise CheckFailed(f"the {precision} ONNX fails the {'TensorRT ' if tensorrt else ''}lint: {errors[0].message}")
    return report


def _evaluation(opts, record, src: Path, calib_inputs: np.ndarray):
    from segexport.calib.mixed_precision import Evaluation, predict
    from segexport.core.metrics import label_count, miou

    labels = None
    if opts.eval_data or opts.labels or opts.eval_labels or str(opts.data) == "synthetic":
        if opts.eval_data == "synthetic" or (opts.eval_data is None and str(opts.data) == "synthetic"):
            from segexport.data.images import preprocess
            from segexport.data.synth import synthetic_arrays

            n_eval = opts.eval_count or max(8, opts.count // 2)
            images, labels = synthetic_arrays(n_eval, record.preprocess.input_size,
                                              label_count(record.num_classes), seed=opts.seed + 1000)  # held out from calibration
            inputs = np.stack([preprocess(im, record.preprocess) for im in images])
            labels = labels.astype(np.int64)
        else:
            from segexport.data.images import load_images, load_labels

            folder = opts.eval_data or opts.data
            inputs, files = load_images(folder, record.preprocess, limit=opts.eval_count, seed=opts.seed)
            lab_dir = opts.eval_labels or opts.labels
            labels = load_labels(lab_dir, files, record.preprocess.input_size, record.num_classes) if lab_dir else None
    else:
        inputs = calib_inputs
    ref, margin = predict(str(src), inputs, record.input_name, record.output_name, record.batch, margins=True)
    ref_miou = miou(ref, labels, record.num_classes) if labels is not None else None
    return Evaluation(inputs, labels, record.num_classes, ref, ref_miou, record.input_name, record.output_name,
                      record.batch, reference_margin=margin)


def cache_ranges(src: Path, amax: dict[str, float], kept_nodes: list[str]) -> tuple[dict[str, float], list[str]]:
    """The calibration ranges a TensorRT 10 cache gets: all but the activation inputs of the
    layers the budget keeps in float.

    Why: implicit INT8 runs a layer in INT8 whenever its tensors have ranges, so a cache with
    every range would quantize the layers the Q/DQ model keeps in float, and the accuracy cost
    measured here would not hold on the Jetson. Without its input's range TensorRT keeps the
    layer in higher precision. A tensor also read by a quantized layer loses its range too:
    that layer stays float as well, which costs speed, never accuracy.
    """
    if not kept_nodes:
        return dict(amax), []
    graph = onnx.load(str(src), load_external_data=False).graph
    kept = set(kept_nodes)
    inputs = sorted({n.input[0] for n in graph.node if n.name in kept and n.input})
    return {t: v for t, v in amax.items() if t not in inputs}, inputs


def _has_budget(opts) -> bool:
    return opts.max_miou_drop is not None or opts.max_agreement_drop is not None


def _check_numbers(opts) -> None:
    """Budgets, counts and the cache version, before any work is done."""
    import math

    for flag, value in (("--max-miou-drop", opts.max_miou_drop), ("--max-agreement-drop", opts.max_agreement_drop)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UserError(f"{flag} must be a number >= 0 (a drop vs fp32), got {value}")
    from segexport.core.limits import check_count, check_seed

    check_seed(opts.seed)
    if opts.eval_count is not None and opts.eval_count < 1:
        raise UserError(f"--eval-count must be >= 1, got {opts.eval_count}")
    if opts.eval_count is not None:
        check_count(opts.eval_count, "--eval-count")
    if opts.trt_version is not None:
        from segexport.calib.trt_cache import version_code

        version_code(opts.trt_version)


def _output_paths(opts, src: Path) -> tuple[Path | None, Path | None]:
    """--out and --trt-cache, checked before the work: writable, and neither the source ONNX nor each other."""
    from segexport.core.files import check_output_path

    out = check_output_path(opts.out, "--out") if opts.out is not None else None
    cache = check_output_path(opts.trt_cache, "--trt-cache") if opts.trt_cache is not None else None
    for flag, path in (("--out", out), ("--trt-cache", cache)):
        if path is not None and path.resolve() == src.resolve():
            raise UserError(f"{flag} {str(path)!r} is the source ONNX: writing it would destroy the fp32 model; "
                            f"choose another {flag}")
    if out is not None and cache is not None and out.resolve() == cache.resolve():
        raise UserError("--out and --trt-cache name the same file: give the cache its own name (e.g. model.cache)")
    from segexport.calib.provenance import sidecar_for
    from segexport.core.files import refuse_overwriting_inputs

    data = Path(opts.data) if opts.data and str(opts.data) != "synthetic" else None
    refuse_overwriting_inputs({"--out": out, "--trt-cache": cache,
                               "--out sidecar": sidecar_for(out) if out else None,
                               "--trt-cache sidecar": sidecar_for(cache) if cache else None},
                              [src, data, opts.labels, opts.eval_data if opts.eval_data != "synthetic" else None,
                               opts.eval_labels])
    return out, cache


def _check_budget(precision: str, model: onnx.ModelProto, cost: float, budget: float, kind: str, *,
                  explicit: bool) -> None:
    """A budget the user set is a check (exit 1, nothing written); an INT8 model with every
    layer kept in float is no INT8 model, budget or not."""
    if precision == "int8" and not has_qdq(model):
        raise CheckFailed(f"no layer can run in INT8 within the budget of {budget:g} {kind}: "
                          "raise the budget, or use --precision fp16")
    if explicit and cost > budget:
        raise CheckFailed(f"{precision} costs {cost:.3f} {kind}, over the budget of {budget:g}: "
                          "raise the budget, or try --precision best")


def _budget(opts, evaluation) -> tuple[float, str]:
    if opts.max_miou_drop is not None:
        if evaluation.labels is None:
            raise UserError("--max-miou-drop needs labels (--labels, --eval-labels or --data synthetic); "
                            "without labels use --max-agreement-drop")
        return opts.max_miou_drop, "mIoU pt"
    if opts.max_agreement_drop is not None:
        return opts.max_agreement_drop, "% agreement"
    return (1.0, "mIoU pt") if evaluation.labels is not None else (1.0, "% agreement")


def keep_float_nodes(model: onnx.ModelProto, patterns) -> list[str]:
    """Nodes of the modules ``patterns`` name (``head``, ``decoder.*``; a module includes its
    submodules). A pattern that names no module is refused with a few names that exist."""
    from fnmatch import fnmatchcase

    from segexport.core.graph import module_of

    if not patterns:
        return []
    owner = {n.name: module_of(n) for n in model.graph.node if n.name}
    picked: list[str] = []
    for pattern in patterns:
        hits = [n for n, m in owner.items() if m and (fnmatchcase(m, pattern) or fnmatchcase(m, f"{pattern}.*"))]
        if not hits:
            known = sorted({m for m in owner.values() if m})
            raise UserError(f"--keep-float {pattern!r} names no module of this ONNX (e.g. {', '.join(known[:4])}): "
                            "use the names `segexport debug` prints")
        picked += [h for h in hits if h not in picked]
    return picked


def _build(precision, opts, record, src, model32, calib_inputs, evaluation, budget, say) -> dict:
    from segexport.calib.mixed_precision import KeptLayer
    from segexport.core.graph import module_of

    keep = keep_float_nodes(model32, opts.keep_float)
    modules = {n.name: module_of(n) for n in model32.graph.node}
    forced = [KeptLayer(n, modules.get(n, ""), 0.0, 0.0, reason="--keep-float") for n in keep]
    if precision == "fp16":
        from segexport.calib.fp16 import convert_fp16, find_risks, tensor_ranges

        risks = find_risks(model32, tensor_ranges(model32, calib_inputs, record.input_name, record.batch))
        from segexport.calib.fp16 import RangeRisk

        risks += [RangeRisk(n, next((x.op_type for x in model32.graph.node if x.name == n), ""), modules.get(n, ""),
                            0.0, "--keep-float") for n in keep if n not in {r.node for r in risks}]
        with warnings.catch_warnings():
            # onnxconverter-common warns "-inf will be truncated" for the infinities it keeps as they are
            # (ceil-pool padding), and about sub-1e-7 weights it rounds; the range analysis above is the check
            warnings.simplefilter("ignore", UserWarning)
            model = convert_fp16(model32, [r.node for r in risks])
        return {"model": model, "cost": evaluation.cost(model), "blocked": risks}
    from segexport.calib.int8 import calibrate, quantize_qdq

    calibration = calibrate(src, calib_inputs, method=opts.method, input_name=record.input_name, batch=record.batch,
                            progress=lambda done, total: say(f"calibrating ({opts.method})", done, total))
    if opts.max_miou_drop is not None or opts.max_agreement_drop is not None or opts.precision == "best":
        from segexport.calib.mixed_precision import budgeted_int8

        mixed = budgeted_int8(str(src), calibration, evaluation, budget, progress=say, keep=keep)
        return {"model": mixed.model, "cost": mixed.cost, "kept": forced + mixed.kept_float, "calibration": calibration}
    model = quantize_qdq(src, calibration, exclude=keep)
    return {"model": model, "cost": evaluation.cost(model), "kept": forced, "calibration": calibration}


def _best(opts, record, src, model32, calib_inputs, evaluation, budget, kind, say):
    """The fastest of the reduced precisions within the budget.

    Both candidates are built in full (int8 with the budget's float layers) and timed in ONNX
    Runtime on the CPU. With ``rank_by="ort-cpu"`` that measurement decides: right for a CPU
    deployment and the only latency this machine can measure, but only a proxy for a GPU
    (ORT's CPU INT8 kernels gain little on small convolutions). ``rank_by="tensorrt"`` ranks
    by TensorRT's kernel speed order instead (int8 before fp16) and still reports the timings.
    """
    built_by, table = {}, []
    for precision in ("int8", "fp16"):
        say(f"building {precision}")
        built = _build(precision, opts, record, src, model32, calib_inputs, evaluation, budget, say)
        say(f"timing {precision} (ONNX Runtime CPU)")
        latency = ort_latency_ms(built["model"], record)
        built_by[precision] = built
        reduced = precision != "int8" or has_qdq(built["model"])
        table.append({"precision": precision, "cost": built["cost"], "within_budget": reduced and built["cost"] <= budget,
                      "ort_cpu_ms": latency, "kept_float": len(built.get("kept", [])) + len(built.get("blocked", []))})
    fine = [row for row in table if row["within_budget"]]
    if not fine:
        costs = ", ".join(f"{row['precision']} {row['cost']:.3f}" for row in table)
        raise CheckFailed(f"no reduced precision holds the budget of {budget} {kind} ({costs}): "
                          "deploy the fp32 ONNX or raise the budget")
    order = {"int8": 0, "fp16": 1}
    rank = (lambda row: row["ort_cpu_ms"]) if opts.rank_by == "ort-cpu" else (lambda row: order[row["precision"]])
    best = min(fine, key=rank)
    return best["precision"], built_by[best["precision"]], table, built_by["int8"]


def _report(result: CalibrateResult, evaluation, src: Path, out: Path, record, opts) -> None:
    """The figures of the written candidate, and the accuracy gate's verdict on them."""
    from segexport.calib.gate import judge
    from segexport.calib.mixed_precision import graph_digest, predict
    from segexport.core.metrics import compare, miou

    written = evaluation.predictions.get(graph_digest(onnx.load(str(out))))  # the file holds the costed graph
    pred, margin = written if written is not None else predict(str(out), evaluation.inputs, record.input_name,
                                                               record.output_name, record.batch, margins=True)
    parity = compare(evaluation.reference_labels, pred)
    result.pixel_agreement = parity.pixel_agreement
    result.boundary_agreement = parity.boundary_agreement
    drop = None
    if evaluation.labels is not None:
        result.miou = {"fp32": evaluation.reference_miou, result.precision: miou(pred, evaluation.labels, record.num_classes)}
        drop = result.miou["fp32"] - result.miou[result.precision]
    result.gate = judge(result.precision, reference_labels=evaluation.reference_labels, candidate_labels=pred,
                        reference_margin=evaluation.reference_margin, miou_drop=drop,
                        max_agreement_drop=opts.max_agreement_drop, max_miou_drop=opts.max_miou_drop,
                        candidate_nonfinite=int((~np.isfinite(margin)).sum()))
    if opts.latency:
        result.latency_ms = {"fp32": ort_latency_ms(src, record), result.precision: ort_latency_ms(out, record)}


def ort_latency_ms(model: Path | onnx.ModelProto, record, iterations: int = 10) -> float:
    """Median ORT CPU latency (ms) at the export shape: a proxy, not a GPU figure."""
    from segexport.core.sessions import ort_session

    sess = ort_session(model)
    shape = record.profile_shapes()[record.input_name][1]
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    sess.run(None, {record.input_name: x})
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        sess.run(None, {record.input_name: x})
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return float(np.median(times))


def judge_reduced(reduced: Path, reference: Path | None = None, *, count: int = 16, seed: int = 0,
                  max_agreement_drop: float | None = None, max_miou_drop: float | None = None):
    """The accuracy gate of an already written reduced ONNX, re-measured against its fp32 source
    (what ``deploy`` does before packaging one): held-out synthetic images, the gate's limits.

    ``reference`` defaults to the source named by the provenance sidecar; either way its SHA-256
    must be the one the reduced ONNX records, so the verdict is about this pair and no other.
    Returns the :class:`segexport.calib.gate.Verdict`.
    """
    from segexport.calib.gate import judge
    from segexport.calib.mixed_precision import predict
    from segexport.core.hashing import sha256_file
    from segexport.core.metrics import miou
    from segexport.exporter.metadata import read_record

    from segexport.core.graph import held_precision
    from segexport.core.onnx_io import load_onnx

    reduced = Path(reduced)
    graph = load_onnx(reduced)
    record = read_record(graph)
    precision = held_precision(graph)  # the graph's word, not the metadata's
    if precision == "fp32":
        precision = record.precision if record.precision != "fp32" else "int8"
    if not record.source_onnx_sha256:
        raise UserError(f"{reduced.name} holds {precision} but records no source ONNX SHA-256, so no fp32 export "
                        "can be verified as its source: recalibrate it with `segexport calibrate`")
    if reference is None:
        reference = _recorded_source(reduced)
    if reference is None or not Path(reference).is_file():
        raise UserError(f"{reduced.name} is {record.precision} and its fp32 source is not found (looked for the "
                        f"provenance sidecar {reduced.name}.json's source_onnx): pass --reference FP32.onnx, the "
                        "export it was calibrated from, so its accuracy can be checked before it ships")
    if sha256_file(reference) != record.source_onnx_sha256:
        raise UserError(f"--reference {str(reference)!r} is not the ONNX {reduced.name} was calibrated from "
                        f"(SHA-256 differs from {record.source_onnx_sha256[:12]}…): pass that export")
    ref_graph = load_onnx(Path(reference))
    ref_record = read_record(ref_graph)
    if held_precision(ref_graph) != "fp32":
        raise UserError(f"--reference {str(reference)!r} is not an fp32 ONNX: pass the fp32 export")
    opts = CalibrateOptions(onnx=Path(reference), precision=precision, data="synthetic", eval_count=count,
                            seed=seed)
    evaluation = _evaluation(opts, ref_record, Path(reference), np.empty((0,)))
    pred, margin = predict(str(reduced), evaluation.inputs, record.input_name, record.output_name, record.batch,
                           margins=True)
    drop = None
    if evaluation.labels is not None:
        drop = evaluation.reference_miou - miou(pred, evaluation.labels, record.num_classes)
    return judge(precision, reference_labels=evaluation.reference_labels, candidate_labels=pred,
                 reference_margin=evaluation.reference_margin, miou_drop=drop,
                 max_agreement_drop=max_agreement_drop, max_miou_drop=max_miou_drop,
                 candidate_nonfinite=int((~np.isfinite(margin)).sum()))


def _recorded_source(reduced: Path) -> Path | None:
    """The fp32 source a provenance sidecar names (relative to the sidecar), or None."""
    import json

    from segexport.calib.provenance import sidecar_for

    side = sidecar_for(reduced)
    try:
        raw = json.loads(side.read_text()) if side.is_file() else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    name = raw.get("source_onnx") if isinstance(raw, dict) else None
    if not isinstance(name, str) or not name or len(name) > 4096:
        return None
    return side.parent / name
