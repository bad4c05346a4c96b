"""``segexport parity``: PyTorch (the reference) against every export backend, segmentation-aware.

The reference model is rebuilt from the ONNX's own metadata (model, width, classes) and the
checkpoint it was exported from (``--weights``, else the path recorded at export; either way its
SHA-256 must match the one recorded at export), so parity compares like with like without
re-typing flags.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from segexport.core.comparison import judge, run_batched
from segexport.core.metrics import PARITY_THRESHOLDS, Thresholds, labels_of, miou
from segexport.core.noise_floor import measure_floor
from segexport.checks.reports import PairResult, ParityReport
from segexport.errors import UserError

if TYPE_CHECKING:
    from segexport.checks.memo import RunMemo


@dataclass
class ParityOptions:
    onnx: Path
    model: str | None = None
    weights: Path | None = None
    engine: Path | None = None
    backends: tuple[str, ...] = ("ort-cpu",)
    images: Path | None = None
    labels: Path | None = None
    # without images: False = seeded random tensors (what `segexport parity` has always fed);
    # True = held-out synthetic images, flat regions and ties included (the pipeline's default)
    synthetic: bool = False
    image_files: tuple[Path, ...] = ()  # explicit files (the pipeline's held-out calibration images)
    count: int = 4
    seed: int = 0
    thresholds: dict[str, float] = field(default_factory=dict)
    save_diff: Path | None = None
    reference: str = "torch"
    trust_model_code: bool = False  # a module:factory recorded in the ONNX may run (the user said so)
    model_args: dict = field(default_factory=dict)  # the factory keywords the export was given (the pipeline's entry)
    # one pipeline run's shared model, reference outputs and noise floors (segexport.checks.memo):
    # the fp32/fp16/int8 variants of a model are judged against the same reference
    memo: RunMemo | None = None


def run_parity(opts: ParityOptions, progress=None) -> ParityReport:
    import onnx

    from segexport.checks.runners import available_backends, make_runner
    from segexport.exporter.metadata import read_record
    from segexport.checks.memo import RunMemo, array_digest, file_identity
    from segexport.models.loading import model_from_file

    say = progress or (lambda _m: None)
    from segexport.core.limits import check_count, check_seed

    check_count(opts.count)
    check_seed(opts.seed)
    record = read_record(opts.onnx)
    weights = checkpoint_for(Path(opts.onnx), record, opts.weights)
    ref = opts.model or model_from_file(record.model, f"{Path(opts.onnx).name}'s metadata",
                                        trust_model_code=opts.trust_model_code)
    memo = opts.memo if opts.memo is not None else RunMemo()
    model_key = dict(num_classes=record.num_classes, width=record.width, model_args=dict(opts.model_args),
                     output_key=record.output_key, upsample_logits=record.upsample_logits)
    loaded = memo.model(ref, weights=weights, **model_key)
    if loaded.weights_sha256 != record.weights_sha256:  # hashed above: the file changed while it was read
        raise UserError(f"{weights} changed while parity read it (its SHA-256 no longer matches): run parity again")
    _check_model_matches(onnx.load(str(opts.onnx), load_external_data=False), record, loaded)
    engine_precision = _check_engine(opts.engine, opts.onnx) if opts.engine is not None else None

    inputs, images_rgb, names = _inputs(opts, record)
    labels = None
    if opts.labels is not None:
        if names is None:
            raise UserError("--labels needs --images (labels are matched to images by file name)")
        from segexport.data.images import load_labels

        labels = load_labels(opts.labels, names, record.preprocess.input_size, record.num_classes)
    precision = record.precision
    base = PARITY_THRESHOLDS[precision]
    try:
        thresholds = base.with_overrides(**opts.thresholds)
    except KeyError as exc:
        raise UserError(f"--threshold {exc.args[0]}=... is unknown: use one of {', '.join(Thresholds.__dataclass_fields__)}") from None
    except ValueError as exc:
        raise UserError(f"--threshold {exc}") from None

    say("running the PyTorch reference")
    ref_runner = make_runner(opts.reference, model=loaded.model, output_name=record.output_name)

    def reference_of(x: np.ndarray) -> np.ndarray:
        out = run_batched(ref_runner, x, record.input_name, record.output_name, record.batch)
        return labels_of(out).astype(np.int32) if record.argmax else out

    # what the reference is and what it was fed: the same for every variant of the model
    reference_key = ("reference", ref, model_key, file_identity(weights), opts.reference, record.argmax, record.batch,
                     record.input_name, record.output_name, array_digest(inputs))
    reference = memo.get(reference_key, lambda: reference_of(inputs))
    if np.issubdtype(reference.dtype, np.floating) and not np.isfinite(reference).all():
        # every backend would "disagree" with a NaN; the fault is the model's, not the export's
        bad = int(reference.size - np.count_nonzero(np.isfinite(reference)))
        raise UserError(f"the PyTorch model itself outputs NaN/inf ({bad} values) on these inputs: it is no usable "
                        "reference (diverged weights? inputs far outside its training range?); fix the model or "
                        "--weights before checking the export")
    floors = None  # the reference against itself under float32-level jitter, measured on a failure
    report = ParityReport(onnx=str(opts.onnx), model=loaded.name, precision=precision,
                          inputs=f"{len(inputs)} {_inputs_kind(opts, names)}",
                          weights=None if weights is None else str(weights), weights_sha256=record.weights_sha256,
                          versions=_versions(), thresholds=asdict(thresholds))
    if opts.save_diff is not None:
        from segexport.checks.reports import clear_diff_pngs

        clear_diff_pngs(opts.save_diff)
    reasons = available_backends()
    backends = list(opts.backends) + (["trt"] if opts.engine is not None and "trt" not in opts.backends else [])
    for backend in backends:
        if reasons.get(backend):
            report.skipped[backend] = reasons[backend]
            continue
        say(f"running {backend}")
        runner = make_runner(backend, onnx_path=opts.onnx, engine_path=opts.engine, output_name=record.output_name)
        got = run_batched(runner, inputs, record.input_name, record.output_name, record.batch)
        if got.shape != reference.shape:
            what = (f"{got.shape[1]} classes, the PyTorch model {reference.shape[1]}"
                    if got.ndim == reference.ndim == 4 and got.shape[1] != reference.shape[1] else
                    f"shape {list(got.shape)}, the PyTorch model {list(reference.shape)}")
            raise UserError(f"{backend} output differs from the PyTorch model ({what}): "
                            "pass the --model/--weights the ONNX was exported from")
        pair_thresholds = thresholds
        if backend == "trt" and engine_precision not in (None, precision):  # e.g. a TRT 10 INT8 build of an fp32 ONNX
            pair_thresholds = PARITY_THRESHOLDS[engine_precision].with_overrides(**opts.thresholds)
        drop = miou_ref = miou_got = None
        if labels is not None:
            miou_ref = miou(labels_of(reference), labels, record.num_classes)
            miou_got = miou(labels_of(got), labels, record.num_classes)
            drop = miou_ref - miou_got

        def floors_of_reference():  # measured once per run, on the first failure
            nonlocal floors
            if floors is None:
                def measure():
                    say("measuring the reference's own float32 noise floor")
                    return measure_floor(reference_of, inputs, reference, np.random.default_rng(opts.seed + 1))

                floors = memo.get(("floors", *reference_key, opts.seed), measure)
            return floors

        verdict = judge(reference, got, pair_thresholds, floors=floors_of_reference, miou_drop=drop,
                        fixed=opts.thresholds)
        pair = PairResult(opts.reference, backend, verdict.metrics, verdict.checks, miou_reference=miou_ref,
                          miou_candidate=miou_got, noise_floor=verdict.noise_floor, held_to_floor=verdict.held_to_floor)
        if pair_thresholds != thresholds:
            pair.thresholds = asdict(pair_thresholds)
        report.pairs.append(pair)
        if opts.save_diff is not None:
            from segexport.checks.reports import save_diff_pngs

            ref_l, got_l = labels_of(reference), labels_of(got)
            for i in range(len(ref_l)):
                save_diff_pngs(opts.save_diff, i, None if images_rgb is None else images_rgb[i], ref_l[i], got_l[i], backend)
    return report


def checkpoint_for(onnx: Path, record, given: Path | None) -> Path | None:
    """The checkpoint to build the reference from: ``given`` (--weights), else the path the export
    recorded, and either way only a file with the SHA-256 recorded at export; None for an
    untrained export. A reference built from other weights would judge the export against
    another model, so every mismatch is an error. The recorded path is data read from a file:
    the file it names is hashed before it is ever opened, and then only as a checkpoint
    (torch.load(weights_only=True)), never imported."""
    from segexport.core.hashing import sha256_file

    want, recorded, name = record.weights_sha256, record.weights_path, onnx.name
    if given is not None:
        if not Path(given).is_file():
            raise UserError(f"--weights {str(given)!r} is not a file: pass the checkpoint {name} was exported from")
        if want is None:
            raise UserError(f"{name} was exported without --weights (seeded initialisation) but --weights was given: "
                            "drop --weights or re-export with them")
        got = sha256_file(given)
        if got != want:
            where = f" (recorded at export: {recorded[:200]!r})" if recorded else ""
            raise UserError(f"--weights {str(given)!r} has SHA-256 {got[:12]}, but {name} was exported from weights with "
                            f"SHA-256 {want[:12]}{where}: pass the checkpoint it was exported from")
        return Path(given)
    if want is None:
        return None
    fix = f"pass --weights PATH (the checkpoint with SHA-256 {want[:12]}...)"
    if recorded is None:
        raise UserError(f"{name} was exported from weights (SHA-256 {want[:12]}) but records no path to them: {fix}")
    # relative to where the export ran; that was often the ONNX's own folder, so parity run from
    # elsewhere looks beside the ONNX too (either way the SHA-256 decides, not the path)
    candidates = [Path(recorded)] + ([] if Path(recorded).is_absolute() else [onnx.parent / recorded])
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise UserError(f"{name} was exported from weights at {recorded[:200]!r} (SHA-256 {want[:12]}), which is not a "
                        f"file here nor beside {name} (the path is relative to where it was exported): {fix}")
    got = sha256_file(path)
    if got != want:
        raise UserError(f"{recorded[:200]!r}, the weights {name} was exported from, now has SHA-256 {got[:12]}, not the "
                        f"recorded {want[:12]}: {fix}")
    return path


def _check_engine(engine: Path, onnx_path: Path) -> str | None:
    """Refuse, before any inference, an engine that is missing, built for another GPU/TensorRT,
    or built from another ONNX than ``--onnx`` (its outputs would be judged against the wrong
    model). Returns the engine's precision, which sets its thresholds."""
    if not Path(engine).is_file():
        raise UserError(f"engine {str(engine)!r} not found: build one with `segexport engine {Path(onnx_path).name}`")
    from segexport.engines.builder import check_engine_compatible, read_engine_info
    from segexport.core.tensorrt import available
    from segexport.core.hashing import sha256_file

    info = read_engine_info(engine)  # refuses an engine without its sidecar
    if info.backend != "trt":  # not a skip: no machine would ever run it here, and CI would go green unchecked
        built_by = "TensorRT-RTX" if info.backend == "rtx" else info.backend
        raise UserError(f"{Path(engine).name} was built by {built_by} {info.tensorrt_version}; parity runs TensorRT "
                        "engines (backend trt): build one with `segexport engine --backend trt` on the GPU machine")
    if info.onnx_sha256 and info.onnx_sha256 != sha256_file(onnx_path):
        raise UserError(f"{Path(engine).name} was built from another ONNX than {Path(onnx_path).name}: "
                        "pass the ONNX the engine was built from as --onnx")
    if available(info.backend) is not None:  # without the runtime the engine is skipped, not judged
        check_engine_compatible(engine)  # another TensorRT version or GPU architecture
    return info.precision if info.precision in PARITY_THRESHOLDS else None


