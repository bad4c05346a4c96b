"""INT8 as explicit Q/DQ (TensorRT >= 10 and 11), with onnxruntime.quantization.

The contract TensorRT's strongly typed networks want: symmetric INT8 (zero points 0),
per-channel weights, Q/DQ only on the inputs of Conv / ConvTranspose / Gemm / MatMul (TensorRT
fuses the rest around them), biases left in float. Calibration (minmax, entropy, percentile)
runs once; the resulting activation ranges feed both the Q/DQ graph and the TensorRT <= 10
calibration cache, so the two deployments see the same scales, and mixed precision can
re-quantize with other exclusions without re-calibrating.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from segexport.core.comparison import pad_batch
from segexport.errors import UserError
from segexport.exporter.first_max import PADDING_MAGNITUDE

QUANTIZED_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul"]
METHODS = ("minmax", "entropy", "percentile")


@dataclass
class Calibration:
    """Activation ranges per tensor, from one calibration pass (all float tensors)."""

    method: str
    tensors_range: object  # onnxruntime.quantization.calibrate.TensorsData
    amax: dict[str, float]  # tensor -> max |value| (symmetric)
    # tensor -> why its range is min/max instead of ``method`` (see degenerate_tensors)
    fallback: dict[str, str] = field(default_factory=dict)


def _reader(inputs: np.ndarray, input_name: str, batch: int):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(range(0, len(inputs), batch))

        def get_next(self):
            i = next(self._it, None)
            if i is None:
                return None
            return {input_name: pad_batch(inputs[i:i + batch], batch)}

        def __len__(self) -> int:
            return -(-len(inputs) // batch)

    return Reader()


# Ops whose tensors are shapes or indices, not activations.
_NOT_CALIBRATED = {"Shape", "Cast", "ConstantOfShape", "Range", "ArgMax", "ArgMin"}
# Activations held in memory at once during collection (ORT keeps every batch's tensors until
# it folds them into histograms); above this, collection runs in chunks.
CHUNK_BYTES = 1 << 30


def calibrate(onnx_path: str | Path, inputs: np.ndarray, *, method: str = "entropy", input_name: str = "input",
              batch: int = 1, progress: Callable[[int, int], None] | None = None) -> Calibration:
    """Collect the activation ranges of every float tensor of the network on ``inputs``.

    Every tensor, not only the conv-family inputs the Q/DQ graph needs: the TensorRT <= 10
    calibration cache must hold a scale for each tensor a layer reads or writes (TensorRT
    keeps a layer with an unscaled tensor in float), and it is written from these same ranges.
    ``progress(done, total)`` is told the samples collected so far.
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    if method not in METHODS:
        raise UserError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    if not len(inputs):
        raise UserError("no calibration samples: pass --data with at least one image")
    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
          "percentile": CalibrationMethod.Percentile}[method]
    extra = {"symmetric": True}
    if method == "percentile":
        extra["percentile"] = 99.99
    tell = progress or (lambda _d, _t: None)
    from segexport.core.files import temp_folder

    with temp_folder("segexport-calib") as tmp:  # swept on SIGTERM and by the next run
        model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
        inferred = Path(tmp) / "model.onnx"
        onnx.save(model, str(inferred))
        op_types = sorted({n.op_type for n in model.graph.node} - _NOT_CALIBRATED)
        calibrator = create_calibrator(inferred, op_types, augmented_model_path=str(Path(tmp) / "aug.onnx"),
                                       calibrate_method=cm, providers=["CPUExecutionProvider"], extra_options=extra)
        selected = getattr(calibrator, "tensors_to_calibrate", None)  # histogram methods: the tensors binned
        fallback: dict[str, str] = {}
        if isinstance(selected, set):
            sample = pad_batch(inputs[:batch], batch)
            selected -= nonfinite_tensors(model, sample, input_name)
            fallback = {n: why for n, why in degenerate_tensors(model, sample, input_name).items() if n in selected}
            selected -= set(fallback)
        step = _chunk_samples(model, batch)
        tell(0, len(inputs))
        try:
            with contextlib.redirect_stdout(io.StringIO()), _quiet_ort_quantizer():  # the CLI shows a bar instead
                for start in range(0, len(inputs), step):
                    calibrator.collect_data(_reader(inputs[start:start + step], input_name, batch))
                    tell(min(start + step, len(inputs)), len(inputs))
                ranges = calibrator.compute_data()
        except ValueError as exc:
            # numpy's "Too many bins for data range" from a tensor the probe above judged fine on its
            # first sample: every tensor falls back to minmax rather than the run failing
            if "bins" not in str(exc) or method == "minmax":
                raise
            result = calibrate(onnx_path, inputs, method="minmax", input_name=input_name, batch=batch, progress=progress)
            result.method = method
            result.fallback = {"*": f"{method} histograms failed ({exc}); every tensor calibrated by minmax"}
            return result
        if fallback:
            from onnxruntime.quantization.calibrate import TensorData

            for name, (lo, hi) in _minmax(model, inputs, sorted(fallback), input_name, batch).items():
                amax_value = np.float32(max(abs(lo), abs(hi)))
                ranges.data[name] = TensorData(lowest=-amax_value, highest=amax_value)
    amax = {}
    for name, data in ranges.data.items():
        lo, hi = (float(np.max(np.abs(np.asarray(v)))) if np.asarray(v).size else 0.0 for v in data.range_value)
        value = max(lo, hi)
        if np.isfinite(value) and value < PADDING_MAGNITUDE:  # no scale for pool padding
            amax[name] = value
    return Calibration(method, ranges, amax, fallback)


