"""Reduced precision for TensorRT 10 and 11, measured on the CPU before any GPU is involved.

- ``data``: calibration samples (image folder, .npy/.npz, synthetic) by the ONNX's contract.
- ``int8``: one calibration pass (ONNX Runtime: minmax, entropy, percentile) over every float
  tensor; the Q/DQ ONNX TensorRT 11 needs (symmetric, zero point 0, per-channel weights,
  conv-family inputs only, float biases).
- ``trt_cache`` / ``trt10_calibrator``: the same ranges as a TensorRT <= 10 calibration cache, and
  IInt8EntropyCalibrator2 / MinMax calibrators for Jetson, created without importing TensorRT
  at import time.
- ``fp16``: overflow/underflow analysis, then FP16 with float32 I/O and at-risk nodes in FP32.
- ``mixed_precision``: the accuracy budget (per-layer sensitivity, greedy float fallback).
- ``provenance``: the JSON sidecar that ties every artefact to its source ONNX.
- ``pipeline``: ``segexport calibrate`` end to end.
"""
