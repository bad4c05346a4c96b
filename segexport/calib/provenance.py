"""Provenance sidecars: which ONNX, data and settings produced a calibration artefact.

A stale calibration (a cache made for an earlier export) builds without complaint in other
tools and silently ruins accuracy; segexport records the source ONNX's SHA-256 next to every
cache and Q/DQ model and refuses a mismatch.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

from segexport.errors import UserError


@dataclass
class Provenance:
    artefact: str
    kind: str  # "qdq-onnx" | "fp16-onnx" | "trt-cache"
    source_onnx: str
    source_onnx_sha256: str
    data_source: str
    data_manifest_sha256: str
    count: int
    method: str
    preprocess: dict
    versions: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    schema: int = 1


def sidecar_for(path: str | Path) -> Path:
    return Path(str(path) + ".json")


def tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    from segexport._version import __version__

    out = {"segexport": __version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
           "python": platform.python_version()}
    try:
        import onnxconverter_common

        out["onnxconverter_common"] = onnxconverter_common.__version__
    except ImportError:
        pass
    return out


def provenance_text(prov: Provenance) -> str:
    """The sidecar's JSON, with paths relative to the sidecar's folder: the artefact and its sidecar
    move together (a CI artefact upload, a cache restore), and an absolute path would leak the build
    machine's layout."""
    import os

    from segexport.core.jsonio import dumps

    here = Path(prov.artefact).parent
    doc = asdict(prov) | {"artefact": Path(prov.artefact).name,
                          "source_onnx": Path(os.path.relpath(Path(prov.source_onnx), here)).as_posix()}
    return dumps(doc, indent=2) + "\n"


def write_provenance(prov: Provenance, path: str | Path | None = None) -> None:
    """Write the sidecar of ``prov.artefact`` (or into ``path``: a staged temp of it)."""
    if path is not None:
        Path(path).write_text(provenance_text(prov))
        return
    from segexport.core.files import atomic_output

    with atomic_output(sidecar_for(prov.artefact)) as tmp:
        tmp.write_text(provenance_text(prov))


def check_matches(artefact: str | Path, onnx_path: str | Path) -> Provenance:
    """Refuse ``artefact`` (a cache or reduced ONNX) unless it was made from ``onnx_path``."""
    from segexport.core.hashing import sha256_file

    side = sidecar_for(artefact)
    if not side.is_file():
        raise UserError(f"{Path(artefact).name} has no provenance sidecar ({side.name}): recalibrate with `segexport calibrate`")
    try:
        raw = json.loads(side.read_text())
        prov = Provenance(**{k: v for k, v in raw.items() if k in Provenance.__dataclass_fields__})
        if not isinstance(prov.source_onnx_sha256, str):
            raise TypeError("source_onnx_sha256 is not a string")
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:  # truncated or hand-edited
        raise UserError(f"{side.name} is damaged ({type(exc).__name__}): recalibrate with `segexport calibrate`") from exc
    actual = sha256_file(onnx_path)
    if prov.source_onnx_sha256 != actual:
        raise UserError(f"{Path(artefact).name} was calibrated for another ONNX (SHA-256 {prov.source_onnx_sha256[:12]}…, "
                        f"this is {actual[:12]}…): stale calibration; rerun `segexport calibrate {onnx_path}`")
    return prov