# A histogram of 2048 bins (ORT's default) needs a range of at least 2048 float32 steps at the
# tensor's magnitude, or numpy refuses ("Too many bins for data range"); 16x margin for the
# batches calibration has not seen yet.
_MIN_RELATIVE_RANGE = 2048 * 16 * float(np.finfo(np.float32).eps)
_TINY = 1e-30


def degenerate_tensors(model: onnx.ModelProto, sample: np.ndarray, input_name: str = "input") -> dict[str, str]:
    """Float tensors a histogram cannot describe on ``sample``, with the reason: all zero,
    constant, values so small they are denormal, or a range too narrow for float32 bins (the
    heads of MobileNetV3-style networks). Their ranges come from minmax instead, which is exact
    for them; calibration names them so the user knows which scales were not ``--method``'s."""
    found: dict[str, str] = {}
    for name, value in _probe(model, sample, input_name):
        a = np.abs(value[np.isfinite(value)]) if value.size else value
        if not a.size:
            continue
        hi, lo = float(a.max()), float(a.min())
        if hi == 0:
            found[name] = "all zero"
        elif float(value.max()) == float(value.min()):
            found[name] = "constant"
        elif hi < _TINY:
            found[name] = f"tiny values (max |x| {hi:.2g})"
        elif hi - lo < _MIN_RELATIVE_RANGE * hi:
            found[name] = f"range too narrow for histogram bins (|x| in [{lo:.6g}, {hi:.6g}])"
    return found


