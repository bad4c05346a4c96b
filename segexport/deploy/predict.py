"""``segexport predict``: label maps, colour overlays and a contact sheet -- the picture a person
looks at before shipping.

Three artefacts run the same way: an ONNX (ONNX Runtime, the recorded preprocessing contract),
a TensorRT engine where TensorRT runs (the contract from its sidecar), or a DeepStream bundle
folder, run the way nvinfer feeds it (``y = net-scale-factor * (x - offsets)`` on pixels
resized to ``infer-dims``, in ``model-color-format`` order) -- which proves the bundle, not
just the model.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from segexport.errors import UserError
from segexport.models.registry import is_untrained

SHEET_MAX = 24  # images on the contact sheet (all get label PNGs and overlays)
THUMB = 160
SHEET_COLUMNS = 3


@dataclass
class PredictResult:
    out: Path
    source: str  # "onnx", "engine" or "deepstream bundle"
    images: int
    contact_sheet: Path
    files: list[str] = field(default_factory=list)
    class_fractions: dict[str, float] = field(default_factory=dict)  # share of all pixels per predicted class
    untrained: bool = False  # a zoo model exported without --weights: the classes above are noise


@dataclass
class _Model:
    run: Callable[[np.ndarray], np.ndarray]  # N x H x W x 3 uint8 RGB at network size -> N x H x W labels
    size: tuple[int, int]
    class_names: tuple[str, ...]
    source: str
    untrained: bool = False


def _image_files(images: Path) -> list[Path]:
    from segexport.data.images import IMAGE_SUFFIXES, list_images

    if images.is_file():
        if images.suffix.lower() not in IMAGE_SUFFIXES:
            raise UserError(f"{str(images)!r} is not a PNG/JPEG/BMP image: pass an image or a folder of them")
        return [images]
    return list_images(images)


def _ort_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _batched(fn, x: np.ndarray, batch: int, dynamic: bool) -> np.ndarray:
    """Run ``fn`` on chunks of the static batch (padding the last), or one by one on a dynamic one."""
    from segexport.checks.metrics import labels_of

    size = 1 if dynamic else batch
    out = []
    for start in range(0, len(x), size):
        chunk = x[start:start + size]
        short = size - len(chunk)
        if short:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], short, axis=0)])
        y = np.asarray(fn(chunk))
        out.append(labels_of(y.astype(np.float32) if y.ndim == 4 else y)[: size - short])
    return np.concatenate(out)


def _contract_model(record, run_raw: Callable[[np.ndarray], np.ndarray], source: str) -> _Model:
    from segexport.data.images import preprocess

    def run(rgb: np.ndarray) -> np.ndarray:
        x = np.stack([preprocess(im, record.preprocess) for im in rgb])
        return _batched(run_raw, x, record.batch, "batch" in record.dynamic)

    untrained = source != "engine" and is_untrained(record.model, record.weights_sha256)  # an engine records neither
    return _Model(run, record.preprocess.input_size, record.class_names, source, untrained)


def _onnx_model(path: Path) -> _Model:
    from segexport.core.onnx_io import load_onnx
    from segexport.exporter.metadata import read_record

    record = read_record(load_onnx(path))
    session = _ort_session(path)
    return _contract_model(record, lambda x: session.run(None, {record.input_name: x})[0], "onnx")


def _engine_model(path: Path) -> _Model:
    from segexport.checks.runners import make_runner
    from segexport.engines.builder import read_engine_info

    info = read_engine_info(path)
    if not info.preprocess or not info.class_names:
        raise UserError(f"{path.name}.json has no preprocessing contract (built by an older segexport): rebuild "
                        "the engine with `segexport engine`, or predict with the ONNX")
    from segexport.data.contract import DynamicRange, ExportRecord, PreprocessContract

    contract = PreprocessContract(**{**info.preprocess, "mean": tuple(info.preprocess["mean"]),
                                     "std": tuple(info.preprocess["std"]),
                                     "input_size": tuple(info.preprocess["input_size"])})
    (lo, opt, hi), = info.profile.values()
    record = ExportRecord(model=Path(path).stem, num_classes=len(info.class_names),
                          class_names=tuple(info.class_names), preprocess=contract, batch=opt[0], opset=0,
                          unpool="", argmax=False, segexport_version="", weights_sha256=None,
                          dynamic={"batch": DynamicRange(lo[0], opt[0], hi[0])} if lo[0] != hi[0] else {},
                          input_name=info.input_name or "input", output_name=info.output_name or "logits")
    runner = make_runner("trt", engine_path=path)
    runner.activate()
    return _contract_model(record, lambda x: runner.infer({record.input_name: x})[record.output_name], "engine")


def _bundle_model(folder: Path) -> _Model:
    """Run a DeepStream bundle's ONNX on the input nvinfer would give it, read from its config."""
    from PIL import Image

    from segexport.core.onnx_io import load_onnx
    from segexport.deploy.deepstream import CONFIG_NAME
    from segexport.exporter.metadata import read_record

    parser = configparser.ConfigParser(interpolation=None, delimiters=("="))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string((folder / CONFIG_NAME).read_text())
        prop = parser["property"]
        onnx_path = folder / prop["onnx-file"]
        factor = float(prop["net-scale-factor"])
        offsets = np.asarray([float(v) for v in prop["offsets"].split(";") if v.strip()], np.float32)
        bgr = prop.get("model-color-format", "0") == "1"
        _, h, w = (int(v) for v in prop["infer-dims"].split(";"))
        threshold = float(prop.get("segmentation-threshold", "0"))
        # the config is a file: numbers it holds are checked like any other input
        from segexport.core.limits import check_side, finite_number

        finite_number(factor, "net-scale-factor", positive=True)
        finite_number(threshold, "segmentation-threshold")
        if offsets.size not in (1, 3) or not np.isfinite(offsets).all():
            raise ValueError(f"offsets {prop['offsets'][:40]!r} must be 1 or 3 finite numbers")
        check_side(h, w, "infer-dims")
    except (OSError, KeyError, ValueError, configparser.Error) as exc:
        raise UserError(f"{folder / CONFIG_NAME} is not a readable nvinfer config ({type(exc).__name__}: {exc}): "
                        "write the bundle again with `segexport deploy deepstream`") from exc
    if onnx_path.resolve().parent != folder.resolve():
        raise UserError(f"onnx-file in {CONFIG_NAME} points outside the bundle: write the bundle again")
    record = read_record(load_onnx(onnx_path))
    if "height" not in record.dynamic and tuple(record.preprocess.input_size) != (h, w):
        raise UserError(f"infer-dims {h}x{w} in {CONFIG_NAME} disagree with {onnx_path.name} "
                        f"({record.preprocess.input_size[0]}x{record.preprocess.input_size[1]}): "
                        "write the bundle again with `segexport deploy deepstream`")
    for axis, side in (("height", h), ("width", w)):
        r = record.dynamic.get(axis)
        if r is not None and not r.min <= side <= r.max:
            raise UserError(f"infer-dims {h}x{w} in {CONFIG_NAME} are outside {onnx_path.name}'s {axis} range "
                            f"{r.min}..{r.max}: write the bundle again with `segexport deploy deepstream`")
    session = _ort_session(onnx_path)
    labels = (read_labels(folder / "labels.txt") if (folder / "labels.txt").exists() or (folder / "labels.txt").is_symlink()
              else record.class_names)

    def run(rgb: np.ndarray) -> np.ndarray:
        frames = np.stack([np.asarray(Image.fromarray(im).resize((w, h), Image.Resampling.BILINEAR)) if im.shape[:2] != (h, w)
                           else im for im in rgb]).astype(np.float32)
        if bgr:
            frames = frames[..., ::-1]
        x = (factor * (frames - offsets.reshape(1, 1, 1, -1))).transpose(0, 3, 1, 2)
        x = np.ascontiguousarray(x, np.float32)

        def scores(chunk: np.ndarray) -> np.ndarray:
            y = session.run(None, {record.input_name: chunk})[0]
            if y.shape[1] == 1:  # nvinfer: class 0 where the score passes the threshold, else -1 (background)
                return (y[:, 0] > threshold).astype(np.int64)
            return np.where(y.max(axis=1) > threshold, y.argmax(axis=1), 0)

        return _batched(scores, x, record.batch, "batch" in record.dynamic)

    return _Model(run, (h, w), tuple(labels), "deepstream bundle", is_untrained(record.model, record.weights_sha256))


