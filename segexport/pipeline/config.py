"""The pipeline's one config file: a TOML document (or ``[tool.segexport]`` in pyproject.toml).

Validated with pydantic (already installed with Typer) rather than by hand: unknown keys,
wrong types and out-of-range values are reported together, one line per error with its key
path (``models[1].width: ...``), which is what a CI log reader needs to fix a config.
Nothing in the file names code that runs except ``model`` itself, which is the same trust as
``segexport onnx --model`` (the config is written by the project, like its CI file).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from segexport.core.limits import MAX_BATCH, MAX_COUNT, MAX_ITERATIONS, MAX_NUM_CLASSES, MAX_SIDE
from segexport.errors import UserError

SCHEMA = 1
Precision = Literal["fp32", "fp16", "int8", "best"]
Deploy = Literal["triton", "deepstream"]
_SIZE_RE = re.compile(r"\s*(\d{1,9})\s*(?:[xX]\s*(\d{1,9}))?\s*")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # always fullmatch: "$" would pass a final newline
MAX_NAME = 128  # names a folder and files inside it (most filesystems stop at 255 bytes)
MAX_MODEL_REF = 1024


def _size(text: str) -> tuple[int, int]:
    m = _SIZE_RE.fullmatch(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a size: write HxW, e.g. 64x64")
    h, w = int(m.group(1)), int(m.group(2) or m.group(1))
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise ValueError(f"{text!r} is out of range: each side must be 1..{MAX_SIDE} pixels")
    return h, w


class Settings(BaseModel):
    """Everything a model may override from ``[defaults]``. ``None`` = the step's own default."""

    # NaN and infinity are refused in every number: a NaN budget or threshold compares false with
    # everything, which would silently pass or fail every check
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    precisions: Optional[list[Precision]] = Field(None, min_length=1)
    opset: Optional[int] = Field(None, ge=18, le=22)
    # segexport.core.targets name (`segexport onnx --target`): the export's opset and lint matrix,
    # calibrate's cache header, the engine step's TensorRT; recorded in the ONNX for deploy
    target: Optional[str] = None
    unpool: Optional[Literal["mask", "native"]] = None
    # calibration (fp16/int8/best variants)
    calib_data: Optional[str] = None  # "synthetic", an image folder, .npy/.npz
    calib_labels: Optional[str] = None
    calib_count: Optional[int] = Field(None, ge=1, le=MAX_COUNT)
    calib_method: Optional[Literal["percentile", "minmax", "entropy"]] = None
    max_miou_drop: Optional[float] = Field(None, ge=0)  # budget vs fp32, mIoU points (needs labels)
    max_agreement_drop: Optional[float] = Field(None, ge=0)  # budget vs fp32, % label agreement
    # parity vs PyTorch
    parity_images: Optional[str] = None
    parity_labels: Optional[str] = None
    parity_count: Optional[int] = Field(None, ge=1, le=MAX_COUNT)
    parity_backends: Optional[list[str]] = None
    thresholds: Optional[dict[str, float]] = None
    # latency
    bench_backends: Optional[list[str]] = None  # [] = no bench step
    bench_batches: Optional[list[int]] = None
    bench_iterations: Optional[int] = Field(None, ge=1, le=MAX_ITERATIONS)
    bench_warmup: Optional[int] = Field(None, ge=0, le=MAX_ITERATIONS)
    bench_trials: Optional[int] = Field(None, ge=1, le=1000)
    bench_threads: Optional[int] = Field(None, ge=0, le=4096)  # CPU intra-op threads while timing; 0 = library default
    # measured seconds a variant's bench may spend (adaptive iterations, early stop once the fastest
    # iteration settles); 0 = always the full bench_trials x bench_iterations
    bench_budget_s: Optional[float] = Field(None, ge=0, le=3600)
    # gates vs --baseline (a previous manifest)
    max_latency_regression: Optional[float] = Field(None, ge=0)  # fraction: 0.10 = 10 % slower
    max_miou_regression: Optional[float] = Field(None, ge=0)  # mIoU points below the release
    max_agreement_regression: Optional[float] = Field(None, ge=0)  # % label agreement below the release
    # engines and deployment
    engine: Optional[Literal["auto", "off", "trt", "trt-rtx"]] = None
    engine_targets: Optional[list[str]] = None  # TensorRT-RTX compute capabilities, e.g. ["sm89"]
    deploy: Optional[list[Deploy]] = None

    @field_validator("target")
    @classmethod
    def _target(cls, v):
        if v is not None:
            from segexport.core.targets import TARGETS

            if v not in TARGETS:
                raise ValueError(f"{v[:40]!r} is not a known target: use one of {', '.join(TARGETS)}")
        return v

    @field_validator("bench_batches")
    @classmethod
    def _batches(cls, v):
        if v is not None and any(not 1 <= b <= MAX_BATCH for b in v):
            raise ValueError(f"batch sizes must be 1..{MAX_BATCH}")
        return v

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v):
        """The names and ranges of `segexport parity --threshold`, checked here rather than when
        the parity step of the last model runs."""
        if v is None:
            return v
        from dataclasses import fields

        from segexport.core.metrics import Thresholds

        try:  # the one place that knows the names and ranges (ValueError for a value out of range)
            Thresholds(min_pixel_agreement=1.0).with_overrides(**v)
        except KeyError as exc:
            known = ", ".join(f.name for f in fields(Thresholds))
            raise ValueError(f"unknown threshold {exc.args[0]!r}: one of {known}") from None
        return v


