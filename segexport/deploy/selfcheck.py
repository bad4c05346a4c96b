#!/usr/bin/env python3
"""Self-check of a segexport bundle ON THE DEVICE: does the engine built here label the golden
images as the fp32 ONNX did on the desktop?

Run it after build_engine.sh, and again after every JetPack / TensorRT upgrade (an engine or a
TensorRT that changed can leave a model "all one class" with no error anywhere):

    python3 selfcheck/selfcheck.py                     # the engine the bundle names, TensorRT's Python API
    python3 selfcheck/selfcheck.py --runner trtexec    # no Python bindings: trtexec --loadInputs/--exportOutput
    python3 selfcheck/selfcheck.py --runner onnxruntime  # the bundle's ONNX on a desktop (no engine)

Exit status: 0 passed, 1 failed (the engine changed confident labels, outputs NaN/inf or the wrong
shape), 2 could not run (a file missing, no runner), 3 not judged (the golden set has no confident
pixels: an untrained model). Always one line saying why.

This file is written by segexport (``segexport/deploy/selfcheck.py``, copied unchanged); it needs
numpy and one runner (``tensorrt`` + the CUDA runtime library, ``trtexec``, or ``onnxruntime``),
never segexport. The judging code is ``agreement.py`` beside it, a byte-identical copy of
``segexport/core/agreement.py``: the same rule and limits as calibrate's accuracy gate. Nothing in
``selfcheck.json`` is run: it names files inside the bundle, which are checked to stay inside it.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, cast

import numpy as np

if TYPE_CHECKING:  # checked against NVIDIA's TensorRT 10 stubs (tests/engines/test_typecheck.py)
    import tensorrt as trt

HERE = Path(__file__).resolve().parent
MANIFEST = "selfcheck.json"
EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_NOT_JUDGED = 0, 1, 2, 3
RUNNERS = ("auto", "tensorrt", "trtexec", "onnxruntime")


class SelfCheckError(Exception):
    """Cannot run the check (exit 2): the message is the one line the user sees."""


def load_agreement() -> ModuleType:
    """``agreement.py`` from this script's folder (not from sys.path: a stray module of that name
    elsewhere must not judge the engine)."""
    path = HERE / "agreement.py"
    if not path.is_file():
        raise SelfCheckError(f"{path} is missing: copy the whole selfcheck/ folder of the bundle")
    spec = importlib.util.spec_from_file_location("segexport_bundle_agreement", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def inside(root: Path, name: object, what: str) -> Path:
    """A file the manifest names, as a path that stays inside the bundle."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise SelfCheckError(f"{MANIFEST}: {what} {str(name)[:80]!r} is not a file inside the bundle: re-run "
                             "`segexport deploy` for a fresh bundle")
    return root / name


def read_manifest() -> dict[str, Any]:
    path = HERE / MANIFEST
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise SelfCheckError(f"{path} is missing: copy the whole selfcheck/ folder of the bundle") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SelfCheckError(f"{path} is not readable JSON ({type(exc).__name__}): re-run `segexport deploy`") from None
    if not isinstance(doc, dict) or doc.get("schema") != 1:
        raise SelfCheckError(f"{path} is not a segexport self-check manifest (schema 1): re-run `segexport deploy`")
    return doc


def read_golden(doc: dict[str, Any]) -> dict[str, np.ndarray]:
    """The golden inputs, labels and margins, after checking they are the ones written at bundle time."""
    path = inside(HERE, doc.get("golden"), "golden")
    if not path.is_file():
        raise SelfCheckError(f"{path} is missing: copy the whole selfcheck/ folder of the bundle")
    if hashlib.sha256(path.read_bytes()).hexdigest() != doc.get("golden_sha256"):
        raise SelfCheckError(f"{path.name} is not the file the bundle was written with (SHA-256 differs): re-run "
                             "`segexport deploy` for a fresh bundle")
    with np.load(path, allow_pickle=False) as data:
        golden = {k: np.asarray(data[k]) for k in ("inputs", "labels", "margin")}
    if golden["inputs"].ndim != 4 or golden["labels"].shape != golden["margin"].shape:
        raise SelfCheckError(f"{path.name} holds inconsistent arrays: re-run `segexport deploy`")
    return golden


