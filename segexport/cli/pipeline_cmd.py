"""``segexport pipeline``: run the CI export pipeline from one config, and merge shards."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from segexport.cli.common import console, err_console
from segexport.errors import CheckFailed, UserError

pipeline_app = typer.Typer(help="The CI export pipeline: one config, every model x precision, one report.",
                           no_args_is_help=True, rich_markup_mode="rich")

CONFIG_EXAMPLE = """
      [defaults]
      precisions = ["fp32", "int8"]      # fp32, fp16, int8, best
      calib_data = "synthetic"           # or an image folder
      calib_count = 32
      bench_backends = ["torch", "ort-cpu"]

      [[models]]
      name = "unet-small"                # artefact name
      model = "unet"                     # zoo, module:fn, file.py:fn
      width = 0.0625
      num_classes = 4
      input_size = "64x64"
      weights = "weights/unet.pt"        # optional, relative to the config
      dynamic = "hw"                     # optional: hw, batch, batch,hw
      precisions = ["fp32", "fp16"]      # optional, overrides [defaults]
"""


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")


class _Plain:
    """One line a step: CI logs (no tty) keep every line, in order, with no control codes."""

    def begin(self, total: int) -> None:
        self.total, self.done = total, 0

    def step(self, unit: str, step: str, status: str, seconds: float) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total}] {unit} {step}: {status} ({seconds:.1f} s)", flush=True)

    def end(self) -> None:
        pass


class _Rich:
    """One live progress bar on a terminal; each finished step printed above it."""

    def begin(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("[bold]pipeline"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, transient=True)
        self.bar.start()
        self.task = self.bar.add_task("pipeline", total=total)

    def step(self, unit: str, step: str, status: str, seconds: float) -> None:
        from rich.markup import escape

        colour = {"fail": "red", "error": "red", "cached": "dim"}.get(status.split(";")[0], "green")
        self.bar.console.print(f"  {escape(unit)} {step}: [{colour}]{escape(status)}[/] ({seconds:.1f} s)")
        self.bar.advance(self.task)

    def end(self) -> None:
        self.bar.stop()


def run_command(
    config: Path = typer.Argument(..., help="TOML config, or a pyproject.toml with a \\[tool.segexport] table."),
    out: Path = typer.Option(Path("segexport-out"), "--out", "-o", help="Output folder (artefacts, manifest.json, report.md, junit.xml, SHA256SUMS)."),
    cache_dir: Path = typer.Option(Path(".segexport-cache"), "--cache-dir", help="Content-addressed step cache (keep it between CI runs)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run every step; read and write no cache."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: run the I-th of N deterministic slices of models x variants (CI matrix)."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="A previous manifest.json (the release): fail on accuracy or latency regressions against it."),
    only: Optional[str] = typer.Option(None, "--only", help="Run one model (NAME) or one variant (NAME:PRECISION)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the whole plan, every step 'cached' or 'would run (why)', and run or write nothing."),
    trust_model_code: bool = typer.Option(False, "--trust-model-code", help="Let the config's module:factory / file.py:factory models be imported and run (off: a config naming code is refused; zoo names need nothing)."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Run N models at once in separate processes (cores shared among them): every step but bench; bench, the timed step, then runs alone, one variant at a time, so it never measures other work."),
) -> None:
    """Export, lint, calibrate, build engines, check parity and latency for every model x precision of CONFIG.

    Each model x variant runs export -> (calibrate) -> lint -> (engine where TensorRT or TensorRT-RTX is installed) -> parity -> bench (-> deploy). A step whose inputs (weights, its config section, tool versions, the upstream artefact's SHA-256) are unchanged comes from --cache-dir. Every step runs and is reported even after a failure. Exit 0 when all pass, 1 when a check or gate failed, 2 for a bad config.

    Config (TOML; every key of \\[defaults] can be set per model):
    {config}
    Examples:

      segexport pipeline run segexport.toml --out dist

      segexport pipeline run segexport.toml --dry-run

      segexport pipeline run pyproject.toml --shard 1/4 --out shard-1 --baseline release/manifest.json

      segexport pipeline merge shard-* --out dist
    """
    from segexport.pipeline import run_pipeline, run_plan
    from segexport.pipeline.config import ConfigError
    from segexport.pipeline.plan import parse_shard
    from segexport.pipeline.run import RunOptions

    try:
        if dry_run:
            rows = run_plan(RunOptions(config=config, out=out, cache_dir=None if no_cache else cache_dir,
                                           shard=parse_shard(shard), baseline=baseline, only=only, dry_run=True,
                                           jobs=jobs, trust_model_code=trust_model_code))
        else:
            reporter = _Rich() if console.is_terminal else _Plain()
            # a cancelled CI job (SIGTERM) unwinds like Ctrl-C (segexport.core.interrupts): temp files and
            # half-written cache entries are removed, exit 143
            try:
                result = run_pipeline(config=config, out=out, cache_dir=None if no_cache else cache_dir, shard=shard,
                                      baseline=baseline, only=only, jobs=jobs, reporter=reporter,
                                      trust_model_code=trust_model_code)
            except CheckFailed as exc:
                _summary(exc.result.manifest, out)
                raise
    except ConfigError as exc:
        for line in exc.lines:
            err_console.print(f"[bold red]error:[/] {line}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if dry_run:
        _print_plan(rows)
        return
    _summary(result.manifest, out)


def _print_plan(rows) -> None:
    """The dry run's plan, one line a step: ``UNIT STEP cached`` or ``UNIT STEP would run (why)``."""
    from rich.markup import escape

    for row in rows:
        colour = {"cached": "dim", "skipped": "dim"}.get(row.status, "yellow")
        why = f" ({escape(row.reason)})" if row.reason else ""
        console.print(f"{escape(row.unit):<32} {row.step:<14} [{colour}]{row.status}{why}[/]", soft_wrap=True,
                      highlight=False)
    count = {s: sum(r.status == s for r in rows) for s in ("cached", "would run", "skipped")}
    after = sum(r.reason.startswith("after ") for r in rows)
    console.print(f"{len(rows)} steps: {count['cached']} cached, {count['would run']} would run"
                  + (f", {count['skipped']} skipped" if count["skipped"] else "")
                  + (f" ({after} after an upstream step: keyed by its output, they are taken from the cache "
                     "only if it comes out byte-identical)" if after else "")
                  + "; nothing was run or written", soft_wrap=True, highlight=False)


def merge_command(
    dirs: List[Path] = typer.Argument(..., help="Output folders of `pipeline run --shard I/N`."),
    out: Path = typer.Option(..., "--out", "-o", help="Merged output folder."),
) -> None:
    """Join shard outputs: artefacts, one manifest.json, report.md, junit.xml and SHA256SUMS.

    The merged manifest equals what one full run would have written (except `runs`, which lists
    each shard's run). Exit 1 when a merged check failed, so the merge job can gate a release.

    Examples:

      segexport pipeline merge shard-1 shard-2 shard-3 --out dist
    """
    from segexport.pipeline.manifest import append_step_summary, check_step_summary, merge, passed

    from segexport.core.files import check_name_lengths

    check_step_summary()
    for d in dirs:
        check_name_lengths(d, "shard folder")
        if not (d / "manifest.json").is_file():
            raise UserError(f"{str(d)!r} has no manifest.json: pass the --out folders of `segexport pipeline run`")
    merged = merge(dirs, out)
    append_step_summary(out)
    _summary(merged, out)
    if not passed(merged):
        raise CheckFailed(f"a check or gate failed: see {out / 'report.md'} (and junit.xml)")


def _summary(manifest: dict, out: Path) -> None:
    from segexport.pipeline.manifest import FAILING

    steps = [(e, n, s) for e in manifest["entries"] for n, s in e["steps"].items()]
    bad = [(e, n, s) for e, n, s in steps if s["verdict"] in FAILING]
    for e, n, s in bad:
        console.print(f"[red]✗[/] {e['model']} {e['variant']} {n}: {s['message']}", soft_wrap=True)
    mark = "[red]✗[/]" if bad else "[green]✓[/]"
    console.print(f"{mark} {len(manifest['entries'])} variants, {len(steps)} checks, {len(bad)} failed; wrote "
                  f"{out}/manifest.json, report.md, junit.xml, SHA256SUMS")


run_command.__doc__ = run_command.__doc__.replace("{config}", CONFIG_EXAMPLE.replace("[", "\\["))
pipeline_app.command("run")(run_command)
pipeline_app.command("merge")(merge_command)