def _check_model_matches(proto, record, loaded) -> None:
    dims = [d.dim_value or None for d in proto.graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or (dims[1] not in (None, 3)):
        raise UserError(f"ONNX input {proto.graph.input[0].name!r} has shape {dims}, not N x 3 x H x W")
    out_dims = [d.dim_value or None for d in proto.graph.output[0].type.tensor_type.shape.dim]
    if not record.argmax and len(out_dims) == 4 and out_dims[1] not in (None, loaded.num_classes):
        raise UserError(f"ONNX predicts {out_dims[1]} classes but the model has {loaded.num_classes}: "
                        "pass the --model/--weights it was exported from")


def _inputs_kind(opts: ParityOptions, names) -> str:
    if names:
        return "images"
    return "synthetic images (held out from calibration)" if opts.synthetic else "seeded random tensors"


def _inputs(opts: ParityOptions, record):
    from segexport.core.limits import check_elements

    h, w = record.preprocess.input_size
    check_elements((opts.count, 3, h, w), f"{opts.count} inputs at the ONNX's {h}x{w}")
    if opts.synthetic and opts.images is None and not opts.image_files:
        from segexport.core.metrics import label_count
        from segexport.data.images import preprocess
        from segexport.data.synth import synthetic_arrays

        images, _ = synthetic_arrays(opts.count, (h, w), label_count(record.num_classes), seed=opts.seed + 1000)
        return np.stack([preprocess(im, record.preprocess) for im in images]), images, None
    if opts.images is not None or opts.image_files:
        from segexport.data.images import load_images, preprocess, read_rgb

        if opts.image_files:
            names = list(opts.image_files)
            x = np.stack([preprocess(read_rgb(p), record.preprocess) for p in names])
        else:
            x, names = load_images(opts.images, record.preprocess, limit=opts.count, seed=opts.seed)
        from PIL import Image

        rgbs = np.stack([np.asarray(Image.fromarray(read_rgb(p)).resize((w, h), Image.BILINEAR)) for p in names])
        return x, rgbs, names
    if opts.count < 1:
        raise UserError("--count must be >= 1")
    rng = np.random.default_rng(opts.seed)
    return rng.standard_normal((opts.count, 3, h, w), dtype=np.float32), None, None


def _versions() -> dict[str, str]:
    import onnxruntime
    import torch

    from segexport._version import __version__

    return {"segexport": __version__, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
