"""Label agreement with an fp32 reference on *confident* pixels: the rule every segexport check
that judges a runtime by its labels applies (calibrate's accuracy gate, deploy's gate, and the
self-check a bundle carries to the device).

Why confident pixels: a correct runtime may flip a pixel whose fp32 top-2 logits tie to a
rounding error, so failing those would fail every honest FP16/TF32/INT8 build. A pixel whose
fp32 top-1 logit leads the top-2 by at least ``CONFIDENT_MARGIN`` (1 logit: the top class at
least e = 2.7 times as likely under the network's own softmax) is decided; a runtime that flips
such pixels has changed what the network says.

Why this module imports nothing but numpy: it is copied byte for byte into every deployment
bundle (``selfcheck/agreement.py``), where the device has numpy and TensorRT but no segexport,
and a test holds the copy to this file. segexport's own checks import it from here, so the
device judges an engine with exactly the code and limits the desktop judged the ONNX with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONFIDENT_MARGIN = 1.0  # logits between the top-2 classes of the fp32 reference
MIN_CONFIDENT_FRACTION = 0.01  # below this share of confident pixels the reference says too little

# Percent of confident pixels whose label may change vs fp32. int8 moves logits by a few percent:
# 1 %; fp16 keeps ~3 decimal digits: 0.1 %. An "fp32" TensorRT engine is held to fp16's limit:
# TensorRT runs FP32 convolutions and matrix products in TF32 (10 mantissa bits, like FP16) on
# Ampere and newer GPUs -- Orin included -- unless the engine was built with TF32 disabled.
AGREEMENT_DROP = {"int8": 1.0, "fp16": 0.1}
DEVICE_AGREEMENT_DROP = {"fp32": 0.1, "fp16": 0.1, "int8": 1.0}


def labels_of(x: np.ndarray) -> np.ndarray:
    """Label maps of logits (argmax over classes; ``logit > 0`` for one channel) or label maps unchanged."""
    if x.ndim != 4:
        return x
    if x.shape[1] == 1:
        return (x[:, 0] > 0).astype(np.int64)
    return x.argmax(axis=1)


def confidence_margin(output: np.ndarray) -> np.ndarray:
    """Per pixel, the top-1 minus top-2 *logit* (N x H x W), in the units softmax gives meaning to.

    An output that is already probabilities (a softmax or sigmoid inside the model: every value
    in [0, 1], channels summing to 1) is turned back into log-odds, log p1 - log p2, which is the
    logit margin the softmax came from; otherwise the margin of such a model would never reach
    one logit and no pixel would ever be judged.
    """
    x = np.asarray(output, dtype=np.float32)
    probabilities = x.size and float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and (
        x.shape[1] == 1 or np.allclose(x.sum(axis=1), 1.0, atol=1e-3))
    if x.shape[1] == 1:
        z = x[:, 0]
        if probabilities:
            p = np.clip(z, 1e-7, 1 - 1e-7)
            z = np.log(p) - np.log1p(-p)
        return np.abs(z)
    part = np.partition(x, -2, axis=1)
    top, second = part[:, -1], part[:, -2]
    if probabilities:
        return np.log(np.maximum(top, 1e-30)) - np.log(np.maximum(second, 1e-30))
    return top - second


def confident_pixels(reference_margin: np.ndarray) -> tuple[np.ndarray, bool]:
    """(mask of the confident pixels, whether there are enough of them to judge on)."""
    mask = reference_margin >= CONFIDENT_MARGIN
    share = float(mask.mean()) if mask.size else 0.0
    return mask, share >= MIN_CONFIDENT_FRACTION


@dataclass(frozen=True)
class DeviceVerdict:
    """The self-check's verdict: ``passed`` is None when the golden set cannot judge (no confident
    pixels: an untrained network), which is never reported as a pass."""

    passed: bool | None
    line: str
    confident_fraction: float = 0.0
    confident_agreement: float | None = None
    pixel_agreement: float | None = None


def judge_device(expected_labels: np.ndarray, expected_margin: np.ndarray, output: np.ndarray, precision: str,
                 max_agreement_drop: float | None = None) -> DeviceVerdict:
    """A runtime's ``output`` on the golden inputs against the fp32 labels and margins recorded at
    bundle time: NaN/inf, a wrong shape, or more than the precision's share of confident pixels
    changed is a failure, said in one line."""
    limit = DEVICE_AGREEMENT_DROP.get(precision, DEVICE_AGREEMENT_DROP["int8"])
    if max_agreement_drop is not None:
        limit = max_agreement_drop
    out = np.asarray(output)
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        bad = int(out.size - np.count_nonzero(np.isfinite(out)))
        return DeviceVerdict(False, f"self-check FAILED: the engine outputs {bad} NaN/inf value(s) where the fp32 "
                                    "ONNX is finite (an overflow, or a broken engine): rebuild it, or use a higher precision")
    got = labels_of(out.astype(np.float32) if out.dtype.kind == "f" else out)
    if got.shape != expected_labels.shape:
        return DeviceVerdict(False, f"self-check FAILED: the engine's labels have shape {list(got.shape)}, the golden "
                                    f"labels {list(expected_labels.shape)}: the engine was not built from this bundle's ONNX")
    agree = got == expected_labels
    overall = float(agree.mean()) if agree.size else 1.0
    confident, enough = confident_pixels(expected_margin)
    share = float(confident.mean()) if confident.size else 0.0
    where = (f"{100 * share:.1f} % of {agree.size} golden pixels have an fp32 top-2 margin >= "
             f"{CONFIDENT_MARGIN:g} logit")
    if not enough:
        return DeviceVerdict(None, f"self-check NOT JUDGED: the fp32 reference has no confident pixels ({where}; an "
                                   f"untrained network's logits tie), so label agreement {100 * overall:.2f} % proves "
                                   "nothing: bundle a trained model, or pass real images with --selfcheck-images",
                             share, None, overall)
    on_confident = float(agree[confident].mean())
    drop = 100.0 * (1.0 - on_confident)
    if drop > limit + 1e-9:
        seen = np.unique(got)
        collapse = f"; the engine predicts only class {int(seen[0])}" if seen.size == 1 else ""
        return DeviceVerdict(False, f"self-check FAILED: {precision} engine changed the labels of {drop:.2f} % of "
                                    f"confident pixels vs the fp32 ONNX (limit {limit:g} %; {where}){collapse}",
                             share, on_confident, overall)
    return DeviceVerdict(True, f"self-check passed: {100 * on_confident:.2f} % of confident pixels agree with the fp32 "
                               f"ONNX ({precision}, limit drop {limit:g} %; {where}; {100 * overall:.2f} % of all pixels)",
                         share, on_confident, overall)
