"""A deterministic synthetic segmentation dataset, so tests, CI and users without data can
measure real accuracy (and calibrate INT8) with nothing downloaded.

Each image has a textured, noisy background (class 0) and a few shapes -- disks, rectangles,
triangles -- of classes 1..K-1. A class has its own hue *and* its own texture frequency, so
a small network can learn it, but noise, overlaps and random sizes keep the task from being
trivial: mIoU is meaningful and degrades visibly when precision is lost. Labels are written
as palette PNGs in the VOC colour map (255 = ignore is never used here).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from segexport.errors import UserError


def voc_palette(n: int = 256) -> list[int]:
    """The PASCAL VOC colour map (bit-interleaved), flat [r, g, b, ...] for Pillow."""
    palette = []
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def _class_colour(k: int, num_classes: int) -> np.ndarray:
    import colorsys

    h = (k - 1) / max(1, num_classes - 1)
    return np.array(colorsys.hsv_to_rgb(h, 0.75, 0.9)) * 255


def _check_class_count(num_classes: int) -> None:
    if num_classes < 2:
        raise UserError("--num-classes must be at least 2 for a synthetic dataset (background + one class)")
    if num_classes > 255:
        raise UserError(f"--num-classes {num_classes} is too many: label PNGs hold 0..254 (255 means ignore)")


def synthetic_sample(index: int, size: tuple[int, int], num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 HxWx3, labels uint8 HxW) pair; the same arguments give the same pair."""
    from PIL import Image, ImageDraw

    _check_class_count(num_classes)
    h, w = size
    rng = np.random.default_rng([seed, index])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    labels = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(labels)
    for _ in range(int(rng.integers(2, 5))):
        k = int(rng.integers(1, num_classes))
        r = float(rng.uniform(0.12, 0.3)) * min(h, w)
        cy, cx = float(rng.uniform(0, h)), float(rng.uniform(0, w))
        shape = int(rng.integers(0, 3))
        if shape == 0:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=k)
        elif shape == 1:
            draw.rectangle([cx - r, cy - 0.7 * r, cx + r, cy + 0.7 * r], fill=k)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=k)
    lab = np.asarray(labels, dtype=np.uint8)
    image = np.empty((h, w, 3), np.float32)
    base = 90 + 40 * np.sin(xx / 7.0 + rng.uniform(0, 6)) * np.cos(yy / 9.0)
    image[:] = base[..., None]
    for k in np.unique(lab):
        if k == 0:
            continue
        m = lab == k
        freq = 0.35 + 0.25 * (k % 4)
        texture = 25 * np.sin(freq * (xx + yy))[m]
        image[m] = _class_colour(int(k), num_classes) * 0.85 + texture[:, None]
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), lab


def synthetic_arrays(count: int, size: tuple[int, int], num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` samples as (images N x H x W x 3 uint8, labels N x H x W uint8)."""
    pairs = [synthetic_sample(i, size, num_classes, seed) for i in range(count)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def make_synthetic(out_dir: str | Path, count: int, size: tuple[int, int] = (96, 96), num_classes: int = 21,
                   seed: int = 0, progress=None) -> Path:
    """Write ``images/NNNNN.png``, ``labels/NNNNN.png`` (VOC palette) and ``manifest.json``.

    The set is built in a registered temp folder and moved into place only when complete, so
    a failure or a SIGTERM leaves nothing and a rerun never mixes old samples with new ones.
    An existing ``out_dir`` (``.`` included) is replaced only when it is an earlier synthetic
    set (it has our manifest), and the old set stays until the new one is complete.
    """
    from PIL import Image

    from segexport.core.files import as_if_created, discard_temp, new_temp
    from segexport.core.limits import check_count

    check_count(count)
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    _check_class_count(num_classes)  # before anything is written
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} is a file: give a directory for images/ and labels/")
    if out.is_dir() and any(out.iterdir()) and not _is_synthetic_set(out):
        raise UserError(f"--out {str(out)!r} is not empty and is no synthetic set: give a new or empty directory")
    replacing = out.is_dir()
    home = out if replacing else (out.parent if str(out.parent) else Path("."))  # where the staging folder lives
    if not home.is_dir():
        raise UserError(f"output directory {str(home)!r} does not exist: create it or choose another --out")
    try:
        staging = new_temp(home / "set" if replacing else out, directory=True, suffix="")
    except OSError as exc:
        raise UserError(f"cannot write in {str(home)!r} ({exc.strerror}): choose another --out") from exc
    try:
        as_if_created(staging, 0o777)  # mkdtemp makes 0700; a dataset is a shared folder
        try:
            _write_set(staging, count, size, num_classes, seed, progress, Image)
        except OSError as exc:
            from segexport.core.files import os_error_line

            raise (os_error_line(exc, out, "--out") or exc) from exc
        if replacing:
            _swap_into(out, staging)
        else:
            staging.rename(out)
    finally:
        discard_temp(staging)
    return out


_SET_ENTRIES = ("images", "labels", "manifest.json")


def _swap_into(out: Path, staging: Path) -> None:
    """Replace the set inside ``out`` (a folder that may be the current directory, so it cannot be
    renamed itself) by the complete one in ``staging``. The old manifest goes first and the new one
    comes last, so a set is never labelled complete while half old; signals wait meanwhile."""
    from segexport.core.files import blocked_signals, discard_temp, new_temp

    old = new_temp(out / "old-set", directory=True, suffix="")
    with blocked_signals():
        for name in reversed(_SET_ENTRIES):  # the manifest first
            if (out / name).exists():
                (out / name).rename(old / name)
        for name in _SET_ENTRIES:
            (staging / name).rename(out / name)
    discard_temp(old)


def _is_synthetic_set(path: Path) -> bool:
    try:
        return json.loads((path / "manifest.json").read_text()).get("generator") == "segexport.data.synth"
    except (OSError, ValueError, AttributeError):
        return False


def _write_set(out: Path, count: int, size: tuple[int, int], num_classes: int, seed: int, progress, Image) -> None:
    (out / "images").mkdir()
    (out / "labels").mkdir()
    palette = voc_palette()
    digest = hashlib.sha256()
    for i in range(count):
        image, lab = synthetic_sample(i, size, num_classes, seed)
        Image.fromarray(image).save(out / "images" / f"{i:05d}.png")
        label_img = Image.fromarray(lab, mode="P")
        label_img.putpalette(palette)
        label_img.save(out / "labels" / f"{i:05d}.png")
        digest.update(image.tobytes())
        digest.update(lab.tobytes())
        if progress:
            progress(i + 1)
    manifest = {"schema": 1, "count": count, "size": list(size), "num_classes": num_classes, "seed": seed,
                "sha256": digest.hexdigest(), "generator": "segexport.data.synth"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
