"""One list of precisions, shared by export, calibrate, engine and parity.

An artefact *holds* one of :data:`PRECISIONS` (written into its metadata at calibration);
``calibrate`` reduces to one of :data:`CALIBRATION_TARGETS` (``best`` measures both reduced
precisions and keeps one); ``engine --precision`` on an fp32 ONNX asks TensorRT 10 for
implicit reduced precision, so it takes :data:`PRECISIONS` too.
"""

from __future__ import annotations

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
REDUCED: tuple[str, ...] = ("fp16", "int8")
CALIBRATION_TARGETS: tuple[str, ...] = REDUCED + ("best",)
EXPORT_PRECISIONS: tuple[str, ...] = ("fp32",) + CALIBRATION_TARGETS  # segexport onnx --precision