def read_labels(path: Path) -> tuple[str, ...]:
    """A bundle's labels.txt: its own regular file (a symlink to ``/etc/passwd`` would print that
    file's lines as class names), of printable names, at most as many as a model may have."""
    from segexport.core.files import regular_file_inside
    from segexport.core.limits import MAX_NAME_CHARS, MAX_NUM_CLASSES, check_label

    fix = "write the bundle again with `segexport deploy deepstream`"
    if not regular_file_inside(path, path.parent):
        raise UserError(f"{path} is not a regular file of the bundle (a symlink?): {fix}")
    if path.stat().st_size > MAX_NUM_CLASSES * (MAX_NAME_CHARS + 1) * 4:
        raise UserError(f"{path} is too large to be a label file: {fix}")
    try:
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        if len(names) > MAX_NUM_CLASSES:
            raise ValueError(f"{len(names)} names (at most {MAX_NUM_CLASSES})")
        for i, name in enumerate(names):
            check_label(name, f"line {i + 1}")
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path} is not a label file ({str(exc)[:120]}): {fix}") from None
    return names


def load_model(artefact: str | Path) -> _Model:
    artefact = Path(artefact)
    if artefact.is_dir():
        from segexport.deploy.deepstream import CONFIG_NAME

        if not (artefact / CONFIG_NAME).is_file():
            raise UserError(f"{str(artefact)!r} is a folder without {CONFIG_NAME}: pass an ONNX, an engine or a "
                            "bundle from `segexport deploy deepstream`")
        return _bundle_model(artefact)
    if not artefact.is_file():
        raise UserError(f"{str(artefact)!r} not found: pass an ONNX, an engine or a DeepStream bundle folder")
    if artefact.suffix.lower() == ".onnx":
        return _onnx_model(artefact)
    return _engine_model(artefact)


