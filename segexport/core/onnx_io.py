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
        raise UserError(f"ONNX file {str(path)!r} not found" if not path.is_dir()
                        else f"{str(path)!r} is a directory: give the .onnx file")
    try:
        model = onnx.load(str(path), load_external_data=external_data)
    except Exception as exc:
        if external_data:  # the graph may be fine and only its weights file missing
            try:
                graph_only = onnx.load(str(path), load_external_data=False)
            except Exception:
                graph_only = None
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