def batches(x: np.ndarray, batch: int | None) -> list[tuple[np.ndarray, int]]:
    """(chunk, samples kept): a static batch is padded with the last sample, its results dropped;
    a dynamic one runs each sample alone."""
    size = batch or 1
    out = []
    for start in range(0, len(x), size):
        chunk = x[start:start + size]
        kept = len(chunk)
        if kept < size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - kept, axis=0)])
        out.append((np.ascontiguousarray(chunk), kept))
    return out


Runner = Callable[[np.ndarray], np.ndarray]


def run_all(runner: Runner, x: np.ndarray, batch: int | None) -> np.ndarray:
    return np.concatenate([np.asarray(runner(chunk))[:kept] for chunk, kept in batches(x, batch)])


# --- ONNX Runtime: the bundle's ONNX, on a desktop or in segexport's own tests -----------------------

def onnxruntime_runner(onnx_path: Path, input_name: str, output_name: str) -> Runner:
    try:
        import onnxruntime as ort
    except ImportError:
        raise SelfCheckError("onnxruntime is not installed: pip install onnxruntime, or use --runner tensorrt") from None
    if not onnx_path.is_file():
        raise SelfCheckError(f"ONNX {str(onnx_path)!r} not found: this bundle serves an engine only; run the check "
                             "with --runner tensorrt or trtexec")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a damaged file: ONNX Runtime's own message, on one line
        raise SelfCheckError(f"onnxruntime cannot load {onnx_path.name}: {' '.join(str(exc).split())[:200]}") from None
    return lambda x: np.asarray(session.run([output_name], {input_name: x})[0])


# --- TensorRT's Python API --------------------------------------------------------------------------

class Cuda:
    """The few CUDA runtime calls a TensorRT run needs, through ctypes: JetPack ships libcudart but
    not always pycuda or cuda-python, and neither is needed for four calls."""

    HOST_TO_DEVICE, DEVICE_TO_HOST = 1, 2

    def __init__(self) -> None:
        self.lib = self._load()
        self.lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        self.lib.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.lib.cudaFree.argtypes = [ctypes.c_void_p]
        self.lib.cudaStreamCreate.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        self.lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
        self.lib.cudaStreamDestroy.argtypes = [ctypes.c_void_p]

    @staticmethod
    def _load() -> ctypes.CDLL:
        names = ["libcudart.so", "libcudart.so.12", "libcudart.so.11.0", "/usr/local/cuda/lib64/libcudart.so"]
        spec = importlib.util.find_spec("nvidia.cuda_runtime") if importlib.util.find_spec("nvidia") else None
        for folder in (spec.submodule_search_locations or []) if spec else []:  # pip's CUDA runtime wheel
            names += sorted(str(p) for p in Path(folder, "lib").glob("libcudart.so*"))
        for name in names:
            try:
                return ctypes.CDLL(name)
            except OSError:
                continue
        raise SelfCheckError("the CUDA runtime library (libcudart.so) is not found: add CUDA's lib64 folder to "
                             "LD_LIBRARY_PATH, or use --runner trtexec")

    def check(self, code: int, what: str) -> None:
        if code != 0:
            raise SelfCheckError(f"CUDA {what} failed with error {code}: is the GPU visible to this process?")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self.check(self.lib.cudaMalloc(ctypes.byref(ptr), max(nbytes, 1)), "cudaMalloc")
        return int(ptr.value or 0)

    def to_device(self, ptr: int, host: np.ndarray) -> None:
        self.check(self.lib.cudaMemcpy(ptr, host.ctypes.data, host.nbytes, self.HOST_TO_DEVICE), "cudaMemcpy")

    def to_host(self, host: np.ndarray, ptr: int) -> None:
        self.check(self.lib.cudaMemcpy(host.ctypes.data, ptr, host.nbytes, self.DEVICE_TO_HOST), "cudaMemcpy")

    def free(self, ptr: int) -> None:
        self.lib.cudaFree(ptr)

    def stream(self) -> int:
        handle = ctypes.c_void_p()
        self.check(self.lib.cudaStreamCreate(ctypes.byref(handle)), "cudaStreamCreate")
        return int(handle.value or 0)

    def synchronize(self, stream: int) -> None:
        self.check(self.lib.cudaStreamSynchronize(stream), "cudaStreamSynchronize")


