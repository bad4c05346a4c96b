"""Finding a TensorRT flavour and parsing ONNX with its real parser.

Polygraphy's TensorRT loaders (``NetworkFromOnnxBytes`` ...) import ``tensorrt`` by name, so
they cannot drive ``tensorrt_rtx``; the handful of calls needed here are written against the
documented API that both packages share, which keeps one code path for TensorRT 10, 11 and RTX.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from segexport.core.graph import has_qdq, needs_strong_typing  # noqa: F401  (re-exported)
from segexport.errors import UserError

if TYPE_CHECKING:  # the checker sees TensorRT 10's real API (tensorrt-stubs); nothing is imported at run time
    import tensorrt

FLAVOURS = ("trt", "rtx")
_MODULES = {"trt": "tensorrt", "rtx": "tensorrt_rtx"}


@dataclass
class Flavour:
    """An importable TensorRT package and what it can do."""

    backend: str  # "trt" or "rtx"
    module: ModuleType

    @property
    def version(self) -> str:
        return str(getattr(self.module, "__version__", "unknown"))

    @property
    def major(self) -> int:
        try:
            return int(self.version.split(".")[0])
        except ValueError:
            return 0

    @property
    def strongly_typed_only(self) -> bool:
        """TensorRT 11 and TensorRT-RTX: no implicit quantization, no precision builder flags."""
        return self.backend == "rtx" or self.major >= 11

    @property
    def label(self) -> str:
        return f"{'TensorRT-RTX' if self.backend == 'rtx' else 'TensorRT'} {self.version}"


def available(backend: str) -> Flavour | None:
    try:
        module = importlib.import_module(_MODULES[backend])
        if not hasattr(module, "Builder"):  # e.g. a stubs-only namespace package (tensorrt-stubs installed as such)
            return None
        return Flavour(backend, module)
    except ImportError:
        return None
    except Exception:  # a broken install (e.g. missing CUDA libraries) counts as unavailable
        return None


def find_flavour(backend: str = "auto") -> Flavour | None:
    """``auto`` prefers full TensorRT (it runs engines), then TensorRT-RTX."""
    if backend == "auto":
        return available("trt") or available("rtx")
    if backend not in FLAVOURS:
        raise UserError(f"--backend {backend!r} is not one of auto, trt, rtx")
    flavour = available(backend)
    if flavour is None:
        pkg = "tensorrt" if backend == "trt" else "tensorrt-rtx"
        raise UserError(f"{_MODULES[backend]} is not importable: pip install {pkg} (or segexport[{'tensorrt' if backend == 'trt' else 'rtx'}])")
    return flavour


@dataclass
class ParsedNetwork:
    flavour: Flavour
    builder: tensorrt.Builder
    network: tensorrt.INetworkDefinition
    parser: tensorrt.OnnxParser
    logger: tensorrt.ILogger
    errors: list[tuple[str, str]] = field(default_factory=list)  # (node name or "#index", message)

    @property
    def ok(self) -> bool:
        return not self.errors


def collecting_logger(module: ModuleType) -> tensorrt.ILogger:
    """A TensorRT ILogger that keeps messages instead of printing them.

    The parser reports its errors through the API as well (collected as findings); letting
    the default logger print them too would bury the CLI's one-line output in C++ traces.
    Warnings and errors stay available as ``logger.messages`` for ``--verbose`` output.
    """

    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = module  # tensorrt or tensorrt_rtx: the same Python API
    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[tuple[str, str]] = []

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:  # noqa: D401 - TensorRT callback
            try:
                if severity <= trt.ILogger.Severity.WARNING:
                    self.messages.append((str(severity), msg))
            except KeyboardInterrupt:  # pybind11 would swallow it: keep it for raise_if_interrupted
                from segexport.core import interrupts

                interrupts.note()

    return CollectingLogger()


def parse_onnx(path: str | Path, flavour: Flavour, *, strongly_typed: bool | None = None) -> ParsedNetwork:
    """Parse with the flavour's real ONNX parser; errors are collected, not raised."""
    import onnx

    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = flavour.module
    model = onnx.load(str(path), load_external_data=False)  # the graph, for typing and node names
    logger = collecting_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if strongly_typed is None:
        strongly_typed = flavour.strongly_typed_only or needs_strong_typing(model)
    strong = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED", None)
    if strongly_typed and strong is not None and flavour.backend == "trt":
        flags |= 1 << int(strong)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    errors: list[tuple[str, str]] = []
    # From the model *file*: the parser resolves external-data locations against its directory
    # (handed the directory itself, it looked one level up and could pick up another model's
    # weights file there).
    from segexport.core.interrupts import raise_if_interrupted

    parsed_ok = parser.parse_from_file(str(Path(path).resolve()))
    raise_if_interrupted()  # a Ctrl-C inside the logger callback must stop the command, not read as "no findings"
    if not parsed_ok:
        for i in range(parser.num_errors):
            err = parser.get_error(i)
            errors.append((_node_label(err, model), err.desc()))
    return ParsedNetwork(flavour, builder, network, parser, logger, errors)


def _node_label(err: Any, model) -> str:
    """The failing node's name, or ``#index`` for an unnamed node, or "" when the error has none.

    The parser reports the node's index as well as its name; hand-made and some exported graphs
    leave names empty, and the index is then the only way back to the op and its module.
    """
    name = err.node_name() if hasattr(err, "node_name") else ""
    if name:
        return name
    index = int(err.node()) if hasattr(err, "node") else -1
    if 0 <= index < len(model.graph.node):
        return model.graph.node[index].name or f"#{index}"
    return ""


def last_error(logger: Any) -> str:
    """The last error a collecting logger kept, on one line (the builder's reason for ``None``)."""
    errors = [m for sev, m in getattr(logger, "messages", []) if "ERROR" in sev or "INTERNAL" in sev]
    return " ".join(errors[-1].split())[:300] if errors else "no error was logged"
