"""``segexport calibrate``: one ``--precision`` for TensorRT 11 (precision in the ONNX) and
TensorRT 10 / Jetson (calibration cache), with the accuracy cost measured before any GPU.

fp16  -> overflow/underflow analysis, FP16 ONNX (float32 I/O), at-risk nodes kept FP32
int8  -> one calibration; Q/DQ ONNX (symmetric, per-channel, conv-family inputs) and a
         TensorRT calibration cache from the same ranges; with a budget, the most sensitive
         layers stay in float
best  -> the lowest precision (int8, else fp16, else fp32) within the budget: TensorRT's
         speed order on NVIDIA GPUs; ORT CPU latency is measured and reported as a proxy only
Every artefact gets a provenance sidecar; the reduced ONNX passes the TensorRT lint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from segexport.errors import CheckFailed, UserError

PRECISIONS = ("fp16", "int8", "best")


@dataclass
class CalibrateOptions:
    onnx: Path
    precision: str = "int8"
    data: str = "synthetic"
    labels: Path | None = None
    eval_data: str | None = None
    eval_labels: Path | None = None
    count: int = 32
    seed: int = 0
    method: str = "entropy"
    max_miou_drop: float | None = None
    max_agreement_drop: float | None = None
    out: Path | None = None
    trt_cache: Path | None = None
    trt_version: str | None = None


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
    miou: dict[str, float] = field(default_factory=dict)
    lint_warnings: int = 0


def run_calibrate(opts: CalibrateOptions, progress=None) -> CalibrateResult:
    from segexport.calib.data import load_calibration_data
    from segexport.exporter.metadata import read_record
    from segexport.models.loading import sha256_file

    say = progress or (lambda _m: None)
    if opts.precision not in PRECISIONS:
        raise UserError(f"--precision {opts.precision!r} is not one of {', '.join(PRECISIONS)}")
    src = Path(opts.onnx)
    if not src.is_file():
        raise UserError(f"ONNX file {str(src)!r} not found")
    record = read_record(src)
    if record.precision != "fp32":
        raise UserError(f"{src.name} is already {record.precision}: calibrate the fp32 export")
    if record.argmax:
        raise UserError(f"{src.name} ends in ArgMax: calibrate an export without --argmax (logits are needed)")
    src_sha = sha256_file(src)
    say("loading calibration data")
    calib = load_calibration_data(opts.data, record.preprocess, count=opts.count, seed=opts.seed,
                                  num_classes=record.num_classes)
    evaluation = _evaluation(opts, record, src, calib.inputs)
    budget, kind = _budget(opts, evaluation)

    model32 = onnx.load(str(src))
    candidates = ["int8", "fp16"] if opts.precision == "best" else [opts.precision]
    chosen = None
    for precision in candidates:
        say(f"building {precision}")
        built = _build(precision, opts, record, src, model32, calib.inputs, evaluation, budget, say)
        if opts.precision != "best" or built["cost"] is None or built["cost"] <= budget:
            chosen = (precision, built)
            break
    if chosen is None:
        raise CheckFailed(f"no reduced precision holds the budget ({budget} {kind}): int8/fp16 cost more; deploy fp32")
    precision, built = chosen
    model = built["model"]
    from segexport.exporter.metadata import write_record

    write_record(model, replace(record, precision=precision, source_onnx_sha256=src_sha))
    out = Path(opts.out or src.with_name(f"{src.stem}.{precision}.onnx"))
    from segexport.cli.common import atomic_output
    from segexport.exporter.lint import lint_model

    with atomic_output(out) as tmp:
        onnx.save(model, str(tmp))
        report = lint_model(tmp, parser="none")
        if report.errors:
            raise CheckFailed(f"the {precision} ONNX fails the TensorRT lint: {report.errors[0].message}")
    result = CalibrateResult(out=out, precision=precision, cost=built["cost"], cost_kind=kind,
                             kept_float=built.get("kept", []), fp16_blocked=built.get("blocked", []),
                             lint_warnings=len(report.warnings))
    from segexport.calib.provenance import Provenance, tool_versions, write_provenance

    common = dict(source_onnx=str(src), source_onnx_sha256=src_sha, data_source=calib.source,
                  data_manifest_sha256=calib.manifest_sha256, count=len(calib.inputs),
                  method=opts.method if precision == "int8" else "range-analysis",
                  preprocess=record.preprocess.__dict__ | {}, versions=tool_versions())
    write_provenance(Provenance(artefact=str(out), kind=f"{precision}-onnx",
                                extra={"kept_float": [k.__dict__ for k in result.kept_float],
                                       "fp16_blocked": [b.__dict__ for b in result.fp16_blocked]}, **common))
    if precision == "int8" and (opts.trt_cache or opts.trt_version):
        from segexport.calib.trt_cache import DEFAULT_TRT_VERSION, write_cache
        from segexport.engines.runtime import available

        installed = available("trt")
        version = opts.trt_version or (installed.version if installed else DEFAULT_TRT_VERSION)
        cache = Path(opts.trt_cache or src.with_suffix(".cache"))
        write_cache(cache, built["calibration"].amax, trt_version=version, algorithm=opts.method)
        write_provenance(Provenance(artefact=str(cache), kind="trt-cache", extra={"trt_version": version}, **common))
        result.trt_cache = cache
    say("measuring the accuracy and latency cost")
    _report(result, evaluation, src, out, record)
    return result


def _evaluation(opts, record, src: Path, calib_inputs: np.ndarray):
    from segexport.calib.mixed import Evaluation, predict
    from segexport.checks.metrics import miou

    labels = None
    if opts.eval_data or opts.labels or opts.eval_labels or str(opts.data) == "synthetic":
        if opts.eval_data == "synthetic" or (opts.eval_data is None and str(opts.data) == "synthetic"):
            from segexport.data.images import preprocess
            from segexport.data.synth import synthetic_arrays

            images, labels = synthetic_arrays(max(8, opts.count // 2), record.preprocess.input_size,
                                              record.num_classes, seed=opts.seed + 1000)  # held out from calibration
            inputs = np.stack([preprocess(im, record.preprocess) for im in images])
            labels = labels.astype(np.int64)
        else:
            from segexport.data.images import load_images, load_labels

            folder = opts.eval_data or opts.data
            inputs, files = load_images(folder, record.preprocess)
            lab_dir = opts.eval_labels or opts.labels
            labels = load_labels(lab_dir, files, record.preprocess.input_size, record.num_classes) if lab_dir else None
    else:
        inputs = calib_inputs
    ref = predict(str(src), inputs, record.input_name, record.output_name, record.batch)
    ref_miou = miou(ref, labels, record.num_classes) if labels is not None else None
    return Evaluation(inputs, labels, record.num_classes, ref, ref_miou, record.input_name, record.output_name, record.batch)


def _budget(opts, evaluation) -> tuple[float, str]:
    if opts.max_miou_drop is not None:
        if evaluation.labels is None:
            raise UserError("--max-miou-drop needs labels (--labels, --eval-labels or --data synthetic); "
                            "without labels use --max-agreement-drop")
        return opts.max_miou_drop, "mIoU pt"
    if opts.max_agreement_drop is not None:
        return opts.max_agreement_drop, "% agreement"
    return (1.0, "mIoU pt") if evaluation.labels is not None else (1.0, "% agreement")


def _build(precision, opts, record, src, model32, calib_inputs, evaluation, budget, say) -> dict:
    if precision == "fp16":
        from segexport.calib.fp16 import convert_fp16, find_risks, tensor_ranges

        risks = find_risks(model32, tensor_ranges(model32, calib_inputs, record.input_name, record.batch))
        model = convert_fp16(model32, [r.node for r in risks])
        return {"model": model, "cost": evaluation.cost(model), "blocked": risks}
    from segexport.calib.int8 import calibrate, quantize_qdq

    calibration = calibrate(src, calib_inputs, method=opts.method, input_name=record.input_name, batch=record.batch)
    if opts.max_miou_drop is not None or opts.max_agreement_drop is not None or opts.precision == "best":
        from segexport.calib.mixed import budgeted_int8

        mixed = budgeted_int8(str(src), calibration, evaluation, budget, progress=say)
        return {"model": mixed.model, "cost": mixed.cost, "kept": mixed.kept_float, "calibration": calibration}
    model = quantize_qdq(src, calibration)
    return {"model": model, "cost": evaluation.cost(model), "calibration": calibration}


def _report(result: CalibrateResult, evaluation, src: Path, out: Path, record) -> None:
    from segexport.calib.mixed import predict
    from segexport.checks.metrics import miou

    pred = predict(str(out), evaluation.inputs, record.input_name, record.output_name, record.batch)
    result.pixel_agreement = float((pred == evaluation.reference_labels).mean())
    if evaluation.labels is not None:
        result.miou = {"fp32": evaluation.reference_miou, result.precision: miou(pred, evaluation.labels, record.num_classes)}
    result.latency_ms = {"fp32": ort_latency_ms(src, record), result.precision: ort_latency_ms(out, record)}


def ort_latency_ms(path: Path, record, iterations: int = 10) -> float:
    """Median ORT CPU latency (ms) at the export shape: a proxy, not a GPU figure."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shape = record.profile_shapes()[record.input_name][1]
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    sess.run(None, {record.input_name: x})
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        sess.run(None, {record.input_name: x})
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return float(np.median(times))
