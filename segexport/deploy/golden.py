"""The self-check every bundle carries: golden inputs, the fp32 ONNX's labels for them, a script.

What it is for: an engine is built on the device, by the device's TensorRT, and nothing on the
desktop can run it. So the bundle takes along a few inputs (the user's own images when given,
else the synthetic scenes of :mod:`segexport.data.synth`), the labels and top-2 margins the
**fp32** ONNX gives them in ONNX Runtime (measured here, at bundle time), and ``selfcheck.py``,
which runs the engine on the device and judges it with :mod:`segexport.core.agreement` -- copied
byte for byte, so the device applies calibrate's own confident-pixel rule and limits.

Before anything is written, the bundle's own ONNX is put through the same check in ONNX Runtime:
a bundle whose ONNX already fails its self-check is a bug and never ships.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segexport.data.contract import ExportRecord
from segexport.errors import CheckFailed, UserError

FOLDER = "selfcheck"
GOLDEN = "golden.npz"
MANIFEST = "selfcheck.json"
COUNT = 4  # images: enough pixels to judge (4 x H x W), small enough to ship in every bundle
SEED = 3  # not calibration's seed (0), so the golden scenes are ones calibration never saw
SCRIPT_SOURCE = Path(__file__).with_name("selfcheck.py")
AGREEMENT_SOURCE = Path(__file__).resolve().parents[1] / "core" / "agreement.py"


@dataclass(frozen=True)
class SelfCheck:
    """What the bundle's self-check holds and how the bundle's own ONNX did on it."""

    images: str  # where the golden inputs came from, in words
    count: int
    judged: bool  # False: the fp32 reference has no confident pixels (an untrained model)
    line: str  # the bundle ONNX's verdict in ONNX Runtime, one line
    command: str = f"python3 {FOLDER}/selfcheck.py"


def check_images(images: str | Path | None) -> list[Path]:
    """The user's golden images (at most ``COUNT``), refused in one line before any work."""
    if images is None:
        return []
    from segexport.data.images import list_images

    folder = Path(images)
    if not folder.is_dir():
        raise UserError(f"--selfcheck-images {str(folder)!r} is not a folder of images: give one, or leave it out "
                        "for the synthetic set")
    files = list_images(folder, limit=COUNT)
    if not files:
        raise UserError(f"--selfcheck-images {str(folder)!r} holds no images (.png/.jpg): add some or leave it out")
    return files


def golden_rgb(record: ExportRecord, images: str | Path | None, count: int = COUNT) -> tuple[np.ndarray, str]:
    """N x H x W x 3 uint8 RGB at the network size, and where they came from."""
    h, w = record.preprocess.input_size
    if images is None:
        from segexport.data.synth import synthetic_arrays

        rgb, _ = synthetic_arrays(count, (h, w), max(record.num_classes, 2), seed=SEED)
        return rgb, f"synthetic scenes (segexport.data.synth, seed {SEED})"
    from PIL import Image

    from segexport.data.images import read_rgb

    files = check_images(images)[:count]
    out = []
    for path in files:
        im = read_rgb(path)
        if im.shape[:2] != (h, w):  # the contract's own resize, once: raw pixels and the exact input then agree
            im = np.asarray(Image.fromarray(im).resize((w, h), Image.Resampling.BILINEAR))
        out.append(im)
    return np.stack(out), f"{len(files)} of your images ({', '.join(p.name for p in files[:3])}" + \
        (", ..." if len(files) > 3 else "") + ")"


def _run(model, input_name: str, output_name: str, x: np.ndarray, batch: int) -> np.ndarray:
    """``output_name`` for every sample of ``x``, ``batch`` at a time (a short last batch padded, dropped).
    ``model``: a ModelProto, or a file (which keeps an external weights file beside it readable)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
    dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16}.get(session.get_inputs()[0].type, np.float32)
    out = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        kept = len(chunk)
        if kept < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - kept, axis=0)])
        out.append(np.asarray(session.run([output_name], {input_name: chunk.astype(dtype)})[0])[:kept])
    return np.concatenate(out)


def _scores_tensor(model, record: ExportRecord) -> tuple[object, str]:
    """(model, the tensor holding per-class scores): an ``--argmax`` export's labels carry no margin,
    so the ArgMax's input is added as an output of an in-memory copy."""
    if not record.argmax:
        return model, record.output_name
    import onnx

    producer = next((n for n in model.graph.node if record.output_name in n.output), None)
    if producer is None or producer.op_type != "ArgMax":
        raise UserError(f"the ONNX records --argmax but its output {record.output_name!r} is not an ArgMax: re-export it")
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(onnx.ValueInfoProto(name=producer.input[0]))
    return probe, producer.input[0]


