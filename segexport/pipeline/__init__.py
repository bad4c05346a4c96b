"""``segexport pipeline``: the CI export pipeline as one command, one config, one report.

config (schema) -> plan (models x variants, shards) -> run (steps, content-addressed cache)
-> manifest (manifest.json, report.md, junit.xml, SHA256SUMS; merge of shards). The steps
are called from :mod:`segexport.pipeline.steps` only.
"""

from __future__ import annotations


def run_pipeline(opts, reporter=None):
    """Run (or with ``opts.dry_run`` plan) a pipeline; returns the manifest (or the plan rows)."""
    from segexport.pipeline.run import Runner

    return Runner(opts, reporter).run()
