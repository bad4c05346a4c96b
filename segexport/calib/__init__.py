"""Calibration data, INT8 Q/DQ quantization, FP16 conversion, and TensorRT calibration caches."""
