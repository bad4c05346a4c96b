"""Which work a run does: models x variants in config order, split into shards.

A unit is one model at one precision. The split is round-robin over the units in config
order, so it depends only on the config and N (every CI job computes the same split without
talking to the others). The fp32 export a variant is calibrated from is rebuilt (or taken
from the cache) by whichever shard needs it, but *reported* only by the model's first unit,
so merged shards list every artefact exactly once, as one full run does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from segexport.errors import UserError
from segexport.pipeline.config import ModelEntry, PipelineConfig, Settings

PRECISION_ORDER = ("fp32", "fp16", "int8", "best")
MAX_SHARDS = 10_000  # CI matrices stop at a few hundred jobs


@dataclass(frozen=True)
class Unit:
    index: int  # position in the full plan (sort key of the manifest)
    entry: ModelEntry
    settings: Settings
    precision: str
    owns_export: bool  # the model's first unit reports the fp32 export

    @property
    def model(self) -> str:
        return self.entry.name

    @property
    def label(self) -> str:
        return f"{self.entry.name} {self.precision}"

    def steps(self) -> list[str]:
        """The steps of this unit, in order; ``engine``/``deploy`` only where configured."""
        out = ["export"] if self.owns_export else []
        if self.precision != "fp32":
            out.append("calibrate")
        out.append("lint")
        if self.settings.engine != "off":
            out.append("engine")
        out.append("parity")
        if self.settings.bench_backends:
            out.append("bench")
        if self.settings.deploy:
            out.append("deploy")
        return out


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"2/4"`` -> (2, 4); shards count from 1 like CI matrix indices usually shown to people."""
    if text is None:
        return 1, 1
    if not isinstance(text, str):
        raise UserError(f"--shard {text!r} must be a string I/N, e.g. \"1/4\"")
    m = re.fullmatch(r"\s*(\d{1,9})\s*/\s*(\d{1,9})\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)) <= MAX_SHARDS:
        raise UserError(f"--shard {text[:40]!r} must be I/N with 1 <= I <= N <= {MAX_SHARDS}, e.g. --shard 1/4")
    return int(m.group(1)), int(m.group(2))


def full_plan(config: PipelineConfig) -> list[Unit]:
    units: list[Unit] = []
    for entry in config.models:
        settings = entry.settings(config.defaults)
        precisions = sorted(dict.fromkeys(settings.precisions), key=PRECISION_ORDER.index)
        for i, precision in enumerate(precisions):
            units.append(Unit(len(units), entry, settings, precision, owns_export=i == 0))
    return units


def plan(config: PipelineConfig, shard: tuple[int, int] = (1, 1), only: str | None = None) -> list[Unit]:
    """This shard's units (``only``: one model name, or ``name:precision``)."""
    units = full_plan(config)
    if only is not None:
        name, _, precision = only.partition(":")
        names = [e.name for e in config.models]
        if name not in names:
            raise UserError(f"--only {only!r}: no model named {name!r} in the config (models: {', '.join(names)})")
        units = [u for u in units if u.model == name and (not precision or u.precision == precision)]
        if not units:
            raise UserError(f"--only {only!r}: {name} has no {precision} variant (add it to its precisions)")
    i, n = shard
    return [u for k, u in enumerate(units) if k % n == i - 1]