def predict(artefact: str | Path, images: str | Path, out: str | Path, *, alpha: float = 0.5,
            progress: Callable[[int, int], None] | None = None) -> PredictResult:
    """Predict every image; write ``<stem>_labels.png`` (palette PNG of class indices, at the image's
    size), ``<stem>_overlay.png`` and ``contact_sheet.png`` into the new folder ``out``."""
    from PIL import Image

    from segexport.deploy.bundle import check_out_dir, staged_dir
    from segexport.data.images import read_rgb
    from segexport.data.synth import voc_palette

    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"--alpha {alpha} must be between 0 and 1")
    check_out_dir(out)
    from segexport.core.files import refuse_nested

    refuse_nested({"--out": out}, {f"the images {str(images)!r}": images})  # the next run would read its outputs
    files = _image_files(Path(images))
    stems = [f.stem for f in files]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise UserError(f"image name {twice[0]!r} appears twice: outputs are named by file stem, rename one")
    model = load_model(artefact)
    palette = voc_palette()
    colours = np.asarray(palette, np.uint8).reshape(256, 3)
    counts = np.zeros(max(len(model.class_names), 2), np.int64)
    sheet_rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    h, w = model.size
    with staged_dir(out) as stage:
        for i, path in enumerate(files):
            rgb = read_rgb(path)
            small = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR)) if rgb.shape[:2] != (h, w) else rgb
            labels = model.run(small[None])[0].astype(np.int64)
            counts += np.bincount(labels.ravel().clip(0, len(counts) - 1), minlength=len(counts))[: len(counts)]
            label_im = Image.fromarray(labels.astype(np.uint8), mode="P")
            label_im.putpalette(palette)
            if rgb.shape[:2] != (h, w):
                label_im = label_im.resize((rgb.shape[1], rgb.shape[0]), Image.Resampling.NEAREST)
            full = np.asarray(label_im)
            overlay = (rgb * (1 - alpha) + colours[full] * alpha).astype(np.uint8)
            overlay[full == 0] = rgb[full == 0]  # background stays the photo, so objects stand out
            label_im.save(stage / f"{path.stem}_labels.png")
            Image.fromarray(overlay).save(stage / f"{path.stem}_overlay.png")
            if len(sheet_rows) < SHEET_MAX:
                sheet_rows.append((path.name, rgb, full, np.unique(full)))
            if progress is not None:
                progress(i + 1, len(files))
        _contact_sheet(sheet_rows, model.class_names, colours, len(files), model.source).save(stage / "contact_sheet.png")
        written = sorted(p.name for p in stage.iterdir())
    total = counts.sum() or 1
    names = list(model.class_names) + [f"class {k}" for k in range(len(model.class_names), len(counts))]
    fractions = {names[k]: float(c / total) for k, c in enumerate(counts) if c}
    out = Path(out)
    return PredictResult(out, model.source, len(files), out / "contact_sheet.png", written, fractions, model.untrained)


