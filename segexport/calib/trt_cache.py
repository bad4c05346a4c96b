"""TensorRT's calibration cache, written from our own activation ranges, and read back.

The text format TensorRT's calibrators write and ``trtexec --calib`` / DeepStream's
``int8-calib-file`` read: a header ``TRT-<version>-<algorithm>`` and one line per tensor,
``<tensor name>: <scale>``, the scale being the per-tensor INT8 scale (amax / 127) as the
big-endian hex of its IEEE-754 float32. TensorRT ignores a cache whose header names another
version, so the writer takes the target version (the installed TensorRT's, else --trt-version,
default 10.3.0 = JetPack 6). Tensor names are the ONNX tensor names, which the parser keeps.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from segexport.errors import UserError

ALGORITHMS = {"entropy": "EntropyCalibration2", "minmax": "MinMaxCalibration", "percentile": "EntropyCalibration2"}
_HEADER = re.compile(r"^TRT-(\d+)-(\w+)$")
DEFAULT_TRT_VERSION = "10.3.0"


def version_code(version: str) -> int:
    """``"10.3.0"`` -> 100300 (TensorRT >= 10: MMmmpp), ``"8.6.1"`` -> 8601 (TensorRT 8: Mmpp)."""
    try:
        major, minor, patch = (int(p) for p in (version.split(".") + ["0", "0"])[:3])
    except ValueError:
        raise UserError(f"--trt-version {version!r} is not like 10.3.0") from None
    return major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch


def cache_version(explicit: str | None, target: str | None) -> str:
    """The TensorRT version a cache header names: --trt-version, else the export's recorded
    --target (JetPack 5: 8.5.2), else the installed TensorRT's, else DEFAULT_TRT_VERSION. A
    --trt-version that contradicts the recorded target is refused: that TensorRT would ignore it."""
    from segexport.core.targets import get_target

    wanted = get_target(target).trt_version if target is not None else None
    if explicit is not None:
        if wanted is not None and version_code(explicit) != version_code(wanted):
            raise UserError(f"--trt-version {explicit} contradicts the export's --target {target} (TensorRT {wanted}), "
                            "whose TensorRT would ignore the cache: drop --trt-version or re-export for that target")
        return explicit
    if wanted is not None:
        return wanted
    from segexport.core.tensorrt import available

    installed = available("trt")
    return installed.version if installed else DEFAULT_TRT_VERSION


def scale_hex(scale: float) -> str:
    return struct.pack(">f", scale).hex()


def write_cache(path: str | Path, amax: dict[str, float], *, trt_version: str = DEFAULT_TRT_VERSION,
                algorithm: str = "entropy") -> None:
    """Write ``amax`` (tensor -> max |activation|) as a TensorRT calibration cache."""
    from segexport.core.files import atomic_output

    lines = [f"TRT-{version_code(trt_version)}-{ALGORITHMS[algorithm]}"]
    for name in sorted(amax):
        value = float(amax[name])
        scale = value / 127.0 if value > 0 else 1.0 / 127.0  # an all-zero tensor still needs a valid scale
        lines.append(f"{name}: {scale_hex(scale)}")
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def read_cache(path: str | Path) -> tuple[int, str, dict[str, float]]:
    """(version code, algorithm, tensor -> scale) of a cache; malformed lines are errors."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"calibration cache {str(p)!r} not found")
    try:
        lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:  # a binary or unreadable file given as a cache
        raise UserError(f"{p.name} is not a TensorRT calibration cache ({type(exc).__name__}): "
                        "write one with `segexport calibrate --trt-cache`") from exc
    m = _HEADER.match(lines[0]) if lines else None
    if not m:
        raise UserError(f"{p.name} is not a TensorRT calibration cache (first line should be TRT-<version>-<algorithm>)")
    scales: dict[str, float] = {}
    for i, line in enumerate(lines[1:], start=2):
        name, sep, hexval = line.rpartition(": ")
        if not sep or not re.fullmatch(r"[0-9a-fA-F]{8}", hexval):
            raise UserError(f"{p.name} line {i} is not '<tensor>: <8 hex digits>': {line[:60]!r}")
        scales[name] = struct.unpack(">f", bytes.fromhex(hexval))[0]
    return int(m.group(1)), m.group(2), scales
