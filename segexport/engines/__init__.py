"""TensorRT 10/11 and TensorRT-RTX: parsing, engine building, and engine metadata.

One builder serves three runtimes because their Python APIs share the documented shape
(Builder -> NetworkDefinition -> OnnxParser -> BuilderConfig -> build_serialized_network):

- TensorRT 10.x (desktop, and Jetson's JetPack): FP16/INT8 builder flags still exist; INT8
  without Q/DQ needs a calibrator or a calibration cache (implicit quantization).
- TensorRT 11: implicit quantization is gone; networks are strongly typed and precision is
  whatever the ONNX says (FP16 tensors, INT8 Q/DQ). segexport puts precision in the ONNX.
- TensorRT-RTX: strongly typed as well, builds ahead of time without a GPU; CI uses it to
  prove that every export parses and builds with NVIDIA's real parser.

Every engine gets a JSON sidecar (version, GPU, profile, precision, ONNX SHA-256, portability
options) that ``check_engine_compatible`` reads before anyone deserialises it.

``tensorrt`` / ``tensorrt_rtx`` are imported inside functions, never at module import.
"""