def reference_path(onnx_path: Path, model, reference: str | Path | None) -> Path:
    """The fp32 ONNX whose labels are golden: the bundle's source itself, or, for a reduced one, the
    export it was calibrated from (deploy's accuracy gate has already held the two together)."""
    from segexport.core.graph import held_precision

    if held_precision(model) == "fp32":
        return onnx_path
    if reference is not None:
        return Path(reference)
    from segexport.calib.pipeline import _recorded_source

    found = _recorded_source(onnx_path)
    if found is None or not found.is_file():  # the gate refuses this first; kept for a direct caller
        raise UserError(f"{onnx_path.name} is reduced and its fp32 source is not found: pass --reference FP32.onnx")
    return found


def write_selfcheck(stage: Path, *, kind: str, source: Path, source_model, record: ExportRecord, bundle_model,
                    bundle_input: str, bundle_output: str, raw_pixels: bool, engine: str, onnx: str | None,
                    precision: str, reference: str | Path | None = None,
                    images: str | Path | None = None, max_agreement_drop: float | None = None) -> SelfCheck:
    """Write ``stage/selfcheck/`` (golden.npz, selfcheck.json, selfcheck.py, agreement.py).

    ``bundle_model`` is the ONNX the engine is built from (its input is ``bundle_input``: raw 0..255
    pixels for DeepStream when ``raw_pixels``, else the contract's normalised tensor); ``engine`` and
    ``onnx`` are paths inside the bundle. A ``CheckFailed`` when that ONNX fails its own self-check.
    ``bundle_model`` may be a file path (Triton: the source ONNX itself, external weights beside it).
    ``max_agreement_drop`` is a loss the user accepted on the command line: the bundle is judged by
    it here and the manifest records it, so the device judges by the same accepted limit."""
    from segexport.core.agreement import confidence_margin, judge_device, labels_of
    from segexport.core.onnx_io import load_onnx
    from segexport.data.images import preprocess
    from segexport.deploy.normalize import raw_tensor

    ref_path = reference_path(source, source_model, reference)
    ref_model = load_onnx(ref_path, external_data=True)  # weights included: ONNX Runtime runs it from memory
    from segexport.exporter.metadata import read_record

    ref_record = read_record(ref_model)
    rgb, where = golden_rgb(record, images)
    exact = np.stack([preprocess(im, record.preprocess) for im in rgb])
    probe, scores_name = _scores_tensor(ref_model, ref_record)
    scores = _run(probe, ref_record.input_name, scores_name, exact, ref_record.batch).astype(np.float32)
    labels, margin = labels_of(scores), confidence_margin(scores).astype(np.float32)
    inputs = (raw_tensor(rgb, record) if raw_pixels else exact).astype(np.float32)
    batch = record.dynamic["batch"].min if "batch" in record.dynamic else record.batch
    own = _run(bundle_model, bundle_input, bundle_output, inputs, batch)
    verdict = judge_device(labels, margin, own, precision, max_agreement_drop)
    if verdict.passed is False:  # never ship a self-check the bundle's own ONNX fails
        raise CheckFailed(f"the bundle's ONNX fails its own self-check in ONNX Runtime ({verdict.line}); nothing written")
    folder = stage / FOLDER
    folder.mkdir()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, inputs=inputs, labels=labels.astype(np.int32), margin=margin)
    (folder / GOLDEN).write_bytes(buffer.getvalue())
    manifest = {"schema": 1, "kind": kind, "model": record.model, "precision": precision,
                "input_name": bundle_input, "output_name": bundle_output, "input": "raw 0..255 pixels, planar, "
                f"{record.preprocess.color}" if raw_pixels else "the preprocessing contract's normalised tensor",
                "engine": engine, "onnx": onnx, "batch": batch, "dynamic": bool(record.dynamic),
                "golden": GOLDEN, "golden_sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
                "images": where, "reference_onnx": ref_path.name,
                "reference_onnx_sha256": hashlib.sha256(ref_path.read_bytes()).hexdigest() if ref_path.is_file() else None,
                "max_agreement_drop": max_agreement_drop, "bundle_verdict": verdict.line}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.copyfile(SCRIPT_SOURCE, folder / "selfcheck.py")
    (folder / "selfcheck.py").chmod(0o755)
    shutil.copyfile(AGREEMENT_SOURCE, folder / "agreement.py")
    return SelfCheck(images=where, count=len(rgb), judged=verdict.passed is not None, line=verdict.line)
