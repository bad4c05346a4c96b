"""What every deployment bundle shares: the staged output folder, the ONNX's tensors, engine checks.

A bundle is a folder of files that only make sense together (a config naming a model file,
labels, a build script), so it is written the way one file is: staged in a hidden folder
beside ``--out`` and renamed into place only when every file is written and every check
passed. A failed check, Ctrl-C or a crash leaves no half bundle for a deployment to pick up.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from segexport.errors import UserError

BUNDLE_SCHEMA = 1


def check_out_dir(out: str | Path, flag: str = "--out") -> Path:
    """Refuse an output folder that holds anything, or whose parent is missing/unwritable, before work."""
    out = Path(out)
    if out.is_symlink():  # the bundle replaces --out by a rename: a link would be replaced, not filled
        raise UserError(f"{flag} {str(out)!r} is a symlink: give a new folder name (or the folder it points to)")
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag} {str(out)!r} is a file: give a new folder name")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"{flag} {str(out)!r} is not empty: give a new folder (a bundle never mixes with old files)")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"output directory {str(parent)!r} does not exist: create it or choose another {flag}")
    if not os.access(parent, os.W_OK):
        raise UserError(f"output directory {str(parent)!r} is not writable: choose another {flag}")
    return out


@contextmanager
def staged_dir(out: str | Path, flag: str = "--out") -> Iterator[Path]:
    """Yield a hidden staging folder beside ``out``; rename it onto ``out`` only if the block succeeds.

    In the CLI a SIGTERM unwinds like Ctrl-C (``segexport.core.interrupts``), so ``kill`` removes
    the staging folder too.
    """
    from segexport.core.files import as_if_created

    out = check_out_dir(out, flag)
    parent = out.parent if str(out.parent) else Path(".")
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=parent))
    try:
        yield stage
        as_if_created(stage, 0o777)
        if out.is_dir():
            out.rmdir()  # empty (checked above); a racing writer makes this fail loudly, not merge
        os.replace(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: name, ONNX element type name, dims (``-1`` where symbolic)."""

    name: str
    dtype: str
    dims: tuple[int, ...]


def graph_io(model) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """Inputs (without initializers) and outputs of a loaded ONNX, as the graph declares them."""
    import onnx

    inits = {t.name for t in model.graph.initializer}

    def info(v) -> TensorInfo:
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        return TensorInfo(v.name, onnx.TensorProto.DataType.Name(t.elem_type), dims)

    return [info(v) for v in model.graph.input if v.name not in inits], [info(v) for v in model.graph.output]


def check_engine_for(engine: str | Path, onnx_sha256: str, onnx_name: str, *, target_trt: str | None = None,
                     target_cc: str | None = None, what: str = "this bundle"):
    """The engine's sidecar, after refusing an engine that was not built from the ONNX ``onnx_sha256``, was built
    by TensorRT-RTX (DeepStream and Triton load TensorRT engines), or for another TensorRT version /
    compute capability than the target asked for. The sidecar is data: only compared, never run."""
    from segexport.engines.builder import read_engine_info

    engine = Path(engine)
    if not engine.is_file():
        raise UserError(f"engine {str(engine)!r} not found: build it with `segexport engine` or leave --engine out")
    try:
        info = read_engine_info(engine)
    except (ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"{engine.name}.json is not a segexport engine sidecar ({type(exc).__name__}): rebuild the "
                        "engine with `segexport engine`") from exc
    if info.onnx_sha256 != onnx_sha256:
        raise UserError(f"{engine.name} was built from another ONNX (SHA-256 {str(info.onnx_sha256)[:12]}…), not "
                        f"{onnx_name}: build it from this ONNX (see build_engine.sh) or leave --engine out")
    if info.backend != "trt":
        raise UserError(f"{engine.name} is a {info.backend} {info.tensorrt_version} plan; {what} loads TensorRT "
                        "engines: build on the target with TensorRT (build_engine.sh) or leave --engine out")
    if target_trt is not None and not _same_version(info.tensorrt_version, target_trt):
        raise UserError(f"{engine.name} was built with TensorRT {info.tensorrt_version}, the target runs {target_trt}: "
                        "engines only load on the TensorRT version that built them; build it on the target")
    if target_cc is not None:
        built = info.compute_capability
        if built is None or built != target_cc:
            raise UserError(f"{engine.name} was built for compute capability {built or 'an unrecorded GPU'}, the "
                            f"target is {target_cc}: build the engine on the target GPU (build_engine.sh)")
    return info


def _same_version(built: str, target: str) -> bool:
    """``target`` may be given to any precision: 10.3 matches 10.3.0.30."""
    want = target.split(".")
    return built.split(".")[: len(want)] == want


def parse_cc(text: str | None) -> str | None:
    """``"8.7"``, ``"87"`` or ``"sm87"`` -> ``"8.7"`` (the engine sidecar's spelling)."""
    if text is None:
        return None
    raw = text.lower().removeprefix("sm").replace("_", "").strip()
    if "." in raw:
        major, _, minor = raw.partition(".")
    else:
        major, minor = raw[:-1], raw[-1:]
    if not (major.isdigit() and minor.isdigit()):
        raise UserError(f"--target-cc {text!r} is not a compute capability: write e.g. 8.7 (Orin) or sm87")
    return f"{int(major)}.{int(minor)}"


def gate_reduced(onnx_path: str | Path, model, *, reference: str | Path | None = None,
                 max_agreement_drop: float | None = None, max_miou_drop: float | None = None) -> object | None:
    """A reduced (fp16 / int8 Q/DQ) ONNX ships only if it still passes calibrate's accuracy gate
    against its fp32 source, re-measured here (a bundle is what reaches the device; a sidecar's
    word is not enough). Reduced is what the *graph* holds, whatever its metadata says.
    ``CheckFailed`` in one line when it fails; the verdict otherwise (None for fp32)."""
    from segexport.core.graph import held_precision

    if held_precision(model) == "fp32":
        return None
    from segexport.calib.pipeline import judge_reduced
    from segexport.errors import CheckFailed

    verdict = judge_reduced(Path(onnx_path), None if reference is None else Path(reference),
                            max_agreement_drop=max_agreement_drop, max_miou_drop=max_miou_drop)
    if not verdict.passed:
        raise CheckFailed(f"{Path(onnx_path).name}: {verdict.line}; no bundle written")
    return verdict
