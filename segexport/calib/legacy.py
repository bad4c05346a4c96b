"""TensorRT <= 10 implicit INT8 (Jetson / JetPack): calibrators and calibration caches.

TensorRT 11 removed ``IInt8Calibrator``; JetPack still ships 10.x, where an INT8 engine from an
FP32 ONNX needs per-tensor dynamic ranges from a calibrator or from a calibration cache
(``trtexec --int8 --calib=<cache>``, DeepStream's ``int8-calib-file``). The classes are
created by factories that receive the ``tensorrt`` module, so importing segexport never
imports TensorRT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segexport.errors import UserError


def cache_only_calibrator(trt: Any, cache_path: str | Path) -> Any:
    """An ``IInt8EntropyCalibrator2`` that serves a calibration cache and no batches.

    TensorRT asks for the cache first and, when it is valid, never asks for batches: the
    documented way to build INT8 from a cache without the data.
    """
    path = Path(cache_path)
    if not path.is_file():
        raise UserError(f"calibration cache {str(path)!r} not found: write one with `segexport calibrate --trt-cache`")
    blob = path.read_bytes()

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):  # noqa: ARG002 - TensorRT callback
            return None  # no data: the cache must cover every tensor

        def read_calibration_cache(self):
            return blob

        def write_calibration_cache(self, cache) -> None:  # noqa: ARG002
            return None

    return CacheCalibrator()


def entropy_calibrator(trt: Any, batches: list[np.ndarray], input_name: str, cache_path: str | Path | None = None,
                       algorithm: str = "entropy") -> Any:
    """An ``IInt8EntropyCalibrator2`` (or MinMax) fed with preprocessed NCHW float32 batches.

    Device memory comes from torch.cuda (already a segexport dependency on GPU machines), so
    no pycuda is needed; TensorRT receives raw device pointers as the API documents.
    """
    import torch

    if not torch.cuda.is_available():
        raise UserError("legacy TensorRT calibration runs on the GPU: no CUDA device is visible")
    base = trt.IInt8EntropyCalibrator2 if algorithm == "entropy" else trt.IInt8MinMaxCalibrator

    class Calibrator(base):
        def __init__(self) -> None:
            base.__init__(self)
            self._batches = iter(batches)
            self._device: torch.Tensor | None = None

        def get_batch_size(self) -> int:
            return int(batches[0].shape[0]) if batches else 1

        def get_batch(self, names):
            batch = next(self._batches, None)
            if batch is None:
                return None
            self._device = torch.from_numpy(np.ascontiguousarray(batch)).cuda()
            return [int(self._device.data_ptr())]

        def read_calibration_cache(self):
            if cache_path and Path(cache_path).is_file():
                return Path(cache_path).read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            if cache_path:
                Path(cache_path).write_bytes(bytes(cache))

    return Calibrator()