class BindingsEngine(Protocol):
    """TensorRT 8.5/8.6's bindings API of ICudaEngine (removed in TensorRT 10, so NVIDIA's 10.x stubs
    lack it): written from the TensorRT 8.6 Python API reference, ICudaEngine / IExecutionContext
    (https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-861/api/python_api/)."""

    @property
    def num_bindings(self) -> int: ...

    def get_binding_index(self, name: str) -> int: ...

    def get_binding_name(self, index: int) -> str: ...

    def binding_is_input(self, index: int) -> bool: ...

    def get_binding_shape(self, index: int) -> Sequence[int]: ...

    def get_binding_dtype(self, index: int) -> trt.DataType: ...


class BindingsContext(Protocol):
    def set_binding_shape(self, binding: int, shape: Sequence[int]) -> bool: ...

    def get_binding_shape(self, binding: int) -> Sequence[int]: ...

    def execute_v2(self, bindings: list[int]) -> bool: ...


def tensorrt_runner(engine_path: Path, input_name: str, output_name: str) -> Runner:
    try:
        import tensorrt as trt
    except ImportError:
        raise SelfCheckError("tensorrt (Python) is not importable: JetPack ships it as python3-libnvinfer; or run "
                             "with --runner trtexec") from None
    if not engine_path.is_file():
        raise SelfCheckError(f"engine {str(engine_path)!r} not found: build it first with ./build_engine.sh")
    logger = trt.Logger(trt.Logger.ERROR)
    trt.init_libnvinfer_plugins(logger, "")
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    if engine is None:
        raise SelfCheckError(f"TensorRT {trt.__version__} cannot load {engine_path.name}: it was built by another "
                             "TensorRT version or for another GPU; rebuild it here with ./build_engine.sh")
    cuda = Cuda()
    if int(trt.__version__.split(".")[0]) >= 10:
        return _tensor_api(trt, cuda, engine, input_name, output_name)
    return _bindings_api(trt, cuda, cast(BindingsEngine, engine), input_name, output_name)


def shape_of(dims: Any) -> tuple[int, ...]:
    """A TensorRT Dims (or a tuple) as a tuple: Dims is indexable and sized in every release."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def _tensor_api(trt_module: ModuleType, cuda: Cuda, engine: trt.ICudaEngine, input_name: str,
                output_name: str) -> Runner:
    """TensorRT 10: named I/O tensors (num_io_tensors, set_tensor_address, execute_async_v3)."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = trt_module
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    for name in (input_name, output_name):
        if name not in names:
            raise SelfCheckError(f"the engine has no tensor {name!r} (it has {', '.join(names)}): it was not built "
                                 "from this bundle's ONNX")
    context = engine.create_execution_context()

    def run(x: np.ndarray) -> np.ndarray:
        if -1 in shape_of(engine.get_tensor_shape(input_name)):
            context.set_input_shape(input_name, tuple(x.shape))
        stream = cuda.stream()
        buffers: dict[str, tuple[int, np.ndarray]] = {}
        try:
            for name in names:
                host = (x.astype(trt.nptype(engine.get_tensor_dtype(name)), copy=False) if name == input_name else
                        np.empty(shape_of(context.get_tensor_shape(name)), trt.nptype(engine.get_tensor_dtype(name))))
                host = np.ascontiguousarray(host)
                ptr = cuda.malloc(host.nbytes)
                buffers[name] = (ptr, host)
                context.set_tensor_address(name, ptr)
            cuda.to_device(*buffers[input_name])
            if not context.execute_async_v3(stream):
                raise SelfCheckError("TensorRT's execute_async_v3 failed (see the messages above)")
            cuda.synchronize(stream)
            ptr, host = buffers[output_name]
            cuda.to_host(host, ptr)
            return host.copy()
        finally:
            for ptr, _ in buffers.values():
                cuda.free(ptr)
            cuda.lib.cudaStreamDestroy(stream)

    return run


