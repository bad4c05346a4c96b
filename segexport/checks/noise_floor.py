"""The reference's own float32 noise floor, and checks held to it.

Some networks are chaotic at float32. Untrained SegNet and DeconvNet unpool by max position:
a pool window whose two largest values differ in the last bits sends its value to another
position under any last-bit change, and deep in DeconvNet one such flip changes 0.2 % of the
labels. No runtime can then meet a strict contract against PyTorch, because PyTorch does not
meet it against itself. The floor is measured, not assumed: PyTorch against itself with the
input jittered by 1e-7 (float32's rounding of the input) and 1e-6 (about what two correct
float32 implementations drift apart by after a few convolutions: a K-term dot product summed
in another order moves by ~sqrt(K) ulps), three samples at each: which windows flip is luck, and
one sample's max |diff| says little (full-width SegNet at 512x512, six samples: 2.3 % to 18.5 %
of max|ref|, with ONNX Runtime at 10.3 %). Only when the reference fails the thresholds against
itself are the checks relaxed, and then only to the floor: labels at most 0.5 pt below it,
max and 99th-percentile |diff| at most twice its own. Where flips are local (SegNet) the floor's
p99 stays tiny, so a wrong weight, which moves every value, still fails. A stable reference
(every trained fixture, every model on real images we measured) keeps the strict contract.

Shared by export verification (``segexport onnx``) and ``segexport parity``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable

import numpy as np

from segexport.checks.metrics import CheckResult, ParityMetrics, Thresholds, compare, evaluate

JITTERS = (1e-7, 1e-6)  # relative input jitter
SAMPLES_PER_JITTER = 3
SLACK_AGREEMENT = 0.005  # the floor is one random sample: allow half a point below it
SLACK_ABS = 2.0


def measure_floor(reference: Callable[[np.ndarray], np.ndarray], x: np.ndarray, ref: np.ndarray,
                  rng: np.random.Generator) -> list[ParityMetrics]:
    """``ref`` (the reference's output for ``x``) against the reference on jittered copies of ``x``."""
    return [compare(ref, reference(x * (1 + rng.uniform(-j, j, size=x.shape).astype(np.float32))))
            for j in JITTERS for _ in range(SAMPLES_PER_JITTER)]


def worst(floors: list[ParityMetrics]) -> ParityMetrics:
    """The floor sample furthest from the reference: lowest agreement, then largest max |diff|."""
    return min(floors, key=lambda f: (f.pixel_agreement, -_relative(f, 1.0)))


def judge_against_floor(metrics: ParityMetrics, thresholds: Thresholds, floors: list[ParityMetrics], *,
                        miou_drop: float | None = None, fixed: Iterable[str] = ()) -> list[CheckResult] | None:
    """The checks of ``metrics`` held to the floor, or None when the reference is stable
    (passes ``thresholds`` against itself), in which case the caller's strict verdict stands.

    ``fixed`` names thresholds the user set explicitly (``--threshold``): they are applied as
    given, never relaxed, since the user said exactly what must hold."""
    if all(c.passed for f in floors for c in evaluate(f, thresholds)):
        return None
    floor_bounds = dict(
        min_pixel_agreement=min(thresholds.min_pixel_agreement,
                                min(f.pixel_agreement for f in floors) - SLACK_AGREEMENT),
        min_boundary_agreement=None if thresholds.min_boundary_agreement is None else min(
            thresholds.min_boundary_agreement,
            min(f.boundary_agreement if f.boundary_agreement is not None else 1.0 for f in floors) - SLACK_AGREEMENT),
        max_abs_rel=None if thresholds.max_abs_rel is None else max(
            thresholds.max_abs_rel, SLACK_ABS * max(_relative(f, thresholds.abs_quantile) for f in floors)),
    )
    relaxed = replace(thresholds, **{k: v for k, v in floor_bounds.items() if k not in set(fixed)})
    checks = evaluate(metrics, relaxed, miou_drop=miou_drop)
    if (thresholds.max_abs_rel is not None and thresholds.abs_quantile >= 1.0 and metrics.max_abs is not None
            and "max_abs_rel" not in set(fixed)):
        # A relaxed maximum alone would let a wrong weight through; the bulk of |diff| is bounded too.
        bulk = replace(thresholds, abs_quantile=0.99,
                       max_abs_rel=max(thresholds.max_abs_rel, SLACK_ABS * max(_relative(f, 0.99) for f in floors)))
        checks += [replace(c, name="abs_p99") for c in evaluate(metrics, bulk) if c.name == "max_abs"]
    return checks


def _relative(m: ParityMetrics, quantile: float) -> float:
    value = m.max_abs if quantile >= 1.0 else m.abs_p99
    return 0.0 if value is None else value / max(m.ref_max_abs or 0.0, 1e-12)
