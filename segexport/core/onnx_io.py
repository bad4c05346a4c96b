"""Loading an ONNX file that any command was given, with one-line errors."""

from __future__ import annotations

from pathlib import Path

import onnx

from segexport.errors import UserError


def load_onnx(path: str | Path, *, external_data: bool = False) -> onnx.ModelProto:
    """Load an ONNX file given on the command line, or fail with one line.

    Why not plain ``onnx.load``: protobuf parses almost any short byte string as an empty
    ModelProto, so a PNG or a text file passed by mistake "loads", lints clean, and only
    fails later as a TensorRT "network must have at least one output". A model without
    graph outputs is refused here instead.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ONNX file {str(path)!r} not found" if not path.exists()
                        else f"{str(path)!r} is a directory: give the .onnx file" if path.is_dir()
                        else f"{str(path)!r} is not a regular file: give the .onnx file")
    quiet_onnxruntime()
    try:
        graph_only = onnx.load(str(path), load_external_data=False)
    except Exception:
        graph_only = None
    if graph_only is not None:
        check_external_data(graph_only, path)
    try:
        model = onnx.load(str(path), load_external_data=external_data) if external_data or graph_only is None \
            else graph_only
    except Exception as exc:
        if external_data:  # the graph may be fine and only its weights file missing
            if graph_only is not None:
                files = sorted({e.value for t in graph_only.graph.initializer for e in t.external_data
                                if e.key == "location"})
                raise UserError(f"{str(path)!r} keeps its weights in {', '.join(files) or 'an external file'}, which "
                                f"cannot be read beside it ({type(exc).__name__}): keep the .onnx and its data "
                                "file(s) in one folder") from exc
        raise UserError(f"{str(path)!r} is not an ONNX model ({type(exc).__name__}): "
                        "pass the .onnx written by `segexport onnx`") from exc
    if not model.graph.output:
        raise UserError(f"{str(path)!r} is not an ONNX model (no graph outputs): "
                        "pass the .onnx written by `segexport onnx`")
    return model


def _external_tensors(model: onnx.ModelProto):
    """Every tensor that may keep its bytes in another file: initializers, and tensors held in
    node attributes (Constant values), subgraphs included."""
    from onnx.external_data_helper import _get_all_tensors

    return _get_all_tensors(model)


def check_external_data(model: onnx.ModelProto, path: str | Path) -> list[Path]:
    """Refuse external data that resolves outside the model's folder (``..``, an absolute path,
    or a symlink to ``/etc/passwd``) or is not a regular file (a FIFO would hang the reader).

    Why here: ONNX Runtime and ``onnx.checker`` refuse such paths, but TensorRT's parser and
    ``onnx.load`` follow them, so a downloaded model could make ``segexport engine`` read (and
    bake into an engine) any file the user can read. Every command loads an ONNX through
    :func:`load_onnx`, so this is the one check. Returns the external files (inputs too).
    """
    path = Path(path)
    folder = path.resolve().parent
    files: list[Path] = []
    for tensor in _external_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        where = (path.parent / location)
        target = where.resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise UserError(f"{path.name}: the external data of tensor {tensor.name[:80]!r} points outside the "
                            f"model's folder ({location[:120]!r}); refusing to read it: keep the weights file "
                            "beside the .onnx")
        if target.exists() and not target.is_file():
            raise UserError(f"{path.name}: the external data {location[:120]!r} is not a regular file; "
                            "keep the weights file beside the .onnx")
        files.append(where)
    return sorted(set(files))


_QUIET = False


def quiet_onnxruntime() -> None:
    """ONNX Runtime's default logger prints warnings (with ANSI colour) straight to the
    terminal from C++; segexport reports in its own words, so only errors get through."""
    global _QUIET
    if _QUIET:
        return
    _QUIET = True
    try:
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)
    except Exception:  # onnxruntime missing: nothing to quiet
        pass