def _bindings_api(trt_module: ModuleType, cuda: Cuda, engine: BindingsEngine, input_name: str,
                  output_name: str) -> Runner:
    """TensorRT 8.5/8.6 (JetPack 5.1, 6.0): binding indices (get_binding_index, execute_v2)."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = trt_module
    indices = {engine.get_binding_name(i): i for i in range(engine.num_bindings)}
    for name in (input_name, output_name):
        if name not in indices:
            raise SelfCheckError(f"the engine has no binding {name!r} (it has {', '.join(indices)}): it was not built "
                                 "from this bundle's ONNX")
    context = cast(BindingsContext, cast(Any, engine).create_execution_context())
    source = engine.get_binding_index(input_name)
    sink = engine.get_binding_index(output_name)

    def run(x: np.ndarray) -> np.ndarray:
        if -1 in shape_of(engine.get_binding_shape(source)):
            context.set_binding_shape(source, tuple(x.shape))
        pointers = [0] * engine.num_bindings
        hosts: dict[int, np.ndarray] = {}
        try:
            for i in range(engine.num_bindings):
                dtype = trt.nptype(engine.get_binding_dtype(i))
                host = x.astype(dtype, copy=False) if i == source else np.empty(shape_of(context.get_binding_shape(i)), dtype)
                hosts[i] = np.ascontiguousarray(host)
                pointers[i] = cuda.malloc(hosts[i].nbytes)
            cuda.to_device(pointers[source], hosts[source])
            if not context.execute_v2(pointers):
                raise SelfCheckError("TensorRT's execute_v2 failed (see the messages above)")
            cuda.to_host(hosts[sink], pointers[sink])
            return hosts[sink].copy()
        finally:
            for ptr in pointers:
                if ptr:
                    cuda.free(ptr)

    return run


# --- trtexec, where the Python bindings are missing -------------------------------------------------

def find_trtexec(given: str | None) -> str:
    candidates = [given] if given else [os.environ.get("TRTEXEC"), shutil.which("trtexec"), "/usr/src/tensorrt/bin/trtexec"]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    raise SelfCheckError(f"trtexec not found{' at ' + repr(given) if given else ''}: JetPack has it in "
                         "/usr/src/tensorrt/bin; pass --trtexec PATH")


# trtexec writes each value with a C++ ostream (``print``/``dumpBuffer`` in samples/common/sampleUtils.cpp
# of NVIDIA/TensorRT, 8.5.2 to 10.3), so a non-finite output appears as the bare word nan, -nan, inf
# or -inf, which JSON has not: read as JSON alone, an engine that outputs NaN would look like an
# unreadable file (exit 2) instead of the failure it is (exit 1).
_NON_FINITE = re.compile(r"(?<=[\[,\s])(-?)(nan|inf)(?=[\s,\]])", re.IGNORECASE)


def _json_number(match: re.Match[str]) -> str:
    return "NaN" if match.group(2).lower() == "nan" else match.group(1) + "Infinity"


def read_trtexec_output(text: str, output_name: str) -> np.ndarray:
    """One tensor from the file ``trtexec --exportOutput`` writes (``exportJSONOutput`` in
    samples/common/sampleReporting.cpp, the same in 8.5.2, release/8.6 and release/10.3): a JSON list
    of ``{ "name" : ..., "dimensions" : "1x21x64x64", "values" : [ ... ] }``, one per output, the
    dimensions joined by "x" (``operator<<`` for Dims in samples/common/sampleOptions.h), the values
    in row-major order (``dumpBuffer`` undoes vectorised formats)."""
    tensors = json.loads(_NON_FINITE.sub(_json_number, text))
    entry = next(t for t in tensors if t.get("name") == output_name)
    dims = [int(d) for d in str(entry["dimensions"]).split("x")]
    return np.asarray(entry["values"], np.float32).reshape(dims)


def trtexec_runner(trtexec: str, engine_path: Path, input_name: str, output_name: str, dynamic: bool) -> Runner:
    """``trtexec --loadEngine --loadInputs=<name>:<raw file> --exportOutput=<json>``: the input as raw
    bytes of the engine's input type (float32 here; ``--loadInputs`` spec ``name:file``), the output
    read from the JSON trtexec writes (:func:`read_trtexec_output`). trtexec prints values with six
    significant digits (the ostream default), enough for labels; margins come from the golden file."""
    if not engine_path.is_file():
        raise SelfCheckError(f"engine {str(engine_path)!r} not found: build it first with ./build_engine.sh")

    def run(x: np.ndarray) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="selfcheck.") as tmp:
            raw, out = Path(tmp) / "input.bin", Path(tmp) / "output.json"
            np.ascontiguousarray(x, dtype=np.float32).tofile(raw)
            cmd = [trtexec, f"--loadEngine={engine_path}", f"--loadInputs={input_name}:{raw}",
                   f"--exportOutput={out}", "--iterations=1", "--warmUp=0", "--duration=0", "--avgRuns=1"]
            if dynamic:
                cmd.append(f"--shapes={input_name}:{'x'.join(str(d) for d in x.shape)}")
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0 or not out.is_file():
                tail = " ".join((done.stdout + done.stderr).split()[-25:])
                raise SelfCheckError(f"trtexec failed (exit {done.returncode}): {tail[:300]}")
            try:
                return read_trtexec_output(out.read_text(), output_name)
            except (StopIteration, KeyError, ValueError, TypeError, AttributeError) as exc:
                raise SelfCheckError(f"trtexec's --exportOutput has no readable tensor {output_name!r} "
                                     f"({type(exc).__name__}): check the engine was built from this bundle") from None

    return run


# --- the check --------------------------------------------------------------------------------------

def make_runner(args: argparse.Namespace, doc: dict[str, Any], root: Path) -> tuple[str, Runner]:
    input_name, output_name = str(doc.get("input_name")), str(doc.get("output_name"))
    engine = Path(args.engine) if args.engine else inside(root, doc.get("engine"), "engine")
    choice = args.runner
    if choice == "auto":
        if importlib.util.find_spec("tensorrt") is not None:
            choice = "tensorrt"
        elif args.trtexec or os.environ.get("TRTEXEC") or shutil.which("trtexec") or \
                Path("/usr/src/tensorrt/bin/trtexec").is_file():
            choice = "trtexec"
        else:
            raise SelfCheckError("neither TensorRT's Python bindings nor trtexec are here: run this on the device "
                                 "(or use --runner onnxruntime to check the bundle's ONNX)")
    if choice == "onnxruntime":
        onnx_path = Path(args.onnx) if args.onnx else inside(root, doc.get("onnx"), "onnx")
        return f"onnxruntime on {onnx_path.name}", onnxruntime_runner(onnx_path, input_name, output_name)
    if choice == "tensorrt":
        return f"TensorRT on {engine.name}", tensorrt_runner(engine, input_name, output_name)
    return f"trtexec on {engine.name}", trtexec_runner(find_trtexec(args.trtexec), engine, input_name, output_name,
                                                       bool(doc.get("dynamic")))


def accepted_limit(doc: dict) -> float | None:
    """The agreement loss accepted with ``--max-agreement-drop`` when the bundle was written: a
    number or nothing; anything else in that field is a damaged manifest, judged by the default."""
    value = doc.get("max_agreement_drop")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        return None
    return float(value)


def check(argv: Sequence[str] | None = None) -> tuple[int, str]:
    parser = argparse.ArgumentParser(description="Check an engine against the labels the fp32 ONNX gave at bundle time.")
    parser.add_argument("--runner", choices=RUNNERS, default="auto",
                        help="auto: TensorRT's Python API, else trtexec (default)")
    parser.add_argument("--engine", help="engine file (default: the one the bundle names)")
    parser.add_argument("--onnx", help="with --runner onnxruntime: ONNX file (default: the bundle's)")
    parser.add_argument("--trtexec", help="trtexec binary (default: $TRTEXEC, PATH, /usr/src/tensorrt/bin)")
    parser.add_argument("--max-agreement-drop", type=float, default=None,
                        help="%% of confident pixels whose label may change (default: the limit accepted at bundle time, "
                             "else the bundle precision's)")
    args = parser.parse_args(argv)
    try:
        agreement = load_agreement()
        doc = read_manifest()
        golden = read_golden(doc)
        root = HERE.parent
        what, runner = make_runner(args, doc, root)
        batch = doc.get("batch")  # a static batch; None: the engine takes one sample at a time
        output = run_all(runner, golden["inputs"], batch if isinstance(batch, int) and batch > 0 else None)
    except SelfCheckError as exc:
        return EXIT_ERROR, f"self-check could not run: {exc}"
    limit = args.max_agreement_drop
    if limit is None:
        limit = accepted_limit(doc)
    verdict = agreement.judge_device(golden["labels"], golden["margin"], output, str(doc.get("precision")), limit)
    line = f"{verdict.line} [{what}, {len(golden['inputs'])} golden images: {doc.get('images')}]"
    if verdict.passed is None:
        return EXIT_NOT_JUDGED, line
    return (EXIT_PASS if verdict.passed else EXIT_FAIL), line


def main(argv: Sequence[str] | None = None) -> int:
    code, line = check(argv)
    print(line, file=sys.stdout if code == EXIT_PASS else sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
