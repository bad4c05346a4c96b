"""INT8 as explicit Q/DQ (TensorRT >= 10 and 11), with onnxruntime.quantization.

The contract TensorRT's strongly typed networks want: symmetric INT8 (zero points 0),
per-channel weights, Q/DQ only on the inputs of Conv / ConvTranspose / Gemm / MatMul (TensorRT
fuses the rest around them), biases left in float. Calibration (minmax, entropy, percentile)
runs once; the resulting activation ranges feed both the Q/DQ graph and the TensorRT <= 10
calibration cache, so the two deployments see the same scales, and mixed precision can
re-quantize with other exclusions without re-calibrating.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from segexport.errors import UserError

QUANTIZED_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul"]
METHODS = ("minmax", "entropy", "percentile")


@dataclass
class Calibration:
    """Activation ranges per tensor, from one calibration pass."""

    method: str
    tensors_range: object  # onnxruntime.quantization.calibrate.TensorsData
    amax: dict[str, float]  # tensor -> max |value| (symmetric)


def _reader(inputs: np.ndarray, input_name: str, batch: int):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(range(0, len(inputs), batch))

        def get_next(self):
            i = next(self._it, None)
            if i is None:
                return None
            chunk = inputs[i:i + batch]
            if len(chunk) < batch:  # a static-batch graph: pad with the last sample
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
            return {input_name: chunk}

        def __len__(self) -> int:
            return -(-len(inputs) // batch)

    return Reader()


def calibrate(onnx_path: str | Path, inputs: np.ndarray, *, method: str = "entropy", input_name: str = "input",
              batch: int = 1) -> Calibration:
    """Collect activation ranges of the quantizable ops' inputs on ``inputs``."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    if method not in METHODS:
        raise UserError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
          "percentile": CalibrationMethod.Percentile}[method]
    extra = {"symmetric": True}
    if method == "percentile":
        extra["percentile"] = 99.99
    with tempfile.TemporaryDirectory(prefix="segexport-calib-") as tmp:
        model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
        inferred = Path(tmp) / "model.onnx"
        onnx.save(model, str(inferred))
        calibrator = create_calibrator(inferred, QUANTIZED_OPS, augmented_model_path=str(Path(tmp) / "aug.onnx"),
                                       calibrate_method=cm, providers=["CPUExecutionProvider"], extra_options=extra)
        calibrator.collect_data(_reader(inputs, input_name, batch))
        ranges = calibrator.compute_data()
    amax = {}
    for name, data in ranges.data.items():
        lo, hi = (float(np.asarray(v).max() if np.asarray(v).size else 0) for v in (-np.asarray(data.range_value[0]), data.range_value[1]))
        amax[name] = max(abs(lo), abs(hi))
    return Calibration(method, ranges, amax)


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
    quantizer.quantize_model()
    out = quantizer.model.model
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
