"""A DeepStream (Gst-nvinfer) bundle: config, ONNX with exact preprocessing, labels, build script.

Every value comes from the ONNX's export record (classes, preprocessing contract, profile,
tensor names), and the config says so key by key. The normalisation is baked into the ONNX and
verified on raw pixels in ONNX Runtime before anything is written; with
``approximate_normalization`` the single ``net-scale-factor`` is used instead and what it
costs in label agreement is measured and returned.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from segexport.deploy.normalize import MIN_AGREEMENT, Agreement
from segexport.errors import CheckFailed, UserError

NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}  # NvDsInferNetworkMode (nvdsinfer_context.h): FP32, INT8, FP16
CONFIG_NAME = "nvinfer_config.txt"


@dataclass
class DeepStreamBundle:
    """What ``deploy_deepstream`` wrote (paths are inside ``out``)."""

    out: Path
    config: Path
    onnx: Path
    engine_name: str
    precision: str
    batch: int
    baked: bool
    agreement: Agreement
    net_scale_factor: float
    offsets: tuple[float, float, float]
    engine_included: bool = False
    files: list[str] = field(default_factory=list)
    gate: object = None  # a reduced ONNX: the accuracy gate's verdict against its fp32 source
    selfcheck: object = None  # segexport.deploy.golden.SelfCheck: what selfcheck/ holds


def engine_file_name(onnx_name: str, batch: int, precision: str, device: str = "gpu0") -> str:
    """nvinfer's own name for the engine it builds from ``onnx-file``, so a DeepStream that builds
    the engine itself finds it again on the next start: ``TrtModelBuilder::buildModel`` in
    DeepStream's ``sources/libs/nvdsinfer/nvdsinfer_model_builder.cpp`` names it
    ``modelPath + "_b" + maxBatchSize + "_" + devId + "_" + networkMode2Str(mode) + ".engine"``,
    where ``modelPath`` is the whole ``onnx-file`` path (extension kept: ``m.onnx_b1_gpu0_fp16.engine``),
    ``devId`` is ``gpu<gpu-id>``, or ``dla<use-dla-core>`` when ``enable-dla`` is set, and the mode is
    ``fp32``/``int8``/``fp16``."""
    return f"{onnx_name}_b{batch}_{device}_{precision}.engine"


def resolve_precision(model, onnx_path: Path, precision: str | None, calib_cache: Path | None) -> tuple[str, bool]:
    """(precision, strongly typed). An FP32 ONNX takes fp16, or int8 with a calibration cache made
    for it; an ONNX from `segexport calibrate` carries its own precision."""
    from segexport.core.graph import held_precision

    held = held_precision(model)
    if precision not in (None, "fp32", "fp16", "int8"):
        raise UserError(f"--precision {precision!r} is not one of fp32, fp16, int8")
    if held != "fp32":
        if precision not in (None, held):
            raise UserError(f"{onnx_path.name} already holds {held.upper()} (from `segexport calibrate`): drop "
                            f"--precision {precision}, or deploy the FP32 export")
        if calib_cache is not None:
            raise UserError(f"{onnx_path.name} carries its INT8 scales as Q/DQ: drop --calib-cache"
                            if held == "int8" else f"{onnx_path.name} is FP16: drop --calib-cache")
        return held, True
    precision = precision or ("int8" if calib_cache is not None else "fp32")
    if precision == "int8" and calib_cache is None:
        raise UserError(f"INT8 from an FP32 ONNX needs --calib-cache (from `segexport calibrate {onnx_path.name} "
                        "--precision int8 --trt-cache`), or deploy the Q/DQ ONNX that `segexport calibrate` writes")
    if calib_cache is not None and precision != "int8":
        raise UserError(f"--calib-cache only means INT8: drop it or use --precision int8 (not {precision})")
    if calib_cache is not None:
        from segexport.calib.provenance import check_matches

        if not Path(calib_cache).is_file():
            raise UserError(f"calibration cache {str(calib_cache)!r} not found: write one with "
                            "`segexport calibrate --trt-cache`")
        check_matches(calib_cache, onnx_path)  # a cache for another ONNX builds silently and ruins accuracy
    return precision, False


def resolve_batch(record, batch: int | None) -> int:
    lo = hi = record.batch
    if "batch" in record.dynamic:
        lo, hi = record.dynamic["batch"].min, record.dynamic["batch"].max
    batch = record.batch if batch is None else batch
    if not lo <= batch <= hi:
        raise UserError(f"--batch {batch} is outside the exported batch range {lo}..{hi}: choose one in it, or "
                        "re-export with `segexport onnx --dynamic batch`")
    return batch


def deploy_deepstream(onnx_path: str | Path, out: str | Path, *, engine: str | Path | None = None,
                      calib_cache: str | Path | None = None, precision: str | None = None, batch: int | None = None,
                      approximate_normalization: bool = False, target_trt: str | None = None,
                      target_cc: str | None = None, workspace_mib: int = 1024, reference: str | Path | None = None,
                      max_agreement_drop: float | None = None, max_miou_drop: float | None = None,
                      selfcheck_images: str | Path | None = None) -> DeepStreamBundle:
    """Write a DeepStream bundle for ``onnx_path`` into the new folder ``out``.

    Every bundle carries ``selfcheck/`` (:mod:`segexport.deploy.golden`): golden inputs (the images
    in ``selfcheck_images``, else synthetic scenes), the fp32 ONNX's labels for them, and the
    script that judges the engine on the device.

    Refused before any work (one-line ``UserError``): an argmax-head ONNX, INT8 without a
    calibration cache or Q/DQ, a non-empty ``out``, an engine not built from the bundle's ONNX
    or for another TensorRT/GPU than ``target_trt``/``target_cc``. A baked graph that disagrees
    with exact preprocessing on more than 0.01 % of labels is a ``CheckFailed``.
    """
    from segexport.core.hashing import sha256_file
    from segexport.core.onnx_io import load_onnx
    from segexport.deploy import normalize
    from segexport.deploy.bundle import BUNDLE_SCHEMA, check_out_dir, staged_dir
    from segexport.deploy.trtexec import build_script, plan_for
    from segexport.exporter.metadata import read_record

    onnx_path = Path(onnx_path)
    check_out_dir(out)
    from segexport.deploy.golden import check_images

    check_images(selfcheck_images)  # a wrong folder is refused before any work
    model = load_onnx(onnx_path, external_data=True)
    record = read_record(model)
    if record.argmax:
        raise UserError(f"{onnx_path.name} ends in ArgMax (exported with --argmax): nvinfer's segmentation output "
                        "needs per-class scores; re-export without --argmax")
    if record.preprocess.resize != "stretch":
        raise UserError(f"preprocessing resize {record.preprocess.resize!r} has no nvinfer equivalent: export with "
                        "the default stretch resize")
    if record.preprocess.layout != "NCHW":
        raise UserError(f"input layout {record.preprocess.layout} is not NCHW, which nvinfer feeds: re-export")
    calib = Path(calib_cache) if calib_cache is not None else None
    precision, strongly_typed = resolve_precision(model, onnx_path, precision, calib)
    from segexport.deploy.bundle import gate_reduced

    gate = gate_reduced(onnx_path, model, reference=reference, max_agreement_drop=max_agreement_drop,
                 max_miou_drop=max_miou_drop)  # a reduced ONNX ships only if it still passes its accuracy gate
    batch = resolve_batch(record, batch)

    source_sha = sha256_file(onnx_path)
    onnx_name = onnx_path.stem.removesuffix(".deepstream") + ".deepstream.onnx"
    from segexport.core.targets import get_target

    target = get_target(record.target)
    if target.dla and precision == "fp32":
        raise UserError(f"{onnx_path.name} is exported for {target.name}, whose DLA runs FP16/INT8 only: pass "
                        "--precision fp16 (or int8 with --calib-cache)")
    engine_name = engine_file_name(onnx_name, batch, precision, "dla0" if target.dla else "gpu0")
    bundled, bundled_record = normalize.deepstream_graph(model, record, bake=not approximate_normalization,
                                                         source_sha256=source_sha)
    if engine is not None:  # the bundle's ONNX is deterministic: an engine built from an earlier bundle matches
        import hashlib

        from segexport.deploy.bundle import check_engine_for

        info = check_engine_for(engine, hashlib.sha256(bundled.SerializeToString()).hexdigest(), onnx_name,
                                target_trt=target_trt, target_cc=target_cc, what="DeepStream (nvinfer)")
        if info.precision != precision:
            raise UserError(f"{Path(engine).name} is {info.precision}, the bundle asks for {precision}: pass "
                            f"--precision {info.precision} or build the engine again")
    if approximate_normalization:
        agreement = normalize.measure_approximation(model, record)
        factor, offsets = normalize.nvinfer_approximation(record)
    else:
        agreement = normalize.verify_baked(model, bundled, record, bundled_record)
        if agreement.agreement < MIN_AGREEMENT:
            raise CheckFailed(f"the baked-normalisation ONNX agrees with exact preprocessing on only "
                              f"{agreement.agreement:.4%} of labels (< {MIN_AGREEMENT:.2%}); nothing written")
        factor, offsets = 1.0, (0.0, 0.0, 0.0)

    with staged_dir(out) as stage:
        normalize.save_onnx(bundled, stage / onnx_name)
        if engine is not None:
            shutil.copyfile(engine, stage / engine_name)
        cache_name = None
        if calib is not None:
            cache_name = "calib.cache"
            shutil.copyfile(calib, stage / cache_name)
        (stage / "labels.txt").write_text("".join(f"{name}\n" for name in record.class_names))
        config = nvinfer_config(record, bundled_record, onnx_name=onnx_name, engine_name=engine_name,
                                precision=precision, batch=batch, cache_name=cache_name, factor=factor,
                                offsets=offsets, baked=not approximate_normalization, agreement=agreement,
                                workspace_mib=workspace_mib)
        from segexport.deploy.nvinfer_keys import check_config

        (stage / CONFIG_NAME).write_text(config)
        problems = check_config(config, stage)
        if problems:  # a bug here, not the user's: never ship a config nvinfer would reject
            raise CheckFailed(f"generated {CONFIG_NAME} is invalid: {problems[0]}")
        (stage / "deepstream_app.txt").write_text(app_snippet(record, batch))
        plan = plan_for(bundled_record, onnx=onnx_name, engine=engine_name, precision=precision,
                        strongly_typed=strongly_typed, calib_cache=cache_name, workspace_mib=workspace_mib)
        script = stage / "build_engine.sh"
        script.write_text(build_script(plan, after=f"# nvinfer_config.txt names {engine_name}: DeepStream loads it "
                                                   "from here (or builds it itself on first start).\n"))
        script.chmod(0o755)
        from segexport.deploy.golden import write_selfcheck

        selfcheck = write_selfcheck(stage, kind="deepstream", source=onnx_path, source_model=model, record=record,
                                    bundle_model=bundled, bundle_input=bundled_record.input_name,
                                    bundle_output=bundled_record.output_name, raw_pixels=not approximate_normalization,
                                    engine=engine_name, onnx=onnx_name, precision=precision, reference=reference,
                                    images=selfcheck_images, max_agreement_drop=max_agreement_drop)
        manifest = {"schema": BUNDLE_SCHEMA, "kind": "deepstream", "source_onnx": onnx_path.name,
                    "source_onnx_sha256": source_sha, "onnx": onnx_name, "engine": engine_name,
                    "engine_included": engine is not None, "precision": precision, "batch": batch,
                    "normalization": "approximate" if approximate_normalization else "baked",
                    "label_agreement": asdict(agreement), "net_scale_factor": factor, "offsets": list(offsets),
                    "selfcheck": asdict(selfcheck)}
        (stage / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")
        files = sorted(p.name for p in stage.iterdir())
    out = Path(out)
    return DeepStreamBundle(out=out, config=out / CONFIG_NAME, onnx=out / onnx_name, engine_name=engine_name,
                            precision=precision, batch=batch, baked=not approximate_normalization,
                            agreement=agreement, net_scale_factor=factor, offsets=tuple(offsets),  # type: ignore[arg-type]
                            engine_included=engine is not None, files=files, gate=gate, selfcheck=selfcheck)


def _num(x: float) -> str:
    return f"{float(x):.10g}"


def nvinfer_config(record, bundled_record, *, onnx_name: str, engine_name: str, precision: str, batch: int,
                   cache_name: str | None, factor: float, offsets, baked: bool, agreement: Agreement,
                   workspace_mib: int) -> str:
    """The ``[property]`` group, one comment per key saying where its value came from."""
    h, w = record.preprocess.input_size
    contract = record.preprocess
    norm = (f"normalisation baked into {onnx_name} (Div {contract.scale:g}, Sub mean, Div std per channel); "
            f"verified on raw pixels: {agreement.agreement:.4%} label agreement" if baked else
            f"APPROXIMATION: one scale for all channels (std {list(contract.std)}); measured label agreement with "
            f"exact preprocessing {agreement.agreement:.4%}")
    binary = record.num_classes == 1
    rows: list[tuple[str, str, str]] = [
        ("gpu-id", "0", "first GPU"),
        ("gie-unique-id", "1", "primary inference engine"),
        ("process-mode", "1", "full frames (primary)"),
        ("network-type", "2", "segmentation"),
        ("onnx-file", onnx_name, f"exported model ({record.model}) with " + ("baked normalisation" if baked else
                                                                              "its own input")
         + ("" if binary else " and a Softmax over classes")),
        ("model-engine-file", engine_name, "nvinfer's own engine naming; build it with build_engine.sh on the device"),
        ("network-mode", str(NETWORK_MODE[precision]), f"{precision} (0 FP32, 1 INT8, 2 FP16)"),
    ]
    from segexport.core.targets import get_target

    target = get_target(record.target)
    if target.dla:
        rows += [("enable-dla", "1", f"export target {target.name}: {target.description}"),
                 ("use-dla-core", "0", "DLA core 0 (build_engine.sh takes DLA_CORE=1 for the other; change both)")]
    if cache_name:
        rows.append(("int8-calib-file", cache_name, "TensorRT calibration cache checked against the source ONNX; "
                     "its 'input' range applies to the normalised tensor, the raw-pixel ops have none and stay FP16/FP32"))
    rows += [
        ("batch-size", str(batch), "export record batch (within the exported batch range)"),
        ("infer-dims", f"3;{h};{w}", "export record input size (C;H;W)"),
        ("model-color-format", "1" if contract.color == "BGR" else "0", f"contract colour order {contract.color}"),
        ("net-scale-factor", _num(factor), norm),
        ("offsets", ";".join(_num(o) for o in offsets), "per-channel mean in 0..255 units" if not baked
         else "none: the ONNX subtracts the mean itself"),
        ("maintain-aspect-ratio", "0", f"contract resize {contract.resize!r}: stretch to H x W"),
        ("scaling-filter", "1", "bilinear, as the contract resizes (nvinfer's bilinear is not Pillow's: feed "
                                "frames at the network size for bit-exact input)"),
        ("num-detected-classes", str(record.num_classes), "export record classes: " + ", ".join(record.class_names[:6])
         + (" ..." if len(record.class_names) > 6 else "")),
        ("labelfile-path", "labels.txt", "class names from the export record, one a line"),
        ("output-blob-names", bundled_record.output_name, "the ONNX output" + ("" if binary else
                                                                                " (softmax of the logits)")),
        ("segmentation-output-order", "0", "the output is NCHW"),
        ("segmentation-threshold", "0.0", "one channel: class 0 where the logit > 0, else -1 (background)" if binary
         else "probabilities are > 0: every pixel gets its argmax class"),
        ("output-tensor-meta", "0", "set 1 to also attach the raw scores for custom post-processing"),
        ("workspace-size", str(workspace_mib), "builder workspace in MiB if nvinfer builds the engine"),
    ]
    lines = [f"# nvinfer config for {record.model} ({record.num_classes} classes) written by segexport "
             f"{record.segexport_version} -> see bundle.json", "[property]"]
    for key, value, why in rows:
        lines += [f"# {why}", f"{key}={value}"]
    return "\n".join(lines) + "\n"


def app_snippet(record, batch: int) -> str:
    """A minimal deepstream-app config running the model on one file (edit the uri)."""
    h, w = record.preprocess.input_size
    return f"""# deepstream-app -c deepstream_app.txt   (edit uri= first)
[application]
enable-perf-measurement=1
perf-measurement-interval-sec=5

[source0]
enable=1
# 3 = multi-URI source
type=3
uri=file:///path/to/video.mp4
num-sources=1

[streammux]
batch-size={batch}
width={w}
height={h}
batched-push-timeout=40000

[primary-gie]
enable=1
config-file={CONFIG_NAME}
batch-size={batch}
gie-unique-id=1

[segvisual]
enable=1
width={w}
height={h}

[sink0]
enable=1
# 1 = fakesink (2 = on screen)
type=1
sync=0
"""
