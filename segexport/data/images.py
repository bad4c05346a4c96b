"""Images and label maps in, network tensors out -- by the preprocessing contract.

Images: PNG/JPEG (recursive, sorted, seeded sub-sampling), converted to RGB, resized with
the contract's policy (``stretch``: bilinear to exactly H x W), scaled and normalised to NCHW
float32. Labels: palette or grey PNGs holding class indices (255 = ignore), or RGB PNGs
painted in the VOC colour map (decoded back to indices); resized with NEAREST (interpolating
labels would invent classes). Every unreadable file is named.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segexport.data.contract import PreprocessContract
from segexport.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def list_images(directory: str | Path, *, limit: int | None = None, seed: int = 0) -> list[Path]:
    root = Path(directory)
    if not root.is_dir():
        raise UserError(f"image directory {str(root)!r} not found: pass a folder of PNG/JPEG files")
    if limit is not None and limit < 1:
        raise UserError(f"image count must be >= 1, got {limit}")
    if (root / "images").is_dir() and (root / "labels").is_dir():  # e.g. what `segexport data synth` writes
        raise UserError(f"{str(root)!r} holds images/ and labels/: pass {str(root / 'images')!r} as the images "
                        f"(and {str(root / 'labels')!r} as --labels), or the label maps would be read as images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"no PNG/JPEG images in {str(root)!r}: add images or use `segexport data synth --out DIR`")
    if limit is not None and limit < len(files):
        idx = np.sort(np.random.default_rng(seed).choice(len(files), size=limit, replace=False))
        files = [files[i] for i in idx]
    return files


def held_out_images(directory: str | Path, *, calib_count: int, calib_seed: int = 0, count: int) -> tuple[list[Path], bool]:
    """Up to ``count`` images of ``directory`` that calibration (``calib_count`` at ``calib_seed``)
    did not use, and True; or, when calibration took every image, ``count`` of those and False --
    so a parity step says whether it judged on images the quantizer never saw."""
    every = list_images(directory)
    used = set(list_images(directory, limit=calib_count, seed=calib_seed)) if calib_count < len(every) else set(every)
    rest = [p for p in every if p not in used]
    if rest:
        return rest[:count], True
    return every[:count], False


def preprocess(rgb: np.ndarray, contract: PreprocessContract) -> np.ndarray:
    """HxWx3 uint8 RGB -> 3xHxW float32 by the contract (resize, scale, mean/std)."""
    from PIL import Image

    h, w = contract.input_size
    if rgb.shape[:2] != (h, w):
        rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))
    x = rgb.astype(np.float32) / contract.scale
    x = (x - np.asarray(contract.mean, np.float32)) / np.asarray(contract.std, np.float32)
    if contract.color == "BGR":
        x = x[..., ::-1]
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def open_image(path: Path, what: str = "image"):
    """``Image.open`` for a file named by the user, or one line: a FIFO or device is refused
    (opening it would block), and so is an image over Pillow's decompression-bomb limit (a
    30000x30000 PNG of a few KB inflates to gigabytes) instead of a warning or a traceback."""
    import warnings

    from PIL import Image

    if not Path(path).is_file():
        raise UserError(f"{what} {str(path)!r} is not a regular file: remove it from the folder")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UserError(f"{what} {str(path)!r} is too large to decode safely (over {Image.MAX_IMAGE_PIXELS} "
                            "pixels, Pillow's decompression-bomb limit): downscale it or remove it") from exc


def read_rgb(path: Path) -> np.ndarray:
    from PIL import UnidentifiedImageError

    try:
        with open_image(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: convert("RGB") would clip it to white
                grey = np.asarray(im, dtype=np.float64)
                peak = 65535.0 if im.mode.startswith("I;16") or grey.max(initial=0) > 255 else 255.0
                grey = np.clip(np.round(grey * (255.0 / peak)), 0, 255).astype(np.uint8)
                return np.repeat(grey[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise UserError(f"cannot read image {str(path)!r} ({type(exc).__name__}): remove or replace it") from exc


def load_images(directory: str | Path, contract: PreprocessContract, *, limit: int | None = None,
                seed: int = 0) -> tuple[np.ndarray, list[Path]]:
    """(N x 3 x H x W float32, the files) for a folder of images."""
    files = list_images(directory, limit=limit, seed=seed)
    return np.stack([preprocess(read_rgb(p), contract) for p in files]), files


def load_labels(directory: str | Path, names: list[Path], size: tuple[int, int], num_classes: int,
                ignore_index: int = 255) -> np.ndarray:
    """Label maps matching ``names`` by file stem, resized (nearest) to ``size``; values checked.
    ``num_classes`` counts the model's output channels: 1 (binary) takes labels 0 and 1."""
    from PIL import Image, UnidentifiedImageError

    from segexport.core.metrics import label_count

    num_classes = label_count(num_classes)
    root = Path(directory)
    if not root.is_dir():
        raise UserError(f"label directory {str(root)!r} not found: pass the folder of label PNGs")
    by_stem: dict[str, Path] = {}
    for p in sorted(root.rglob("*.png")):
        if p.stem in by_stem:  # nested folders with the same file names: matching by stem would pair them wrongly
            raise UserError(f"label name {p.stem!r} appears twice in {str(root)!r} ({by_stem[p.stem]}, {p}): "
                            "labels are matched to images by file name, so give each one a unique name")
        by_stem[p.stem] = p
    stems = [n.stem for n in names]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise UserError(f"image name {twice[0]!r} appears twice among the images: labels are matched by file "
                        "name, so give each image a unique name")
    out = []
    for name in names:
        path = by_stem.get(name.stem)
        if path is None:
            raise UserError(f"no label PNG for image {name.name} in {str(root)!r}: labels must share the image's file stem")
        try:
            with open_image(path, "label") as im:
                if im.mode in ("RGB", "RGBA"):
                    im = im.convert("RGB")
                elif im.mode not in ("P", "L", "I", "I;16"):
                    raise UserError(f"label {str(path)!r} is {im.mode}: save labels as palette, grey or VOC-coloured RGB PNGs")
                lab = im.resize((size[1], size[0]), Image.NEAREST) if im.size != (size[1], size[0]) else im
                arr = np.asarray(lab)
                arr = _decode_voc_rgb(arr, path) if arr.ndim == 3 else arr.astype(np.int64)
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"cannot read label {str(path)!r} ({type(exc).__name__}): remove or replace it") from exc
        bad = np.unique(arr[(arr >= num_classes) & (arr != ignore_index)])
        if bad.size:
            raise UserError(f"label {str(path)!r} has values {bad[:5].tolist()} outside 0..{num_classes - 1} "
                            f"(and {ignore_index} = ignore): check --num-classes or the label files")
        out.append(arr)
    return np.stack(out)


def _decode_voc_rgb(rgb: np.ndarray, path: Path) -> np.ndarray:
    """Class indices of a label painted in the VOC colour map (as VOC's own ground truth is when
    saved without its palette). Colours outside the map cannot be guessed: they are refused."""
    from segexport.data.synth import voc_palette

    table = np.asarray(voc_palette(), np.int64).reshape(256, 3)
    codes = (table[:, 0] << 16) | (table[:, 1] << 8) | table[:, 2]
    pixel = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    order = np.argsort(codes)
    pos = np.clip(np.searchsorted(codes[order], pixel), 0, 255)
    found = codes[order][pos] == pixel
    if not found.all():
        bad = [tuple(int(v) for v in rgb[i, j]) for i, j in zip(*np.nonzero(~found))][:3]
        raise UserError(f"label {str(path)!r} has colours {bad} outside the VOC colour map: "
                        "save labels as palette or grey PNGs of class indices")
    return order[pos].astype(np.int64)