# bench_warmup 1: every trial enters fresh runners, so warm-ups are paid trials x backends times; a
# third of a zoo run's bench step went to them with 3 (fcn32s 1/4 at 256 px: 12.3 s -> 7.1 s with 1),
# while the first inference, the one that allocates, is the only one they need to absorb. The gate's
# false-failure and detection figures were re-measured with 1 (benchmarks/bench_latency_gate.py).
DEFAULTS = Settings(
    precisions=["fp32"], opset=18, unpool="mask", calib_data="synthetic", calib_labels=None, calib_count=32,
    calib_method="percentile", parity_count=4, parity_backends=["ort-cpu"], thresholds={},
    bench_backends=["torch", "ort-cpu"], bench_batches=[1], bench_iterations=20, bench_warmup=1, bench_trials=5, bench_threads=1, bench_budget_s=10.0,
    max_latency_regression=0.25, max_miou_regression=0.5, max_agreement_regression=0.5, engine="auto",
    engine_targets=[], deploy=[],
)


class ModelEntry(Settings):
    name: str
    model: str
    width: float = Field(1.0, gt=0, le=4)
    num_classes: int = Field(21, ge=1, le=MAX_NUM_CLASSES)
    input_size: Optional[str] = None
    weights: Optional[str] = None
    dynamic: Optional[str] = None
    hw_range: Optional[str] = None  # "32x32:96x96"
    batch: int = Field(1, ge=1, le=MAX_BATCH)
    batch_range: Optional[str] = None  # "1:8"
    model_args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.fullmatch(v) or len(v) > MAX_NAME:
            raise ValueError(f"{v[:60]!r} must be 1..{MAX_NAME} letters, digits, '.', '_' or '-' "
                             "(it names files and folders)")
        return v

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        if not v or len(v) > MAX_MODEL_REF or not v.isprintable():
            raise ValueError(f"{v[:60]!r} is not a model: a zoo name, module:factory or file.py:factory "
                             f"(one line, at most {MAX_MODEL_REF} characters)")
        return v

    @field_validator("input_size")
    @classmethod
    def _input_size(cls, v):
        if v is not None:
            _size(v)
        return v

    @field_validator("hw_range")
    @classmethod
    def _hw_range(cls, v):
        if v is not None:
            lo, sep, hi = v.partition(":")
            if not sep:
                raise ValueError(f"{v!r} must be MINxMIN:MAXxMAX, e.g. 32x32:96x96")
            (h0, w0), (h1, w1) = _size(lo), _size(hi)
            if h0 > h1 or w0 > w1:
                raise ValueError(f"{v!r} is inverted: the minimum comes first, e.g. 32x32:96x96")
        return v

    @field_validator("batch_range")
    @classmethod
    def _batch_range(cls, v):
        if v is not None:
            m = re.fullmatch(r"\s*(\d{1,9})\s*:\s*(\d{1,9})\s*", v)
            if not m:
                raise ValueError(f"{v[:40]!r} must be MIN:MAX, e.g. 1:8")
            lo, hi = int(m.group(1)), int(m.group(2))
            if not 1 <= lo <= hi <= MAX_BATCH:
                raise ValueError(f"{v!r} must be MIN:MAX with 1 <= MIN <= MAX <= {MAX_BATCH}")
        return v

    @field_validator("dynamic")
    @classmethod
    def _dynamic(cls, v):
        if v is not None:
            parts = {p.strip() for p in v.split(",") if p.strip()}
            if not parts or parts - {"batch", "hw"}:
                raise ValueError(f"{v!r} is not one of hw, batch, batch,hw")
        return v

    @property
    def dynamic_axes(self) -> tuple[str, ...]:
        return tuple(sorted({p.strip() for p in (self.dynamic or "").split(",") if p.strip()}))

    def settings(self, defaults: Settings) -> Settings:
        """This model's settings: its own keys, then ``[defaults]``, then the built-in defaults."""
        merged = DEFAULTS.model_dump()
        merged.update({k: v for k, v in defaults.model_dump(exclude_unset=True).items()})
        own = self.model_dump(exclude_unset=True)
        merged.update({k: v for k, v in own.items() if k in Settings.model_fields})
        return Settings(**merged)


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: Settings = Field(default_factory=Settings)
    models: list[ModelEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self):
        seen: dict[str, str] = {}
        for i, m in enumerate(self.models):
            # folded: `Seg` and `seg` are one folder on macOS and Windows runners
            if m.name.casefold() in seen:
                other = seen[m.name.casefold()]
                also = "" if other == m.name else f" (as {other!r}: names differing only in case collide on macOS and Windows)"
                raise ValueError(f"models[{i}].name {m.name!r} is used twice{also}: artefact names must be unique")
            seen[m.name.casefold()] = m.name
        return self


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-after") or part.startswith("literal["):
            continue
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def format_errors(path: Path, exc: ValidationError) -> list[str]:
    """One line per error: ``file: key.path: message``."""
    lines = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (a typo? see `segexport pipeline run --help` for the keys)"
        lines.append(f"{path}: {_loc(err['loc'])}: {msg}")
    return lines


class ConfigError(UserError):
    """A bad config: every error, one a line (the CLI prints them and exits 2)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(lines[0])
        self.lines = lines


def load_config(path: str | Path) -> tuple[PipelineConfig, Path]:
    """Read and validate CONFIG; returns the config and the folder its relative paths are under."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config {str(path)!r} not found: write one (see `segexport pipeline run --help`)")
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML ({' '.join(str(exc).split())[:160]}): fix the syntax") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be a config: fix the file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror}): check the path") from None
    if path.name == "pyproject.toml":
        tool = doc.get("tool", {})
        doc = tool.get("segexport") if isinstance(tool, dict) else None
        if doc is None:
            raise UserError(f"{path} has no [tool.segexport] table: add one, or pass a segexport TOML file")
    try:
        config = PipelineConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(format_errors(path, exc)) from None
    base = path.resolve().parent
    errors = []
    for i, m in enumerate(config.models):
        s = m.settings(config.defaults)
        for key, value in (("weights", m.weights), ("calib_labels", s.calib_labels), ("parity_images", s.parity_images),
                           ("parity_labels", s.parity_labels)):
            if value is not None and not (base / value).exists():
                errors.append(f"{path}: models[{i}].{key}: {value!r} not found (relative to {base})")
        if s.calib_data not in (None, "synthetic"):
            data = base / s.calib_data
            if not data.exists():
                errors.append(f"{path}: models[{i}].calib_data: {s.calib_data!r} not found (relative to {base})")
            elif not data.is_dir() and not (data.is_file() and data.suffix in (".npy", ".npz")):
                errors.append(f"{path}: models[{i}].calib_data: {s.calib_data!r} is not an image folder, a .npy/.npz "
                              "file or 'synthetic'")
        if s.parity_labels and not s.parity_images:
            errors.append(f"{path}: models[{i}].parity_labels: needs parity_images (labels match images by name)")
    if errors:
        raise ConfigError(errors)
    return config, base


def section_of(entry: ModelEntry, defaults: Settings) -> dict:
    """The model's whole effective config (its keys over the defaults), as plain JSON data."""
    return {**entry.model_dump(exclude=set(Settings.model_fields)), **entry.settings(defaults).model_dump()}