def _thumb(arr: np.ndarray, nearest: bool = False):
    from PIL import Image

    im = Image.fromarray(arr)
    scale = THUMB / max(im.size)
    return im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                     Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR)


def _contact_sheet(rows, class_names, colours, total: int, source: str):
    """A grid of (photo | predicted labels in flat class colours) pairs, with one legend of every class
    found: flat colours read at a glance where a blended overlay muddies them (the overlays are files)."""
    from PIL import Image, ImageDraw

    pad, name_h, title_h, cols = 8, 14, 30, SHEET_COLUMNS
    cell_w, cell_h = 2 * THUMB + 3 * pad, THUMB + name_h + 2 * pad
    present = sorted({int(k) for *_, found in rows for k in found})
    legend_rows = (len(present) + 3) // 4
    n_rows = (max(len(rows), 1) + cols - 1) // cols
    width = cols * cell_w + pad
    sheet = Image.new("RGB", (width, title_h + 18 * legend_rows + n_rows * cell_h + pad), (30, 30, 30))
    draw = ImageDraw.Draw(sheet)
    more = f" (first {len(rows)} of {total})" if total > len(rows) else ""
    draw.text((pad, 8), f"segexport predict via {source}: {total} image(s){more}  |  each pair: image, predicted labels",
              fill=(235, 235, 235))
    for i, k in enumerate(present):
        x, y = pad + (i % 4) * (width // 4), title_h + (i // 4) * 18
        draw.rectangle([x, y, x + 12, y + 12], fill=tuple(int(c) for c in colours[k]), outline=(200, 200, 200))
        label = class_names[k] if k < len(class_names) else f"class {k}"
        draw.text((x + 18, y), f"{k}: {label}"[:28], fill=(235, 235, 235))
    top = title_h + 18 * legend_rows
    for i, (name, rgb, labels, _) in enumerate(rows):
        x, y = pad + (i % cols) * cell_w, top + (i // cols) * cell_h
        draw.text((x, y), name[:40], fill=(200, 200, 200))
        sheet.paste(_thumb(rgb), (x, y + name_h))
        sheet.paste(_thumb(colours[labels], nearest=True), (x + THUMB + pad, y + name_h))
    return sheet
