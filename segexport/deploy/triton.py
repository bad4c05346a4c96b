"""A model in a Triton Inference Server model repository: ``REPO/<name>/config.pbtxt`` + ``REPO/<name>/1/model.*``.

A repository holds many models, so ``REPO`` may be new or already serving others: only the
model's own folder is written, and an existing one is replaced only with ``force``. Everything
segexport writes for the model stays inside that folder (``build_engine.sh``, ``bundle.json``
beside ``config.pbtxt``; Triton reads only ``config.pbtxt``, ``labels.txt`` and the numbered
version folders), so models added one by one never collide at the repository root. The folder is
staged beside the repository and renamed in whole: a server polling the repository never sees a
half-written model.

Names, data types and dims come from the ONNX graph (``-1`` where H/W are dynamic); the batch
policy from the export record's profile (a dynamic batch axis becomes ``max_batch_size`` and
dynamic batching; a static one is part of the dims with ``max_batch_size: 0``). The
preprocessing contract and class names travel in ``parameters`` so a client can read them from
the server (``/v2/models/<name>/config``) instead of hard-coding them.

Why the text format is written by hand: the schema (``model_config.proto``) ships only inside
``tritonclient``, whose pins clash with onnx's protobuf; the tests parse every generated file
with that schema instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from segexport.errors import UserError

TRITON_TYPES = {"FLOAT": "TYPE_FP32", "FLOAT16": "TYPE_FP16", "BFLOAT16": "TYPE_BF16", "DOUBLE": "TYPE_FP64",
                "INT64": "TYPE_INT64", "INT32": "TYPE_INT32", "INT8": "TYPE_INT8", "UINT8": "TYPE_UINT8",
                "BOOL": "TYPE_BOOL"}
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass
class TritonBundle:
    """What ``deploy_triton`` wrote."""

    out: Path  # the model repository
    name: str
    model_dir: Path  # out / name: config.pbtxt, labels.txt, 1/, build_engine.sh, bundle.json
    config: Path
    model_file: Path
    platform: str
    max_batch_size: int
    instances: int
    files: list[str] = field(default_factory=list)  # relative to the repository: <name>/config.pbtxt, ...
    gate: object = None  # a reduced ONNX: the accuracy gate's verdict against its fp32 source
    selfcheck: object = None  # segexport.deploy.golden.SelfCheck: what selfcheck/ holds


def _quote(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid protobuf text-format string literal


def deploy_triton(onnx_path: str | Path, out: str | Path, *, engine: str | Path | None = None,
                  name: str | None = None, max_batch: int | None = None, instances: int = 1,
                  target_trt: str | None = None, target_cc: str | None = None,
                  workspace_mib: int = 1024, reference: str | Path | None = None,
                  max_agreement_drop: float | None = None, max_miou_drop: float | None = None,
                  force: bool = False, selfcheck_images: str | Path | None = None) -> TritonBundle:
    """Add ``onnx_path`` as model ``name`` to the Triton model repository ``out`` (new, or holding other
    models); an existing ``out/<name>`` is replaced only with ``force``.

    With ``engine`` (built from this ONNX, by TensorRT, for ``target_trt``/``target_cc`` when given)
    the model is a ``tensorrt_plan``; otherwise the ONNX runs on the ``onnxruntime_onnx`` platform.
    ``<name>/selfcheck/`` holds the golden inputs, the fp32 labels and the script
    that judges the plan on the server (:mod:`segexport.deploy.golden`).
    """
    from segexport.core.hashing import sha256_file
    from segexport.core.onnx_io import load_onnx
    from segexport.deploy.bundle import BUNDLE_SCHEMA, check_engine_for, graph_io
    from segexport.deploy.deepstream import resolve_precision
    from segexport.deploy.trtexec import build_script, plan_for
    from segexport.exporter.metadata import read_record

    onnx_path = Path(onnx_path)
    out = Path(out)
    check_repository(out)
    from segexport.deploy.golden import check_images

    check_images(selfcheck_images)  # a wrong folder is refused before any work
    if instances < 1:
        raise UserError(f"--instances must be >= 1, got {instances}")
    model = load_onnx(onnx_path)
    record = read_record(model)
    if name is None:  # a user model's record names its factory (path/file.py:build): fall back to the file name
        name = record.model if _NAME.fullmatch(record.model) else onnx_path.stem
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise UserError(f"--name {name!r} is not a Triton model name: use letters, digits, '_', '-', '.'")
    check_model_folder(out, name, force)  # before the accuracy gate and the copies: a clash costs nothing
    inputs, outputs = graph_io(model)
    if len(inputs) != 1:
        raise UserError(f"{onnx_path.name} has {len(inputs)} inputs; segexport models take one image tensor")
    for t in (*inputs, *outputs):
        if t.dtype not in TRITON_TYPES:
            raise UserError(f"tensor {t.name!r} has type {t.dtype}, which Triton has no type for: re-export the model")
    dynamic_batch = "batch" in record.dynamic
    if dynamic_batch:
        hi = record.dynamic["batch"].max
        max_batch_size = hi if max_batch is None else max_batch
        if not 1 <= max_batch_size <= hi:
            raise UserError(f"--max-batch {max_batch_size} is outside the exported batch range 1..{hi}: choose one "
                            "in it or re-export with a larger --batch-range")
    else:
        if max_batch not in (None, 0):
            raise UserError(f"{onnx_path.name} has a static batch of {record.batch}: Triton batching needs a dynamic "
                            "batch axis; re-export with `segexport onnx --dynamic batch`, or drop --max-batch")
        max_batch_size = 0
    sha = sha256_file(onnx_path)
    if engine is not None:
        check_engine_for(engine, sha, onnx_path.name, target_trt=target_trt, target_cc=target_cc,
                         what="Triton's tensorrt_plan platform")
    precision, strongly_typed = resolve_precision(model, onnx_path, None, None)
    from segexport.deploy.bundle import gate_reduced

    gate = gate_reduced(onnx_path, model, reference=reference, max_agreement_drop=max_agreement_drop,
                 max_miou_drop=max_miou_drop)  # a reduced ONNX ships only if it still passes its accuracy gate
    platform, model_file = ("tensorrt_plan", "model.plan") if engine is not None else ("onnxruntime_onnx", "model.onnx")
    external = sorted({e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"})
    for data in external:  # a name read from the file: it must not lead out of the model's folder
        if Path(data).name != data or data in (".", ".."):
            raise UserError(f"{onnx_path.name} names its weights file {data!r}, not a plain file beside it: "
                            "re-save the ONNX with its data file in the same folder")
        if not (onnx_path.parent / data).is_file():
            raise UserError(f"{onnx_path.name} keeps its weights in {data}, which is not beside it: keep the .onnx "
                            "and its data file in one folder")

    def dims(shape: tuple[int, ...]) -> str:
        return "[ " + ", ".join(str(d) for d in (shape[1:] if dynamic_batch else shape)) + " ]"

    params = {"segexport.preprocess": record.preprocess.to_json(),
              "segexport.class_names": json.dumps(list(record.class_names)),
              "segexport.model": record.model, "segexport.argmax": json.dumps(record.argmax),
              "segexport.source_onnx_sha256": sha}
    lines = [f"name: {_quote(name)}", f"platform: {_quote(platform)}", f"max_batch_size: {max_batch_size}"]
    for t in inputs:
        lines += ["input [", "  {", f"    name: {_quote(t.name)}", f"    data_type: {TRITON_TYPES[t.dtype]}",
                  "    format: FORMAT_NCHW", f"    dims: {dims(t.dims)}", "  }", "]"]
    for i, t in enumerate(outputs):
        lines += ["output [", "  {", f"    name: {_quote(t.name)}", f"    data_type: {TRITON_TYPES[t.dtype]}",
                  f"    dims: {dims(t.dims)}"]
        if i == 0 and not record.argmax:
            lines.append('    label_filename: "labels.txt"')
        lines += ["  }", "]"]
    lines += ["instance_group [", "  {", f"    count: {instances}", "    kind: KIND_GPU", "  }", "]"]
    if dynamic_batch:
        opt = record.dynamic["batch"].opt
        lines += ["dynamic_batching {", f"  preferred_batch_size: [ {min(opt, max_batch_size)} ]",
                  "  max_queue_delay_microseconds: 100", "}"]
    for key, value in params.items():
        lines += ["parameters {", f"  key: {_quote(key)}", f"  value: {{ string_value: {_quote(value)} }}", "}"]
    config = "\n".join(lines) + "\n"

    with staged_model_folder(out, name, force) as model_dir:
        version = model_dir / "1"
        version.mkdir()
        if engine is not None:
            shutil.copyfile(engine, version / model_file)
        else:
            shutil.copyfile(onnx_path, version / model_file)
            for data in external:  # weights beside the ONNX travel with it
                shutil.copyfile(onnx_path.parent / data, version / data)
        (model_dir / "config.pbtxt").write_text(config)
        (model_dir / "labels.txt").write_text("".join(f"{c}\n" for c in record.class_names))
        # build_engine.sh runs in its own folder (it cds there): paths are the model folder's
        plan = plan_for(record, onnx="1/model.onnx" if engine is None else onnx_path.name,
                        engine="1/model.plan", precision=precision, strongly_typed=strongly_typed,
                        calib_cache=None, workspace_mib=workspace_mib)
        script = model_dir / "build_engine.sh"
        script.write_text(build_script(plan, after=(
            "# Then serve the plan: set platform: \"tensorrt_plan\" in config.pbtxt and remove 1/model.onnx\n"
            f"# (or run `segexport deploy triton --engine {name}/1/model.plan --force` again for this model).\n")))
        script.chmod(0o755)
        from segexport.deploy.golden import write_selfcheck

        selfcheck = write_selfcheck(model_dir, kind="triton", source=onnx_path, source_model=model, record=record,
                                    bundle_model=onnx_path, bundle_input=inputs[0].name, bundle_output=record.output_name,
                                    raw_pixels=False, engine="1/model.plan",
                                    onnx="1/model.onnx" if engine is None else None, precision=precision,
                                    reference=reference, images=selfcheck_images, max_agreement_drop=max_agreement_drop)
        manifest = {"schema": BUNDLE_SCHEMA, "kind": "triton", "source_onnx": onnx_path.name,
                    "source_onnx_sha256": sha, "name": name, "platform": platform,
                    "max_batch_size": max_batch_size, "instances": instances, "precision": precision,
                    "preprocess": asdict(record.preprocess), "selfcheck": asdict(selfcheck)}
        (model_dir / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")
        files = sorted(f"{name}/{p.relative_to(model_dir)}" for p in model_dir.rglob("*") if p.is_file())
    folder = out / name
    return TritonBundle(out=out, name=name, model_dir=folder, config=folder / "config.pbtxt",
                        model_file=folder / "1" / model_file, platform=platform, max_batch_size=max_batch_size,
                        instances=instances, files=files, gate=gate, selfcheck=selfcheck)


def check_repository(out: Path) -> None:
    """``out`` is a model repository to add to: a folder (new, empty or holding other models) in a
    writable place. Checked before any work."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} is a file: give the model repository's folder (new or existing)")
    where = out if out.is_dir() else (out.parent if str(out.parent) else Path("."))
    if not where.is_dir():
        raise UserError(f"output directory {str(where)!r} does not exist: create it or choose another --out")
    if not os.access(where, os.W_OK | os.X_OK):
        raise UserError(f"{'model repository' if where == out else 'output directory'} {str(where)!r} is not "
                        "writable: choose another --out")


