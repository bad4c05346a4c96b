"""The accuracy gate every reduced-precision artefact passes before it is presented as good.

Why a gate by default: a verification tool that writes a 23 %-agreement INT8 model with a ✓
is worse than none. Why *confident* pixels: an untrained network (or a trained one on
ambiguous pixels) has near-tied logits, and any correct runtime may flip a pixel whose top-2
margin is a rounding error; failing those would fail every randomly initialised zoo model for
noise. A pixel whose fp32 top-1 logit leads the top-2 by at least ``CONFIDENT_MARGIN`` (1 logit:
the top class at least e = 2.7 times as likely under the network's own softmax) is decided;
reduced precision that flips such pixels has changed what the network says, and that fails.

The verdict is one of three, always said in one line:

* judged and within the limits -> pass;
* judged and past a limit -> fail (exit 1, the artefact is not written);
* the reference has (almost) no confident pixels -> "not judged", honestly: no ✓.

Limits per precision (``DEFAULT_LIMITS``) are drops vs fp32: label agreement on confident
pixels (percent) and, with ground-truth labels, mIoU in points. ``--max-agreement-drop`` /
``--max-miou-drop`` replace the default of their metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segexport.core.agreement import (  # noqa: F401  (re-exported: one rule for the gate and the device)
    AGREEMENT_DROP,
    CONFIDENT_MARGIN,
    MIN_CONFIDENT_FRACTION,
    confidence_margin,
    confident_pixels,
)


@dataclass(frozen=True)
class Limits:
    agreement_drop: float  # percent of confident pixels whose label may change
    miou_drop: float  # points of mIoU, with ground-truth labels


# int8 moves logits by a few percent: 1 % of decided pixels and 1 mIoU point; fp16 keeps ~3
# digits: 0.1 % and 0.5 point. Trained fixtures sit well inside both (benchmarks/README.md, precision table).
DEFAULT_LIMITS = {"int8": Limits(agreement_drop=AGREEMENT_DROP["int8"], miou_drop=1.0),
                  "fp16": Limits(agreement_drop=AGREEMENT_DROP["fp16"], miou_drop=0.5)}


@dataclass
class Verdict:
    precision: str
    judged: bool
    passed: bool
    line: str  # what was decided and why, one line
    confident_fraction: float
    confident_agreement: float | None  # fraction, on confident pixels
    pixel_agreement: float  # fraction, on every pixel
    miou_drop: float | None
    limits: Limits

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def judge(precision: str, *, reference_labels: np.ndarray, candidate_labels: np.ndarray, reference_margin: np.ndarray,
          miou_drop: float | None, max_agreement_drop: float | None = None,
          max_miou_drop: float | None = None, candidate_nonfinite: int = 0) -> Verdict:
    """The gate's verdict for a ``precision`` candidate against its fp32 reference.

    Two failures need no confident pixels: a candidate that outputs NaN/inf (an FP16 overflow), and
    an mIoU drop past the limit on labelled data (a measured accuracy loss is one, whatever the
    logits' scale; a network trained to small logits would otherwise never be judged)."""
    base = DEFAULT_LIMITS.get(precision, DEFAULT_LIMITS["int8"])
    limits = Limits(agreement_drop=base.agreement_drop if max_agreement_drop is None else max_agreement_drop,
                    miou_drop=base.miou_drop if max_miou_drop is None else max_miou_drop)
    agree = reference_labels == candidate_labels
    confident, enough = confident_pixels(reference_margin)
    share = float(confident.mean()) if confident.size else 0.0
    overall = float(agree.mean()) if agree.size else 1.0
    where = f"{100 * share:.1f} % of pixels have a top-2 margin >= {CONFIDENT_MARGIN:g} logit"
    hint = (f"; keep the sensitive layers in float with calibrate's --max-agreement-drop {limits.agreement_drop:g}"
            + (f" or --max-miou-drop {limits.miou_drop:g}" if miou_drop is not None else "")
            + ", find the diverging module with `segexport debug`, or use a higher precision")
    if candidate_nonfinite:
        line = (f"{precision} fails the accuracy gate: it outputs {candidate_nonfinite} NaN/inf value(s) where fp32 "
                f"is finite (an overflow){hint}")
        return Verdict(precision, True, False, line, share, None, overall, miou_drop, limits)
    if not enough and miou_drop is not None and miou_drop > limits.miou_drop + 1e-9:
        line = (f"{precision} fails the accuracy gate: mIoU dropped {miou_drop:.2f} pt (limit {limits.miou_drop:g}) "
                f"although the fp32 reference has no confident pixels ({where}){hint}")
        return Verdict(precision, True, False, line, share, None, overall, miou_drop, limits)
    if not enough:
        line = (f"not judged: the fp32 reference has no confident pixels ({where}; an untrained network's logits "
                f"tie), so label agreement {100 * overall:.2f} % is noise, not a verdict")
        return Verdict(precision, False, True, line, share, None, overall, miou_drop, limits)
    on_confident = float(agree[confident].mean())
    drop = 100.0 * (1.0 - on_confident)
    failures = []
    if drop > limits.agreement_drop + 1e-9:
        failures.append(f"labels of {drop:.2f} % of confident pixels changed (limit {limits.agreement_drop:g} %)")
    if miou_drop is not None and miou_drop > limits.miou_drop + 1e-9:
        failures.append(f"mIoU dropped {miou_drop:.2f} pt (limit {limits.miou_drop:g})")
    miou_text = f", mIoU drop {miou_drop:.2f} pt (limit {limits.miou_drop:g})" if miou_drop is not None else ""
    if failures:
        line = f"{precision} fails the accuracy gate: {'; '.join(failures)} ({where}){hint}"
        return Verdict(precision, True, False, line, share, on_confident, overall, miou_drop, limits)
    line = (f"accuracy gate passed: {100 * on_confident:.2f} % agreement on confident pixels (limit drop "
            f"{limits.agreement_drop:g} %; {where}){miou_text}")
    return Verdict(precision, True, True, line, share, on_confident, overall, miou_drop, limits)
