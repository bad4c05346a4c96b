"""TensorRT <= 10 implicit INT8 (Jetson / JetPack): calibrators and calibration caches.

TensorRT 11 removed ``IInt8Calibrator``; JetPack still ships 10.x, where an INT8 engine from an
FP32 ONNX needs per-tensor dynamic ranges from a calibrator or from a calibration cache
(``trtexec --int8 --calib=<cache>``, DeepStream's ``int8-calib-file``). The classes are
created by factories that receive the ``tensorrt`` module, so importing segexport never
imports TensorRT.

Two ways to get a cache for Jetson: :func:`segexport.calib.trt_cache.write_cache` writes it
from the ranges ``segexport calibrate`` measured in ONNX Runtime (no GPU needed, the same
scales as the Q/DQ ONNX), or :func:`calibrator_for` lets TensorRT 10 calibrate on the GPU
with the same data and preprocessing and write its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segexport.errors import UserError

if TYPE_CHECKING:  # the checker sees TensorRT 10's real calibrator API (tensorrt-stubs)
    import tensorrt
    from typing_extensions import Buffer


def cache_only_calibrator(trt_module: Any, cache_path: str | Path) -> tensorrt.IInt8EntropyCalibrator2:
    """An ``IInt8EntropyCalibrator2`` that serves a calibration cache and no batches.

    TensorRT asks for the cache first and, when it is valid, never asks for batches: the
    documented way to build INT8 from a cache without the data.
    """
    if TYPE_CHECKING:  # checked against TensorRT 10's stubs; at run time the module passed in
        import tensorrt as trt
    else:
        trt = trt_module
    path = Path(cache_path)
    if not path.is_file():
        raise UserError(f"calibration cache {str(path)!r} not found: write one with `segexport calibrate --trt-cache`")
    blob = path.read_bytes()

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int]:  # noqa: ARG002 - TensorRT callback
            return []  # no data (the documented "no more batches"): the cache must cover every tensor

        def read_calibration_cache(self) -> bytes:
            return blob

        def write_calibration_cache(self, cache: Buffer) -> None:  # noqa: ARG002
            return None

    return CacheCalibrator()


class _DeviceBuffer:
    """One device allocation reused for every batch: torch.cuda when torch sees a GPU, else
    cuda-python's runtime (``pip install cuda-python``; the JetPack images ship it). TensorRT's
    Python calibrator API takes raw device pointers, so either is enough and pycuda is not needed.
    """

    def __init__(self, nbytes: int) -> None:
        self._tensor: Any = None
        self._cudart: Any = None
        try:
            import torch

            if torch.cuda.is_available():
                self._tensor = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
                self.ptr = int(self._tensor.data_ptr())
                return
        except ImportError:
            pass
        try:
            try:
                from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
            except ImportError:
                from cuda import cudart  # older cuda-python
        except ImportError:
            raise UserError("TensorRT calibration needs GPU memory: install torch with CUDA or cuda-python "
                            "(pip install cuda-python)") from None
        err, ptr = cudart.cudaMalloc(nbytes)
        if int(err) != 0:
            raise UserError(f"cudaMalloc of {nbytes} bytes failed ({err}): is a CUDA device visible?")
        self._cudart, self.ptr = cudart, int(ptr)

    def upload(self, host: np.ndarray) -> None:
        host = np.ascontiguousarray(host)
        if self._tensor is not None:
            import torch

            self._tensor[: host.nbytes].copy_(torch.from_numpy(host.view(np.uint8).reshape(-1)))
            torch.cuda.synchronize()
            return
        cudart = self._cudart
        (err,) = cudart.cudaMemcpy(self.ptr, host.ctypes.data, host.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
        if int(err) != 0:
            raise UserError(f"cudaMemcpy to the calibration buffer failed ({err})")

    def free(self) -> None:
        if self._cudart is not None and self.ptr:
            self._cudart.cudaFree(self.ptr)
        self._tensor, self.ptr = None, 0


def make_calibrator(inputs: np.ndarray, *, batch: int = 1, algorithm: str = "entropy",
                    cache_path: str | Path | None = None, trt: Any = None) -> tensorrt.IInt8Calibrator:
    """A TensorRT <= 10 calibrator (``IInt8EntropyCalibrator2``, or ``IInt8MinMaxCalibrator``
    for ``algorithm="minmax"``) fed with preprocessed N x 3 x H x W float32 samples.

    The class is defined here, on first use, because it must subclass a ``tensorrt`` class
    and importing segexport must not import TensorRT. TensorRT reads the cache first (and
    skips the batches when it is valid) and writes the one it computed to ``cache_path``.
    The last, short batch is padded with its last sample: the network's batch is static.
    """
    if trt is None:
        try:
            import tensorrt as trt
        except ImportError:
            raise UserError("legacy INT8 calibration needs TensorRT <= 10 (pip install 'tensorrt<11'); "
                            "for TensorRT 11 use the Q/DQ ONNX from `segexport calibrate`") from None
    if TYPE_CHECKING:
        import tensorrt as api  # checked against TensorRT 10's stubs; at run time the module passed in
    else:
        api = trt
    if getattr(api, "IInt8EntropyCalibrator2", None) is None:
        raise UserError(f"TensorRT {getattr(trt, '__version__', '?')} has no INT8 calibrators (removed in 11): "
                        "build from the Q/DQ ONNX of `segexport calibrate` instead")
    samples = np.ascontiguousarray(inputs, dtype=np.float32)
    if samples.ndim != 4 or not len(samples):
        raise UserError(f"calibration samples must be N x 3 x H x W with N >= 1, got shape {list(samples.shape)}")

    class Feeder:
        """The batches and the cache; mixed into the TensorRT base class the algorithm needs."""

        def __init__(self) -> None:
            self._next = 0
            self._device: _DeviceBuffer | None = None

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int]:  # noqa: ARG002 - one input network
            if self._next >= len(samples):
                if self._device is not None:
                    self._device.free()
                    self._device = None
                return []  # the documented "no more batches"
            chunk = samples[self._next:self._next + batch]
            if len(chunk) < batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
            self._next += batch
            if self._device is None:
                self._device = _DeviceBuffer(chunk.nbytes)
            self._device.upload(chunk)
            return [self._device.ptr]

        def read_calibration_cache(self) -> bytes | None:
            # None = no cache yet: TensorRT then calibrates from the batches (its documented contract)
            if cache_path and Path(cache_path).is_file():
                return Path(cache_path).read_bytes()
            return None

        def write_calibration_cache(self, cache: Buffer) -> None:
            if cache_path:
                Path(cache_path).write_bytes(bytes(cache))

    class EntropyCalibrator(Feeder, api.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            api.IInt8EntropyCalibrator2.__init__(self)
            Feeder.__init__(self)

    class MinMaxCalibrator(Feeder, api.IInt8MinMaxCalibrator):
        def __init__(self) -> None:
            api.IInt8MinMaxCalibrator.__init__(self)
            Feeder.__init__(self)

    return MinMaxCalibrator() if algorithm == "minmax" else EntropyCalibrator()


def calibrator_for(onnx_path: str | Path, data: str | Path = "synthetic", *, count: int = 32, seed: int = 0,
                   algorithm: str = "entropy", cache_path: str | Path | None = None, trt: Any = None) -> Any:
    """The calibrator for ``onnx_path`` on the same data pipeline as ``segexport calibrate``:
    the ONNX's preprocessing contract, seeded sampling, the export's static batch."""
    from segexport.calib.data import load_calibration_data
    from segexport.exporter.metadata import read_record

    record = read_record(onnx_path)
    calib = load_calibration_data(data, record.preprocess, count=count, seed=seed, num_classes=record.num_classes)
    return make_calibrator(calib.inputs, batch=record.batch, algorithm=algorithm, cache_path=cache_path, trt=trt)
