"""``pipeline run --jobs N``: the untimed steps of different models in parallel processes.

What runs in parallel: every step of a model but bench -- export, calibrations, lint, engine,
parity and deploy (torch tracing, ONNX Runtime calibration, the PyTorch reference), the bulk of a
cold run -- in ``N`` worker processes, one model per task (so a worker's run memo shares the
model's PyTorch reference between its variants), each into the step cache. What never does: the
timed step (bench, and the gates that read its figures) -- latency trials beside another process's
work would time that work too -- and the report. After the
parallel phase the ordinary serial run takes those steps from the cache (recorded as "ran in
parallel", with the worker's seconds), so a manifest is the same with or without ``--jobs``.

Why processes and a cache, not threads: torch and ONNX Runtime hold the GIL-free cores with their
own thread pools; separate processes with ``cores / N`` threads each share the machine without
oversubscribing it, and the cache is already the one place a step's result is kept, atomically
(an entry is a renamed folder), so two workers never see half of one.

A worker that fails is not an error of the run: the serial run then executes that step itself and
records what happens, as it always has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PREFETCHED_STEPS = ("export", "calibrate", "lint", "engine", "parity", "deploy")  # all but bench


@dataclass(frozen=True)
class Task:
    config: str
    cache_dir: str
    units: tuple[int, ...]  # indices into the full plan
    trust_model_code: bool
    threads: int


def _init_worker(threads: int) -> None:
    """Each worker gets its share of the cores (set before torch or ONNX Runtime start their pools)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    from segexport.core import interrupts

    interrupts.install()


def prefetch(units, work, *, config: Path, cache_dir: Path, jobs: int, trust_model_code: bool) -> dict[str, float]:
    """Run the untimed steps of ``units`` (grouped by model) in ``jobs`` processes, each
    task by ``work(task) -> [(step, key, seconds)]`` (a module-level function of the runner, so a
    spawned process can import it and this module imports no runner); returns {step key: seconds}
    of the steps the workers ran."""
    import multiprocessing

    by_model: dict[str, list[int]] = {}
    for u in units:
        by_model.setdefault(u.model, []).append(u.index)
    if len(by_model) < 2:
        return {}  # one model: nothing to run side by side
    workers = min(jobs, len(by_model))
    threads = max(1, (os.cpu_count() or 1) // workers)
    tasks = [Task(str(config), str(cache_dir), tuple(ix), trust_model_code, threads) for ix in by_model.values()]
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no fork of torch's thread pools
    pool = ctx.Pool(workers, initializer=_init_worker, initargs=(threads,))
    ran: dict[str, float] = {}
    try:
        for done in pool.imap_unordered(work, tasks):
            for _step, key, seconds in done:
                ran[key] = seconds
        pool.close()
    except BaseException:
        pool.terminate()  # Ctrl-C / SIGTERM: no worker outlives the run
        raise
    finally:
        pool.join()
    return ran
