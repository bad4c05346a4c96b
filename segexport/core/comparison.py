"""One reference-vs-candidate comparison, shared by export verification and parity.

Both steps ask the same question (does the candidate match the reference within these
thresholds, and if not, is the reference itself unstable at float32?) and must answer it the
same way, so the order is fixed here: compare, judge against the thresholds, and only on a
failure measure the reference's own noise floor (once per run: ``floors`` is a callable the
caller caches) and hold the candidate to it when the reference fails its own contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from segexport.core.metrics import CheckResult, ParityMetrics, Thresholds, compare, evaluate
from segexport.core.noise_floor import judge_against_floor, worst


@dataclass
class Judgement:
    metrics: ParityMetrics
    checks: list[CheckResult] = field(default_factory=list)
    noise_floor: ParityMetrics | None = None  # the reference against itself, when it was measured
    held_to_floor: bool = False  # the reference failed the thresholds against itself: checks held to its floor

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def judge(reference: np.ndarray, candidate: np.ndarray, thresholds: Thresholds, *,
          floors: Callable[[], list[ParityMetrics]], miou_drop: float | None = None,
          fixed: Iterable[str] = ()) -> Judgement:
    """Compare ``candidate`` with ``reference``; ``floors()`` is called only when a check fails.
    ``fixed`` names thresholds the user set explicitly, which the floor never relaxes."""
    metrics = compare(reference, candidate)
    verdict = Judgement(metrics, evaluate(metrics, thresholds, miou_drop=miou_drop))
    if not verdict.passed:
        measured = floors()
        verdict.noise_floor = worst(measured)
        held = judge_against_floor(metrics, thresholds, measured, miou_drop=miou_drop, fixed=fixed)
        if held is not None:
            verdict.checks, verdict.held_to_floor = held, True
    return verdict


PROBE_KINDS = ("random", "flat", "constant")
CONSTANT_PROBE = 0.5  # the value of every pixel of the ``constant`` probe (normalized space)
# max|diff| / max|ref| the ``constant`` probe is held to (labels stay strict). A constant image
# makes channels exactly constant (a 1x1 conv of it, MONAI UNETR's encoder): PyTorch normalizes
# such a channel to its bias exactly, while ONNX Runtime's InstanceNormalization leaves the
# mean's rounding, which the variance's sqrt(eps) turns into up to ~6e-4 of max|ref| (measured:
# tests/exporter/test_checks_nothing.py's constant_channels, real UNETR 1.9e-4, SwinUNETR 1.3e-4).
# A wrong tie-break, the reason for this probe, moves values by a good part of max|ref|.
CONSTANT_MAX_ABS_REL = 1e-3


def probe_inputs(shape: tuple[int, ...], rng: np.random.Generator,
                 kinds: Iterable[str] = PROBE_KINDS) -> list[tuple[str, np.ndarray]]:
    """Inputs (in the model's normalized space) that a correct export must match PyTorch on.

    ``random``: standard normal noise, where no two values tie. It cannot see a wrong tie-break
    (a max pool or unpool that keeps the last maximum instead of the first, a ceil-mode pad that
    wins a max): noise never ties. ``flat``: the top half 0, the next quarter 1, the rest noise,
    what saturated or uniform areas of a real photo give; every pool window inside a flat area
    ties exactly. ``constant``: all 0.5 (a flat image half a standard deviation off the dataset's
    mean colour), ties everywhere but at the borders the padding touches. Not 0: a network whose
    biases are 0, as at initialisation, maps 0 to exactly 0 and the row would compare zeros. Comparisons on ``flat`` and ``constant`` measure the
    reference's floor with a flatness-keeping jitter (:func:`segexport.core.noise_floor.measure_floor`).
    """
    made: list[tuple[str, np.ndarray]] = []
    for kind in kinds:
        x = rng.standard_normal(shape, dtype=np.float32)
        if kind == "flat":
            h = shape[-2]
            x[..., : h // 2, :] = 0.0
            x[..., h // 2: h // 2 + max(1, h // 4), :] = 1.0
        elif kind == "constant":
            x[...] = CONSTANT_PROBE
        elif kind != "random":
            raise ValueError(f"unknown probe input kind {kind!r}")
        made.append((kind, x))
    return made


def pad_batch(chunk: np.ndarray, batch: int) -> np.ndarray:
    """A static-batch graph takes exactly ``batch`` samples: repeat the last one (callers drop
    the outputs of the padding)."""
    if len(chunk) < batch:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
    return chunk


def run_batched(runner: Any, inputs: np.ndarray, input_name: str, output_name: str, batch: int) -> np.ndarray:
    """Run ``inputs`` through a Polygraphy-style runner in chunks of the exported batch size;
    a static batch pads the last chunk and drops the padding after."""
    outs = []
    with runner:
        for i in range(0, len(inputs), batch):
            chunk = inputs[i:i + batch]
            out = runner.infer({input_name: pad_batch(chunk, batch)})
            outs.append(np.asarray(out[output_name])[: len(chunk)])
    return np.concatenate(outs)