def _probe(model: onnx.ModelProto, sample: np.ndarray, input_name: str, names: list[str] | None = None):
    """(name, value) of every intermediate float tensor (or of ``names``) on ``sample``."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    if names is None:
        names = [vi.name for vi in probe.graph.value_info
                 if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and vi.name not in known]
        names += list(known)
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                              for n in names if n not in known)
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return [(n, np.asarray(v)) for n, v in zip(names, sess.run(names, {input_name: sample}))]


def _minmax(model: onnx.ModelProto, inputs: np.ndarray, names: list[str], input_name: str,
            batch: int) -> dict[str, tuple[float, float]]:
    """Min and max of ``names`` over all ``inputs``."""
    out: dict[str, tuple[float, float]] = {}
    for i in range(0, len(inputs), batch):
        for name, value in _probe(model, pad_batch(inputs[i:i + batch], batch), input_name, names):
            v = value[np.isfinite(value)]
            if not v.size:
                continue
            lo, hi = out.get(name, (float("inf"), float("-inf")))
            out[name] = (min(lo, float(v.min())), max(hi, float(v.max())))
    return out


@contextlib.contextmanager
def _quiet_ort_quantizer():
    """ONNX Runtime's quantization tools log through the root logger at WARNING ("Expected bias
    'val_5' to be an initializer", one line a Conv whose bias is computed, 35 on FCN): chatter
    about its own fusion choices that the user cannot act on. Raised to ERROR for the call."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def nonfinite_tensors(model: onnx.ModelProto, sample: np.ndarray, input_name: str = "input") -> set[str]:
    """Float tensors holding pool padding on ``sample``: a ceil-mode pool pads with the lowest
    float before (Reshape ->) Max, by design. Such a tensor has no histogram (numpy cannot bin
    the range) and no meaningful INT8 scale, so it is left out of calibration (and of the
    TensorRT cache, where a missing scale keeps that layer in float)."""
    from segexport.core.sessions import ort_session

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    names = [vi.name for vi in probe.graph.value_info
             if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and vi.name not in known]
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    names += list(known)
    sess = ort_session(probe)
    def padded(v: np.ndarray) -> bool:  # the pools' lowest-float padding (or an infinity)
        return bool(v.size) and (not np.isfinite(v).all() or float(np.abs(v).max()) >= PADDING_MAGNITUDE)

    return {n for n, v in zip(names, sess.run(names, {input_name: sample})) if padded(np.asarray(v))}


def _chunk_samples(model: onnx.ModelProto, batch: int) -> int:
    """Samples per collection chunk so the held activations stay under ``CHUNK_BYTES``."""
    per_sample = 0
    for vi in list(model.graph.value_info) + list(model.graph.output):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim][1:]
        if dims and all(d > 0 for d in dims):
            per_sample += 4 * int(np.prod(dims))
    samples = CHUNK_BYTES // max(per_sample, 1)
    return max(batch, samples // batch * batch)


def quantize_qdq(onnx_path: str | Path, calibration: Calibration, *, exclude: list[str] | None = None) -> onnx.ModelProto:
    """The Q/DQ model: symmetric INT8, per-channel weights, float biases, conv-family inputs only."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    quantizer = QDQQuantizer(
        model, True, False, QuantType.QInt8, QuantType.QInt8, calibration.tensors_range,
        [], list(exclude or []), QUANTIZED_OPS,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                       "DedicatedQDQPair": False, "AddQDQPairToWeight": False,
                       # inputs only: ORT would also quantize conv outputs (Conv -> Q/DQ -> Relu, logits)
                       "OpTypesToExcludeOutputQuantization": QUANTIZED_OPS},
    )
    with _quiet_ort_quantizer():
        quantizer.quantize_model()
    out = quantizer.model.model
    # ORT leaves the graph input's Q/DQ pair after the nodes that read it (ONNX Runtime sorts on
    # load, so it runs), which ONNX's checker rejects; sort with ORT's own helper so the artefact is
    # valid ONNX for every consumer.
    from onnxruntime.quantization.onnx_model import ONNXModel

    ONNXModel(out).topological_sort()
    # the exact region (unpool masks, argmax, tie-breaks) reads the float tensors, never the
    # Q/DQ copies made for the Conv beside it (segexport.core.exact says why)
    from segexport.core.exact import restore_exact_inputs

    restore_exact_inputs(out)
    _restore_names_and_metadata(model, out)
    return out


def _restore_names_and_metadata(src: onnx.ModelProto, dst: onnx.ModelProto) -> None:
    """Keep the model-level metadata and the module scopes of the float nodes."""
    del dst.metadata_props[:]
    dst.metadata_props.extend(src.metadata_props)
    scopes = {n.name: list(n.metadata_props) for n in src.graph.node}
    for node in dst.graph.node:
        if node.name in scopes and not node.metadata_props:
            node.metadata_props.extend(scopes[node.name])


def quantizable_nodes(onnx_path: str | Path) -> list[onnx.NodeProto]:
    model = onnx.load(str(onnx_path), load_external_data=False)
    return [n for n in model.graph.node if n.op_type in QUANTIZED_OPS]
