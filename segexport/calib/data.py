"""Calibration data, preprocessed exactly as the ONNX's contract says.

Sources: a folder of images (recursive), a ``.npy``/``.npz`` (either N x 3 x H x W float32
already preprocessed, or N x H x W x 3 uint8 images that get the contract's preprocessing),
or ``synthetic`` (the deterministic set of :mod:`segexport.data.synth`). The manifest hash
identifies the data in provenance sidecars: a calibration is only as good as its data.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segexport.data.contract import PreprocessContract
from segexport.errors import UserError


@dataclass
class CalibrationData:
    inputs: np.ndarray  # N x 3 x H x W float32, preprocessed
    source: str
    manifest_sha256: str
    files: list[Path] | None = None


def check_calibration_source(source: str | Path, count: int) -> None:
    """The cheap checks of ``load_calibration_data`` (count, path, kind), for commands that
    must refuse bad calibration input before other work (``segexport onnx --precision``)."""
    from segexport.core.limits import check_count

    if count < 1:
        raise UserError(f"--calib-count must be >= 1, got {count}")
    check_count(count, "--calib-count")
    if str(source) == "synthetic":
        return
    path = Path(source)
    if path.is_dir():
        from segexport.data.images import list_images

        list_images(path, limit=count)
        return
    if not path.exists():
        raise UserError(f"calibration data {str(path)!r} not found: pass an image folder, a .npy/.npz, or 'synthetic'")
    if path.suffix not in (".npy", ".npz"):
        raise UserError(f"calibration data {str(path)!r} is not a folder, .npy or .npz")
    if not path.is_file():  # a FIFO would block the reader forever
        raise UserError(f"calibration data {str(path)!r} is not a regular file: pass a .npy/.npz file")


def load_calibration_data(source: str | Path, contract: PreprocessContract, *, count: int = 32, seed: int = 0,
                          num_classes: int = 21) -> CalibrationData:
    check_calibration_source(source, count)
    h, w = contract.input_size
    from segexport.core.limits import check_elements

    check_elements((count, 3, h, w), f"{count} calibration samples at {h}x{w}")
    if str(source) == "synthetic":
        from segexport.data.images import preprocess
        from segexport.data.synth import synthetic_arrays

        images, _ = synthetic_arrays(count, (h, w), max(2, num_classes), seed=seed)
        x = np.stack([preprocess(im, contract) for im in images])
        return CalibrationData(x, "synthetic", _sha(x))
    path = Path(source)
    if path.is_dir():
        from segexport.data.images import load_images

        x, files = load_images(path, contract, limit=count, seed=seed)
        digest = hashlib.sha256()
        for f in files:  # relative paths: the same folder hashes the same wherever it is mounted
            digest.update(f.relative_to(path).as_posix().encode())
            digest.update(f.read_bytes())
        return CalibrationData(x, str(path), digest.hexdigest(), files)
    try:
        arr = _load_numpy(path)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"cannot read {str(path)!r} as numpy data ({type(exc).__name__}: {exc})") from exc
    x = _from_array(np.asarray(arr), contract, path)
    if len(x) == 0:
        raise UserError(f"{str(path)!r} holds 0 samples: save at least one")
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    if bad:  # one NaN turns every range it reaches into NaN, and the calibrator fails or drops tensors
        raise UserError(f"{str(path)!r} holds {bad} NaN/inf values: calibration data must be finite")
    if len(x) > count:
        idx = np.sort(np.random.default_rng(seed).choice(len(x), size=count, replace=False))
        x = x[idx]
    return CalibrationData(np.ascontiguousarray(x, dtype=np.float32), str(path), _sha(x))


def _load_numpy(path: Path) -> np.ndarray:
    """The samples of a .npy or the first array of a .npz, its size checked from the header first.

    The file is data: no pickles (``allow_pickle=False``), and a header announcing more elements
    than segexport holds in memory is refused before anything is read or decompressed (a 1 MB
    ``savez_compressed`` of zeros can unpack to tens of GB)."""
    from segexport.core.limits import check_elements

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if n.endswith(".npy")]
            if not members:
                raise UserError(f"{str(path)!r} holds no arrays: save the samples with np.savez(path, x)")
            with archive.open(members[0]) as f:
                check_elements(_header_shape(f), f"the first array of {path.name}", _SMALLER)
        with np.load(path, allow_pickle=False) as npz:
            return npz[members[0][: -len(".npy")]]
    with open(path, "rb") as f:
        check_elements(_header_shape(f), path.name, _SMALLER)
    return np.load(path, allow_pickle=False)


_SMALLER = "save fewer samples (calibration reads at most --calib-count of them)"


def _header_shape(f) -> tuple[int, ...]:
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _fortran, _dtype = read(f)
    return tuple(shape)


def _from_array(arr: np.ndarray, contract: PreprocessContract, path: Path) -> np.ndarray:
    h, w = contract.input_size
    if arr.ndim == 4 and arr.shape[1] == 3 and arr.dtype.kind == "f":
        if arr.shape[2:] != (h, w):
            raise UserError(f"{path.name} holds {arr.shape[2]}x{arr.shape[3]} tensors but the model takes {h}x{w}: "
                            "save N x 3 x H x W at the export size, or save uint8 N x H x W x 3 images")
        return arr.astype(np.float32)
    if arr.ndim == 4 and arr.shape[-1] == 3 and arr.dtype == np.uint8:
        from segexport.data.images import preprocess

        return np.stack([preprocess(im, contract) for im in arr])
    raise UserError(f"{path.name} has shape {list(arr.shape)} ({arr.dtype}): expected float32 N x 3 x {h} x {w} "
                    "(preprocessed) or uint8 N x H x W x 3 (images)")


def _sha(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
