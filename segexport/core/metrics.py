"""Segmentation-aware parity metrics (numpy only) and the thresholds that fail a CI job.

Generic tools compare tensors; a segmentation user cares whether the *label map* changed,
where, and what it costs in mIoU. So besides max-abs / relative L2 / cosine on the logits,
this module measures:

- pixel agreement of the argmax maps;
- margin-aware agreement: a disagreement where the reference's top-2 logit margin is below
  ``margin_tol`` is numerically ambiguous (any two correct runtimes may flip it), so it is
  counted separately and excluded from the strict figure;
- boundary-band agreement: agreement restricted to pixels within ``boundary_px`` of a
  reference class boundary, where reduced precision shows first;
- per-class IoU of candidate vs reference labels, and mIoU against ground truth.

Inputs are ``N x C x H x W`` logits or ``N x H x W`` label maps (``--argmax`` exports).
A single-channel output (``C == 1``) is a binary segmentation, one sigmoid logit a pixel:
its labels are ``logit > 0`` and its margin is ``|logit|``. An argmax over one channel would
be 0 everywhere, and every label check would pass whatever the runtime computed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from segexport.core.agreement import labels_of  # noqa: F401  (the one definition; the device self-check copies it)

IGNORE_INDEX = 255


@dataclass(frozen=True)
class Thresholds:
    """Pass criteria. ``max_abs_rel`` bounds max|ref - cand| / max|ref| (logits only)."""

    min_pixel_agreement: float
    max_abs_rel: float | None = None
    min_boundary_agreement: float | None = None
    max_miou_drop: float | None = None  # points of mIoU (0..100), with labels
    # Which |diff| the max_abs_rel bound applies to: 1.0 = the maximum; 0.99 = the 99th percentile.
    abs_quantile: float = 1.0

    def with_overrides(self, **overrides: float) -> "Thresholds":
        """A copy with ``overrides``; KeyError for an unknown name, ValueError (naming the
        allowed range) for a value the checks cannot use."""
        values = asdict(self)
        for key, value in overrides.items():
            if key not in values:
                raise KeyError(key)
            check_threshold(key, value)
            values[key] = value
        return Thresholds(**values)


def check_threshold(name: str, value: float) -> None:
    """Agreements are fractions (0.999, not 99.9); the others are non-negative; NaN is no limit."""
    import math

    if not math.isfinite(value):
        raise ValueError(f"{name}={value} is not a finite number")
    if name in ("min_pixel_agreement", "min_boundary_agreement") and not 0 <= value <= 1:
        raise ValueError(f"{name}={value:g} must be a fraction in 0..1 (e.g. 0.999 for 99.9 %)")
    if name == "abs_quantile" and value not in (1.0, 0.99):
        raise ValueError(f"abs_quantile={value:g} must be 1.0 (the maximum |diff|) or 0.99 (its 99th percentile)")
    if name in ("max_abs_rel", "max_miou_drop") and value < 0:
        raise ValueError(f"{name}={value:g} must be >= 0")


# fp32: the export contract (99.99 % and 1e-4 relative). fp16 keeps ~3 decimal digits, so
# logits drift ~1e-3 relative and only near-tied pixels may flip: 99.9 %. int8 moves logits by a few
# percent: agreement is judged on labels (99 %, boundaries 95 %) and on mIoU (<= 1 point with labels).
EXPORT_THRESHOLDS: dict[str, Thresholds] = {  # export verification: seeded random inputs, true max-abs
    "fp32": Thresholds(min_pixel_agreement=0.9999, max_abs_rel=1e-4),
    "fp16": Thresholds(min_pixel_agreement=0.999, max_abs_rel=2e-2, min_boundary_agreement=0.99),
    "int8": Thresholds(min_pixel_agreement=0.99, min_boundary_agreement=0.95, max_miou_drop=1.0),
}

# `segexport parity` on real images bounds the 99th percentile of |diff|, not its maximum: networks
# that unpool by max index (SegNet, DeconvNet) place a value at whichever position of a window is
# largest, and on flat image regions positions tie, so last-bit differences between runtimes move a
# few values by a pixel (runtime numerics, not the export; figures in docs/checks.md). The
# label metrics stay strict; a wrong export differs everywhere and still fails.
PARITY_THRESHOLDS: dict[str, Thresholds] = {k: replace(v, abs_quantile=0.99) for k, v in EXPORT_THRESHOLDS.items()}
THRESHOLDS = EXPORT_THRESHOLDS  # the name older imports use


@dataclass
class ParityMetrics:
    pixels: int
    pixel_agreement: float
    max_abs: float | None = None
    mean_abs: float | None = None
    rel_l2: float | None = None
    cosine: float | None = None
    ref_max_abs: float | None = None
    abs_p99: float | None = None
    ambiguous_disagreements: int = 0
    strict_agreement: float | None = None  # agreement ignoring ambiguous (low-margin) pixels
    boundary_pixels: int = 0
    boundary_agreement: float | None = None
    class_iou: dict[int, float] = field(default_factory=dict)
    nonfinite: int = 0  # NaN/inf values in the candidate's logits (fp16 overflow shows here first)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    value: float
    limit: float
    message: str


def label_count(num_classes: int) -> int:
    """How many labels a model with ``num_classes`` output channels predicts: one channel is
    binary (background / foreground), so two."""
    return max(num_classes, 2)


def top2_margin(logits: np.ndarray) -> np.ndarray:
    """Per pixel, top-1 minus top-2 logit (N x H x W). For one sigmoid logit z, |z|: the same
    margin as a two-class softmax with logits (0, z)."""
    if logits.shape[1] < 2:
        return np.abs(logits[:, 0])
    part = np.partition(logits, -2, axis=1)
    return part[:, -1] - part[:, -2]


def boundary_band(labels: np.ndarray, k: int) -> np.ndarray:
    """Pixels within ``k`` px (Chebyshev distance) of a label change, as a bool mask (N x H x W).

    A pixel is on the boundary when a 4-neighbour has another label (``k <= 1``: just those);
    the band dilates that by ``k - 1`` with a square window. Pure numpy (shifted ORs): scipy's
    binary_dilation would do the same but is not otherwise a dependency.
    """
    edge = np.zeros(labels.shape, dtype=bool)
    diff_v = labels[:, 1:, :] != labels[:, :-1, :]
    diff_h = labels[:, :, 1:] != labels[:, :, :-1]
    edge[:, 1:, :] |= diff_v
    edge[:, :-1, :] |= diff_v
    edge[:, :, 1:] |= diff_h
    edge[:, :, :-1] |= diff_h
    band = edge.copy()
    for _ in range(max(0, k - 1)):
        grown = band.copy()
        grown[:, 1:, :] |= band[:, :-1, :]
        grown[:, :-1, :] |= band[:, 1:, :]
        grown[:, :, 1:] |= band[:, :, :-1]
        grown[:, :, :-1] |= band[:, :, 1:]
        # diagonals, so the band is a square (Chebyshev) neighbourhood
        grown[:, 1:, 1:] |= band[:, :-1, :-1]
        grown[:, 1:, :-1] |= band[:, :-1, 1:]
        grown[:, :-1, 1:] |= band[:, 1:, :-1]
        grown[:, :-1, :-1] |= band[:, 1:, 1:]
        band = grown
    return band


def confusion(pred: np.ndarray, truth: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """``num_classes x num_classes`` counts, rows = truth, columns = prediction.

    Out-of-range values raise instead of being counted: one stray class id would make
    ``bincount`` spill into a neighbouring cell and silently corrupt every IoU.
    """
    if pred.shape != truth.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs truth {truth.shape}")
    valid = truth != ignore_index
    t = truth[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    for what, values in (("truth", t), ("prediction", p)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            bad = np.unique(values[(values < 0) | (values >= num_classes)])[:5].tolist()
            raise ValueError(f"{what} has class ids {bad} outside 0..{num_classes - 1} (ignore = {ignore_index})")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(pred: np.ndarray, truth: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX) -> dict[int, float]:
    """IoU of every class present in ``pred`` or ``truth`` (absent from both: left out).
    ``num_classes`` counts output channels, so 1 (binary) means labels 0 and 1."""
    num_classes = label_count(num_classes)
    cm = confusion(pred, truth, num_classes, ignore_index)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    return {c: float(inter[c] / union[c]) for c in range(num_classes) if union[c] > 0}


def miou(pred: np.ndarray, truth: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX) -> float:
    """Mean IoU in points (0..100) over the classes present in prediction or ground truth."""
    ious = iou_per_class(pred, truth, num_classes, ignore_index)
    return 100.0 * float(np.mean(list(ious.values()))) if ious else float("nan")


def compare(reference: np.ndarray, candidate: np.ndarray, *, margin_tol: float = 1e-3, boundary_px: int = 2) -> ParityMetrics:
    """All parity metrics of ``candidate`` against ``reference`` (same shape).

    Logits are reduced one sample at a time, with float64 sums: a batch of VOC-sized outputs
    is hundreds of MB, and whole-array float64 temporaries would multiply that by seven. Only
    ``|diff|`` is kept whole (float32), because its 99th percentile needs every element.
    """
    if reference.shape != candidate.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape} vs candidate {candidate.shape}")
    if reference.ndim not in (3, 4):
        raise ValueError(f"expected N x C x H x W logits or N x H x W labels, got shape {reference.shape}")
    if reference.ndim == 4:
        m, ref_lab, cand_lab = _compare_logits(reference, candidate, margin_tol)
        agree = ref_lab == cand_lab
        num_classes = reference.shape[1]
    else:
        ref_lab, cand_lab = reference, candidate
        agree = ref_lab == cand_lab
        m = ParityMetrics(pixels=int(agree.size), pixel_agreement=float(agree.mean()) if agree.size else 1.0)
        num_classes = int(max(ref_lab.max(initial=0), cand_lab.max(initial=0))) + 1
    band = boundary_band(ref_lab, boundary_px)
    m.boundary_pixels = int(band.sum())
    m.boundary_agreement = float(agree[band].mean()) if m.boundary_pixels else 1.0
    m.class_iou = iou_per_class(cand_lab, ref_lab, num_classes)
    return m


def _compare_logits(reference: np.ndarray, candidate: np.ndarray,
                    margin_tol: float) -> tuple[ParityMetrics, np.ndarray, np.ndarray]:
    """Tensor metrics and both label maps. NaN/inf in either input propagate into the sums and
    maxima (np.maximum, not Python's max, which would silently drop a NaN) so they fail checks."""
    n = reference.shape[0]
    diff = np.empty(reference.shape, np.float32)
    ref_lab = np.empty((n, *reference.shape[2:]), np.int64)
    cand_lab = np.empty_like(ref_lab)
    sum_abs = sum_d2 = sum_r2 = sum_c2 = dot = 0.0
    max_abs = ref_max = np.float64(0.0)
    ambiguous = nonfinite = 0
    for i in range(n):
        r = reference[i].astype(np.float64)
        c = candidate[i].astype(np.float64)
        d = r - c
        sum_d2 += float(np.vdot(d, d))
        np.abs(d, out=d)
        diff[i] = d
        sum_abs += float(d.sum())
        max_abs = np.maximum(max_abs, d.max(initial=0.0))
        ref_max = np.maximum(ref_max, np.abs(r).max(initial=0.0))
        sum_r2 += float(np.vdot(r, r))
        sum_c2 += float(np.vdot(c, c))
        dot += float(np.vdot(r, c))
        ref_lab[i] = labels_of(reference[i:i + 1])[0]
        cand_lab[i] = labels_of(candidate[i:i + 1])[0]
        nonfinite += int(c.size - np.count_nonzero(np.isfinite(c)))
        low = top2_margin(reference[i:i + 1])[0] < margin_tol
        ambiguous += int(((ref_lab[i] != cand_lab[i]) & low).sum())
    agree = ref_lab == cand_lab
    pixels = int(agree.size)
    m = ParityMetrics(pixels=pixels, pixel_agreement=float(agree.mean()) if pixels else 1.0)
    m.max_abs = float(max_abs)
    m.mean_abs = sum_abs / diff.size if diff.size else 0.0
    m.abs_p99 = float(np.quantile(diff.ravel(), 0.99, overwrite_input=True)) if diff.size else 0.0
    m.ref_max_abs = float(ref_max)
    rn, cn = float(np.sqrt(sum_r2)), float(np.sqrt(sum_c2))
    m.rel_l2 = float(np.sqrt(sum_d2) / rn) if rn != 0 else float(cn != 0)
    m.cosine = float(dot / (rn * cn)) if rn != 0 and cn != 0 else float(rn == cn)
    m.nonfinite = nonfinite
    m.ambiguous_disagreements = ambiguous
    clear = pixels - ambiguous
    m.strict_agreement = float(agree.sum() / clear) if clear else 1.0
    return m, ref_lab, cand_lab


def evaluate(metrics: ParityMetrics, thresholds: Thresholds, *, miou_drop: float | None = None) -> list[CheckResult]:
    """Named pass/fail checks; ``miou_drop`` (points) is checked when labels were given.

    Logits always get a ``finite`` check: an inf or NaN logit can still win (or lose) the
    argmax in a way that happens to agree, and INT8 thresholds judge labels only.
    """
    checks = []
    if metrics.max_abs is not None:
        checks.append(CheckResult(
            "finite", metrics.nonfinite == 0, float(metrics.nonfinite), 0.0,
            f"{metrics.nonfinite} NaN/inf values in the candidate's logits (limit 0)",
        ))
    checks.append(CheckResult(
        "pixel_agreement", metrics.pixel_agreement >= thresholds.min_pixel_agreement, metrics.pixel_agreement,
        thresholds.min_pixel_agreement,
        f"pixel agreement {100 * metrics.pixel_agreement:.4f} % (limit >= {100 * thresholds.min_pixel_agreement:.4f} %)",
    ))
    if thresholds.max_abs_rel is not None and metrics.max_abs is not None:
        limit = thresholds.max_abs_rel * max(metrics.ref_max_abs or 0.0, 1e-12)
        if thresholds.abs_quantile >= 1.0:
            value, what = metrics.max_abs, "max |diff|"
        elif thresholds.abs_quantile == 0.99:
            value, what = metrics.abs_p99, f"p99 |diff| (max {metrics.max_abs:.2e})"
        else:
            raise ValueError("abs_quantile must be 1.0 or 0.99")
        checks.append(CheckResult(
            "max_abs", value <= limit, value, limit,
            f"{what} {value:.3e} (limit {thresholds.max_abs_rel:g} x max|ref| = {limit:.3e})",
        ))
    if thresholds.min_boundary_agreement is not None and metrics.boundary_agreement is not None:
        checks.append(CheckResult(
            "boundary_agreement", metrics.boundary_agreement >= thresholds.min_boundary_agreement,
            metrics.boundary_agreement, thresholds.min_boundary_agreement,
            f"boundary-band agreement {100 * metrics.boundary_agreement:.3f} % "
            f"(limit >= {100 * thresholds.min_boundary_agreement:.3f} %)",
        ))
    if thresholds.max_miou_drop is not None and miou_drop is not None:
        checks.append(CheckResult(
            "miou_drop", miou_drop <= thresholds.max_miou_drop, miou_drop, thresholds.max_miou_drop,
            f"mIoU drop {miou_drop:.3f} pt (limit <= {thresholds.max_miou_drop:.3f} pt)",
        ))
    return checks
