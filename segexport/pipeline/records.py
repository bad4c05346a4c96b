"""The shape and range of a step's record (verdict, message, figures), wherever it is read from.

A step record is written by this pipeline, but read back from files other jobs can write: a
cache entry (``entry.json``), a shard's ``manifest.json`` (merge), a release's manifest
(``--baseline``). Each is data, so each is validated like any other file before anything
computes with it: a ``"verdict": 7`` must not count as a pass, a ``pixel_agreement`` of 5.0
must not show as "500 %", a string ``p50_ms`` must not crash the report after every step ran.

Validated with pydantic (as the config is): the figures the report, the gates and the merge
read are typed and bounded; keys they do not read are kept as they are.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Fraction = Optional[Annotated[float, Field(ge=0, le=1)]]  # label agreement: 0..1
Points = Optional[Annotated[float, Field(ge=0, le=100)]]  # mIoU: 0..100
Signed = Optional[Annotated[float, Field(ge=-100, le=100)]]  # a change in points
NonNeg = Optional[Annotated[float, Field(ge=0)]]
Millis = Annotated[float, Field(gt=0)]


class _Open(BaseModel):
    """Known keys typed (strictly: a "5" is not a number), unknown keys kept; no NaN/inf."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)


class _Check(_Open):
    name: str
    value: Optional[float] = None
    limit: Optional[float] = None
    passed: bool


class ParityFigures(_Open):
    candidate: Optional[str] = None
    pixel_agreement: Fraction = None
    boundary_agreement: Fraction = None
    max_abs: NonNeg = None
    miou_reference: Points = None
    miou: Points = None
    miou_drop: Signed = None
    held_to_floor: Optional[bool] = None
    checks: list[_Check] = Field(default_factory=list)
    skipped: dict[str, str] = Field(default_factory=dict)


class _Latency(_Open):
    p50_ms: Millis
    best_ms: Millis
    iterations: Annotated[int, Field(ge=1)]
    trial_medians_ms: list[Millis] = Field(min_length=1)
    trial_best_ms: list[Millis] = Field(default_factory=list)
    noise: NonNeg = None
    reference_p50_ms: Optional[Millis] = None
    ratio_to_reference: Optional[Annotated[float, Field(gt=0)]] = None
    reference_best_ms: Optional[Millis] = None
    best_ratio_to_reference: Optional[Annotated[float, Field(gt=0)]] = None
    speedup_vs_torch: Optional[Annotated[float, Field(gt=0)]] = None


class BenchFigures(_Open):
    input_size: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    batches: dict[Annotated[str, Field(pattern=r"^[0-9]{1,5}$")], dict[str, _Latency]] = Field(default_factory=dict)
    skipped: dict[str, str] = Field(default_factory=dict)
    cpu_threads: Any = None


class _VerifyRow(_Open):
    shape: list[int]
    pixel_agreement: Fraction = None
    max_abs: NonNeg = None
    held_to_floor: Optional[bool] = None
    passed: bool


class ExportFigures(_Open):
    nodes: Optional[Annotated[int, Field(ge=0)]] = None
    verify: list[_VerifyRow] = Field(default_factory=list)


class GateFigures(_Open):
    """calibrate's accuracy gate, as report.md shows it."""

    judged: bool
    passed: bool
    confident_agreement: Fraction = None
    confident_fraction: Fraction = None
    line: Optional[Annotated[str, Field(max_length=2000)]] = None


class CalibrateFigures(_Open):
    """Loose on purpose beyond the figures shown as percentages: the calibrate step's figures
    grow with its precision search."""

    chosen: Optional[str] = None
    cost: Optional[float] = None
    cost_kind: Optional[str] = None
    pixel_agreement: Union[Fraction, dict[str, Fraction]] = None
    miou: Union[Points, dict[str, Points]] = None
    miou_drop: Optional[Annotated[float, Field(ge=-100, le=100)]] = None
    gate: Optional[GateFigures] = None


class LintFigures(_Open):
    errors: Optional[Annotated[int, Field(ge=0)]] = None
    warnings: Optional[Annotated[int, Field(ge=0)]] = None
    parser: Optional[str] = None
    parser_skipped: Optional[str] = None


class EngineFigures(_Open):
    backend: Optional[str] = None
    tensorrt: Optional[str] = None
    precision: Optional[str] = None
    bytes: Optional[Annotated[int, Field(ge=0)]] = None


class DeployFigures(_Open):
    bundles: list[str] = Field(default_factory=list)
    engine_in_bundle: Optional[bool] = None
    note: Optional[str] = None


class _GateLatency(_Open):
    change_best: float
    change_ratio: Optional[float] = None
    change_best_ratio: Optional[float] = None
    noise: NonNeg = None
    baseline_noise: NonNeg = None


class AccuracyGateFigures(_Open):
    agreement: Fraction = None
    baseline_agreement: Fraction = None
    agreement_change_pt: Signed = None
    miou: Points = None
    baseline_miou: Points = None
    miou_change_pt: Signed = None


FIGURES: dict[str, type[_Open]] = {
    "export": ExportFigures, "calibrate": CalibrateFigures, "lint": LintFigures, "engine": EngineFigures,
    "parity": ParityFigures, "bench": BenchFigures, "deploy": DeployFigures, "gate-accuracy": AccuracyGateFigures,
}


class StepRecord(BaseModel):
    """One step's verdict as stored; ``key`` is the cache key (None for a gate)."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)

    verdict: Literal["pass", "fail", "skip", "error"]
    message: str = Field("", max_length=100_000)
    figures: dict[str, Any] = Field(default_factory=dict)
    key: Optional[str] = None


def check_step(step: str, record: object, *, verdicts: tuple[str, ...] = ("pass", "fail", "skip", "error")) -> dict:
    """``record`` validated as the result of ``step``; returns it as plain data. Raises ValueError
    (one line: the first problem, with its key path) for anything else."""
    try:
        rec = StepRecord.model_validate(record)
        if rec.verdict not in verdicts:
            raise ValueError(f"verdict {rec.verdict!r} is not one of {', '.join(verdicts)}")
        model = FIGURES.get(step)
        if step == "gate-latency":
            for name, fig in rec.figures.items():
                _GateLatency.model_validate(fig)
        elif model is not None:
            model.model_validate(rec.figures)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ValueError(f"{step}.{where}: {err['msg']}") from None
    return record  # type: ignore[return-value]
