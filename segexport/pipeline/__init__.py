"""``segexport pipeline``: the CI export pipeline as one command, one config, one report.

config (schema) -> plan (models x variants, shards) -> run (steps, content-addressed cache)
-> manifest (manifest.json, report.md, junit.xml, SHA256SUMS; merge of shards). The steps
are called from :mod:`segexport.pipeline.steps` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segexport.core.arguments import checked
from segexport.errors import CheckFailed, UserError


def run_plan(opts, reporter=None):
    """Run (or with ``opts.dry_run`` plan) a pipeline from its ``RunOptions``; returns the manifest
    (or the plan rows)."""
    from segexport.pipeline.run import Runner

    return Runner(opts, reporter).run()


@dataclass
class PipelineResult:
    out: Path  # manifest.json, report.md, junit.xml, SHA256SUMS and the artefacts
    manifest: dict[str, Any]
    passed: bool


@checked
def run_pipeline(*, config: str | Path, out: str | Path = "segexport-out", cache_dir: str | Path | None = ".segexport-cache",
             shard: str | None = None, baseline: str | Path | None = None, only: str | None = None, jobs: int = 1,
             reporter: Any = None, trust_model_code: bool = False) -> PipelineResult:
    """Every model x precision of a pipeline config, exported, checked and written with its manifest
    (``segexport pipeline run``; ``cache_dir=None`` is ``--no-cache``). CheckFailed, after every step
    ran and the reports were written, when a check or gate failed. A config naming module:factory
    models needs ``trust_model_code=True``: the config is a file, and no file names code that runs."""
    from segexport.pipeline.manifest import append_step_summary, passed, write_outputs
    from segexport.pipeline.plan import parse_shard
    from segexport.pipeline.run import RunOptions, Runner

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UserError("--jobs must be an integer >= 1")
    out = Path(out)
    if baseline is not None and not Path(baseline).is_file():
        raise UserError(f"--baseline {str(baseline)!r} not found: pass the manifest.json of a previous run")
    from segexport.core.files import commit_folder, staged_folder
    from segexport.pipeline.manifest import check_output_folder, check_step_summary

    check_output_folder(out)
    check_step_summary()
    opts = RunOptions(config=Path(config), out=out, cache_dir=None if cache_dir is None else Path(cache_dir), shard=parse_shard(shard),
                      baseline=None if baseline is None else Path(baseline), only=only, dry_run=False, jobs=jobs,
                      trust_model_code=trust_model_code)
    runner = Runner(opts, reporter)  # a refused config leaves no --out (nor a staging folder) behind
    # Staged beside --out and swapped in at the end: a cancelled or killed run leaves --out as it
    # was (absent, or the last complete output), so a retried CI job runs into it again, and the
    # steps that finished come from the cache.
    with staged_folder(out) as stage:
        runner.opts.out = stage
        manifest = runner.run()
        write_outputs(stage, manifest)
        commit_folder(stage, out)
    append_step_summary(out)
    result = PipelineResult(out=out, manifest=manifest, passed=passed(manifest))
    if not result.passed:
        raise CheckFailed(f"a check or gate failed: see {out / 'report.md'} (and junit.xml)", result=result)
    return result