def check_model_folder(out: Path, name: str, force: bool) -> None:
    """The one thing an addition may not do unasked: replace a model the repository already serves."""
    folder = out / name
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise UserError(f"{str(folder)!r} exists and is not a model folder: remove it or choose another --name")
    if folder.exists() and not force:
        raise UserError(f"model {name!r} already exists in the repository {str(out)!r}: pass --force to replace "
                        "it, or choose another --name")


@contextmanager
def staged_model_folder(out: Path, name: str, force: bool) -> Iterator[Path]:
    """Yield a hidden folder beside the repository; when the block succeeds it becomes ``out/<name>``
    in one rename (the repository is created then if it is new). Staged outside the repository, so a
    server polling it never loads a partial model; a failure, Ctrl-C or SIGTERM leaves the repository
    as it was (and no repository at all if it was new)."""
    from segexport.core.files import as_if_created

    check_repository(out)
    check_model_folder(out, name, force)
    real = out.resolve()  # a symlinked repository: stage beside its target, on its file system
    stage = Path(tempfile.mkdtemp(prefix=f".{real.name}.{name}.", suffix=".partial", dir=real.parent))
    old = None
    try:
        yield stage
        as_if_created(stage, 0o777)
        created = not real.exists()
        real.mkdir(exist_ok=True)
        target = real / name
        if target.exists():  # --force (checked above): move the old model aside, then swap in the new one
            old = Path(tempfile.mkdtemp(prefix=f".{real.name}.{name}.", suffix=".old", dir=real.parent))
            os.replace(target, old / name)
        try:
            os.replace(stage, target)
        except BaseException:
            if old is not None:  # the new one did not land: the old model goes back, nothing is lost
                os.replace(old / name, target)
            elif created:
                real.rmdir()
            raise
    finally:
        for leftover in (stage, old):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
