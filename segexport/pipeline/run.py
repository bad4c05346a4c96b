"""Execute a plan: every unit's steps in order, each taken from the cache when its key hits.

A failing check or a step's error is recorded and the run goes on (a unit whose upstream
failed has its later steps recorded as skipped), so one run reports everything; the caller
turns the manifest's verdicts into the exit code. Steps run one at a time here; with ``--jobs N``
the untimed steps of different models first run in N processes into the cache
(:mod:`segexport.pipeline.parallel`), never bench, whose timings would measure the other processes.
Every second of a run is accounted for in its manifest: each step's own time, and the time
outside steps (setup, the parallel phase, the manifest's artefact records).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from segexport._version import __version__
from segexport.core import interrupts
from segexport.core.files import weights_path_record
from segexport.errors import UserError
from segexport.pipeline import steps as S
from segexport.pipeline.cache import LastInputs, StepCache, changed_inputs, hash_path, machine, step_key, versions
from segexport.pipeline.config import PipelineConfig, load_config, section_of
from segexport.pipeline.manifest import SCHEMA, artefact, read_manifest
from segexport.pipeline.plan import Unit, full_plan, plan


class Reporter(Protocol):
    def begin(self, total: int) -> None: ...
    def step(self, unit: str, step: str, status: str, seconds: float) -> None: ...
    def end(self) -> None: ...


class Silent:
    def begin(self, total: int) -> None: ...
    def step(self, unit: str, step: str, status: str, seconds: float) -> None: ...
    def end(self) -> None: ...


@dataclass
class RunOptions:
    config: Path
    out: Path
    cache_dir: Path | None = None
    shard: tuple[int, int] = (1, 1)
    baseline: Path | None = None
    only: str | None = None
    dry_run: bool = False
    jobs: int = 1
    trust_model_code: bool = False  # run (and, to key the cache, locate) the config's module:factory models


@dataclass
class PlanRow:
    """One step of a dry run's plan."""

    unit: str
    step: str
    status: str  # "cached", "would run" or "skipped"
    reason: str = ""  # why it would run or is skipped (empty when cached)


NO_CACHE = "--no-cache: no step is taken from a cache"


def _slot(unit: Unit, step: str) -> str:
    """Whose step it is, for its last-inputs record: the export is the model's, the rest the variant's."""
    return unit.model if step == "export" else unit.label


@dataclass
class _State:
    exports: dict = field(default_factory=dict)  # model name -> (step record, sha or None)
    statuses: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    ran: list = field(default_factory=list)  # (step, key, seconds) of the steps this run executed


def _config_sha(config: PipelineConfig) -> str:
    return hashlib.sha256(json.dumps(config.model_dump(), sort_keys=True, default=str).encode()).hexdigest()


def _check_model_code_trusted(config, opts: RunOptions) -> None:
    """A config is a file, and files are data: one that names code (``model = "nets.py:build"``,
    ``"pkg.nets:build"``) runs it only when the command line says so. Checked before anything,
    the plan included: locating ``pkg.nets`` to hash it imports ``pkg``."""
    from segexport.models.registry import is_zoo_name

    code = [f"models[{i}] {e.model!r}" for i, e in enumerate(config.models) if not is_zoo_name(e.model)]
    if code and not opts.trust_model_code:
        listed = ", ".join(code[:3]) + (f" (+{len(code) - 3} more)" if len(code) > 3 else "")
        raise UserError(f"{opts.config.name} names model code to import and run: {listed}; a config is data and "
                        "runs no code unless the command line says so: pass --trust-model-code if you trust it")


def _check_paths(config: PipelineConfig, base: Path, opts: RunOptions) -> None:
    """Before any step: the cache is a folder; --out neither is, holds nor lies inside anything the
    run reads (the config, --baseline, the data and weights of every model) nor the cache (which
    would ship with the artefacts); every data folder can be hashed (``calib_data = "/"`` is
    refused here, not after a minute of hashing the filesystem)."""
    from segexport.core.files import refuse_nested

    from segexport.core.files import check_name_lengths

    cache = opts.cache_dir
    if cache is not None:
        check_name_lengths(cache, "--cache-dir")
    if cache is not None and (cache.exists() or cache.is_symlink()) and not cache.is_dir():
        raise UserError(f"--cache-dir {str(cache)!r} is not a folder: give a folder (or --no-cache)")
    reads: dict[str, Path | None] = {"the config": opts.config, "the --baseline": opts.baseline,
                                     "the --cache-dir": cache}
    for i, e in enumerate(config.models):
        s = e.settings(config.defaults)
        for key, value in (("weights", e.weights), ("calib_data", s.calib_data), ("calib_labels", s.calib_labels),
                           ("parity_images", s.parity_images), ("parity_labels", s.parity_labels),
                           ("model", e.model.rpartition(":")[0] if ".py:" in e.model else None)):
            if value is not None and value != "synthetic":
                reads[f"models[{i}].{key} {value!r}"] = base / value
    if not opts.dry_run:
        refuse_nested({"--out": opts.out}, reads)
    for label, path in reads.items():
        if label.startswith("models[") and ".model " not in label:
            hash_path(path)  # cached: the steps' keys reuse it


def _model_source(entry, base: Path) -> str | None:
    """SHA-256 of a user model's source file (a zoo model's code is covered by segexport's version)."""
    if ".py:" in entry.model:
        return hash_path(base / entry.model.split(":")[0])
    if ":" in entry.model:
        import importlib.util

        try:
            spec = importlib.util.find_spec(entry.model.split(":")[0])
        except (ImportError, ValueError):
            spec = None
        return hash_path(spec.origin) if spec and spec.origin else None
    return None


def _data_hash(value: str | None, base: Path) -> str | None:
    return value if value in (None, "synthetic") else hash_path(base / value)


def _kind(name: str) -> str:
    for suffix, kind in ((".onnx", "onnx"), (".cache", "trt-cache"), (".engine", "engine"), (".json", "sidecar")):
        if name.endswith(suffix):
            return kind
    return "deploy"


class Runner:
    def __init__(self, opts: RunOptions, reporter: Reporter | None = None, *, untimed_only: bool = False,
                 units: set[int] | None = None) -> None:
        """``untimed_only`` (every step but bench) and ``units`` (plan indices): what a ``--jobs`` worker runs."""
        self._t0 = time.perf_counter()
        self.opts = opts
        self.untimed_only = untimed_only
        self.prefetched: dict[str, float] = {}
        self.config, self.base = load_config(opts.config)
        _check_model_code_trusted(self.config, opts)
        self.units = (plan(self.config, opts.shard, opts.only) if units is None else
                      [u for u in full_plan(self.config) if u.index in units])
        self.total_units = len(full_plan(self.config))
        _check_paths(self.config, self.base, opts)
        self.cache = StepCache(opts.cache_dir)
        self.last = LastInputs(opts.cache_dir)  # the user's cache, never --jobs' private one
        self.reporter = reporter or Silent()
        self.baseline = read_manifest(opts.baseline) if opts.baseline else None
        wants_deploy = sorted({u.model for u in self.units if u.settings.deploy})
        if wants_deploy and not S.deploy_available():
            raise UserError(f"deploy bundles need segexport.deploy, which this install lacks (asked for by "
                            f"{', '.join(wants_deploy)}): remove `deploy` from the config or upgrade segexport")
        self.state = _State()
        from segexport.checks.memo import RunMemo

        self.memo = RunMemo()  # each model built, its reference run and its noise floor measured once a run

    # -- one step -------------------------------------------------------------------------
    def _step(self, unit: Unit, name: str, inputs: dict, fn, record: bool = True, after: str | None = None) -> dict:
        """Run or restore one step; returns its record (verdict, message, figures, key, files).

        ``after``: in a dry run, the upstream step that would run first; this step's key needs
        that step's output, which a dry run never builds, so it is planned as running after it
        (it could still hit the cache if that output comes out byte-identical: never claimed)."""
        key = step_key(name, inputs)
        label = unit.label if record else f"{unit.model} (fp32 source)"
        if self.opts.dry_run and after is not None:
            reason = NO_CACHE if self.cache.root is None else f"after {after}, whose output is not built yet"
            self.state.rows.append(PlanRow(label, name, "would run", reason))
            return {"verdict": "unknown", "key": None, "files": {}}
        start = time.perf_counter()  # the cache look-up (hashing every file of a hit) is the step's time too
        hit = self.cache.get(name, key)
        if hit is not None:
            if not self.opts.dry_run:
                self.cache.restore(hit, self.opts.out / unit.model)
            rec = {**hit["result"], "key": key, "files": hit["files"]}
            status = "ran in parallel" if key in self.prefetched else "cached"
        elif self.opts.dry_run:
            self.state.rows.append(PlanRow(label, name, "would run", self._why(unit, name, key, inputs)))
            return {"verdict": "unknown", "key": key, "files": {}}
        else:
            try:
                outcome = fn()
                # an interrupt a library swallowed (torch turns a Ctrl-C inside a lazy import into an
                # export failure) is still an interrupt: stop, never record or cache the step
                interrupts.raise_if_interrupted()
                rec = {"verdict": outcome.verdict, "message": outcome.message, "figures": outcome.figures}
                files = {n: p for n, p in outcome.files.items()}
                self.cache.put(name, key, rec, files) if outcome.verdict != "skip" or not files else None
                from segexport.core.hashing import sha256_file

                rec = {**rec, "key": key, "files": {n: sha256_file(p) for n, p in files.items()}}
            except UserError as exc:
                interrupts.raise_if_interrupted()
                rec = {"verdict": "error", "message": str(exc), "figures": {}, "key": key, "files": {}}
            except Exception as exc:  # noqa: BLE001 - a library's failure is this step's error; the run goes on
                from segexport.errors import exception_line

                interrupts.raise_if_interrupted()

                rec = {"verdict": "error", "message": f"{name} failed: {exception_line(exc)}", "figures": {}, "key": key,
                       "files": {}}
            status = "ran"
            self.state.ran.append((name, key, round(time.perf_counter() - start, 3)))
        note = self.cache.notes.get(f"{name}/{key[:12]}")
        if self.opts.dry_run:
            self.state.rows.append(PlanRow(label, name, status))
        else:
            self.last.put(name, _slot(unit, name), key, inputs, rec["verdict"])
            seconds = time.perf_counter() - start
            self.state.statuses[f"{label}/{name}"] = {"status": status, "seconds": round(seconds, 3),
                                                      **({"worker_seconds": self.prefetched[key]}
                                                         if status == "ran in parallel" else {}),
                                                      **({"note": note} if note else {})}
            shown = status if rec["verdict"] not in ("fail", "error") else rec["verdict"]
            self.reporter.step(label, name, shown + (f"; {note}" if note else ""), seconds)
        return rec

    def _why(self, unit: Unit, name: str, key: str, inputs: dict) -> str:
        """Why a dry run's step would run: its cache miss explained as far as the cache can."""
        if self.cache.root is None:
            return NO_CACHE
        note = self.cache.notes.get(f"{name}/{key[:12]}")
        if note:  # an entry is there but damaged
            return note
        if not self.cache.root.is_dir():
            return f"no cache entry: --cache-dir {self.cache.root} does not exist yet"
        last = self.last.get(name, _slot(unit, name))
        if last is None:
            return "no cache entry: it never ran with this cache"
        if last["key"] == key:
            return ("no cache entry: its last run was an error, which is never cached" if last.get("verdict") == "error"
                    else "no cache entry: its entry was removed from the cache")
        changed = changed_inputs(name, last, inputs)
        if not changed:
            return "no cache entry for its inputs"
        more = f" (+{len(changed) - 3} more)" if len(changed) > 3 else ""
        return "input changed since its last run: " + ", ".join(changed[:3]) + more

    # -- a unit ---------------------------------------------------------------------------
    def _export(self, unit: Unit) -> dict:
        if unit.model in self.state.exports:
            return self.state.exports[unit.model]
        e, s = unit.entry, unit.settings
        section = {k: v for k, v in section_of(e, self.config.defaults).items()
                   if k in ("model", "width", "num_classes", "input_size", "dynamic", "hw_range", "batch",
                            "batch_range", "model_args", "opset", "target", "unpool")}
        inputs = {"config": section, "weights_sha256": hash_path(self.base / e.weights) if e.weights else None,
                  "model_source_sha256": _model_source(e, self.base),
                  # recorded in the ONNX (relative to the working directory): part of its bytes
                  "weights_path": weights_path_record(self.base / e.weights) if e.weights else None}
        out = self.opts.out / e.name / f"{e.name}.fp32.onnx"
        rec = self._step(unit, "export", inputs, lambda: S.export(e, s, out, self.base), record=unit.owns_export)
        rec["inputs"] = inputs
        self.state.exports[unit.model] = rec
        return rec

    def _unit(self, unit: Unit) -> dict:
        e, s, p = unit.entry, unit.settings, unit.precision
        mdir = self.opts.out / e.name
        if not self.opts.dry_run:
            mdir.mkdir(parents=True, exist_ok=True)
        steps: dict[str, dict] = {}
        files: dict[str, str] = {}
        export = self._export(unit)
        if unit.owns_export:
            steps["export"] = export
            files.update(export["files"])
        fp32 = mdir / f"{e.name}.fp32.onnx"
        upstream = export["files"].get(fp32.name)
        weights = export["inputs"]["weights_sha256"]
        todo = [n for n in unit.steps() if n != "export"]
        # a dry run's step that would run: the later steps keyed by its output run after it
        pending = "export" if export["verdict"] == "unknown" else None

        def skip_rest(reason: str) -> None:
            for n in todo:
                if n not in steps and self.opts.dry_run:
                    self.state.rows.append(PlanRow(unit.label, n, "skipped", reason))
                steps.setdefault(n, {"verdict": "skip", "message": reason, "figures": {}})

        if export["verdict"] not in ("pass", "unknown"):
            skip_rest("the fp32 export did not pass")
            return self._entry(unit, steps, files, export["inputs"], upstream)
        onnx_path = fp32
        if p != "fp32":
            out = mdir / f"{e.name}.{p}.onnx"
            inputs = {"upstream_sha256": upstream, "precision": p, "calib_data": s.calib_data,
                      "calib_data_sha256": _data_hash(s.calib_data, self.base),
                      "calib_labels_sha256": _data_hash(s.calib_labels, self.base),
                      **{k: getattr(s, k) for k in ("calib_count", "calib_method", "max_miou_drop", "max_agreement_drop")}}
            rec = steps["calibrate"] = self._step(unit, "calibrate", inputs,
                                                  lambda: S.calibrate(fp32, out, p, s, self.base), after=pending)
            files.update(rec["files"])
            upstream, onnx_path = rec["files"].get(out.name), out
            if rec["verdict"] == "unknown":
                pending = "calibrate"
            elif rec["verdict"] != "pass":
                skip_rest("calibration did not pass")
                return self._entry(unit, steps, files, export["inputs"], upstream)
        common = {"upstream_sha256": upstream}
        steps["lint"] = self._step(unit, "lint", common, lambda: S.lint(onnx_path), after=pending)
        engine_path, engine_pending = None, None
        if "engine" in todo:
            engine_out = mdir / f"{e.name}.{p}.engine"
            rec = steps["engine"] = self._step(unit, "engine", {**common, "engine": s.engine,
                                                                "targets": s.engine_targets, "target": s.target},
                                               lambda: S.engine(onnx_path, engine_out, s), after=pending)
            files.update(rec["files"])
            engine_path = engine_out if rec["verdict"] == "pass" else None
            engine_pending = "engine" if rec["verdict"] == "unknown" else None
        parity_inputs = {**common, "weights_sha256": weights, "model": e.model,
                         "model_source_sha256": export["inputs"]["model_source_sha256"],
                         "images_sha256": _data_hash(s.parity_images, self.base),
                         "labels_sha256": _data_hash(s.parity_labels, self.base),
                         # without parity_images, parity judges on calib_data's held-out images
                         "calib_data_sha256": None if s.parity_images else _data_hash(s.calib_data, self.base),
                         "calib_count": None if s.parity_images else s.calib_count, "inputs": "held-out-v1",
                         **{k: getattr(s, k) for k in ("parity_count", "parity_backends", "thresholds")}}
        steps["parity"] = self._step(unit, "parity", parity_inputs, lambda: S.parity(onnx_path, e, s, self.base, self.memo),
                                     after=pending)
        if "bench" in todo and not self.untimed_only:  # timed: never beside another process's work
            bench_inputs = {**common, "weights_sha256": weights, "machine": machine(),
                            **{k: getattr(s, k) for k in ("bench_backends", "bench_batches", "bench_iterations",
                                                          "bench_warmup", "bench_trials", "bench_threads", "bench_budget_s")}}
            steps["bench"] = self._step(unit, "bench", bench_inputs, lambda: S.bench(onnx_path, e, s, self.base, self.memo),
                                        after=pending)
        if "deploy" in todo:
            rec = steps["deploy"] = self._step(
                unit, "deploy", {**common, "engine_sha256": files.get(f"{e.name}.{p}.engine"), "deploy": s.deploy,
                       "max_agreement_drop": s.max_agreement_drop, "max_miou_drop": s.max_miou_drop},
                lambda: S.deploy(onnx_path, engine_path, list(s.deploy), mdir, s), after=pending or engine_pending)
            files.update(rec["files"])
        return self._entry(unit, steps, files, export["inputs"], upstream)

    def _entry(self, unit: Unit, steps: dict, files: dict, inputs: dict, upstream: str | None) -> dict:
        e = unit.entry
        section = section_of(e, self.config.defaults)
        return {"model": e.name, "variant": unit.precision, "index": unit.index,
                "inputs": {"config_sha256": hashlib.sha256(json.dumps(section, sort_keys=True, default=str).encode())
                           .hexdigest(), "weights_sha256": inputs.get("weights_sha256"),
                           "model_source_sha256": inputs.get("model_source_sha256"), "onnx_sha256": upstream,
                           "versions": {k: v for s in ("export", "calibrate", "engine") for k, v in versions(s).items()}},
                "steps": {n: {k: r.get(k) for k in ("verdict", "message", "figures", "key")} for n, r in steps.items()},
                "_files": files}

    # -- the run --------------------------------------------------------------------------
    def run_untimed(self) -> None:
        """A ``--jobs`` worker's share: every step but the timed bench, into the cache."""
        for unit in self.units:
            self._unit(unit)

    def _parallel_phase(self) -> float:
        """``--jobs N``: the models' untimed steps side by side first; returns its seconds."""
        if self.opts.jobs < 2 or self.opts.dry_run:
            return 0.0
        import shutil
        import tempfile

        from segexport.pipeline.parallel import prefetch

        started = time.perf_counter()
        private = None
        if self.cache.root is None:  # --no-cache: a private cache for this run only
            private = Path(tempfile.mkdtemp(prefix="segexport-jobs-cache-"))
            self.cache = StepCache(private)
            self._private_cache = private
        pending = self._models_to_run() if private is None else {u.model for u in self.units}
        self.prefetched = prefetch([u for u in self.units if u.model in pending], prefetch_worker,
                                   config=self.opts.config, cache_dir=self.cache.root, jobs=self.opts.jobs,
                                   trust_model_code=self.opts.trust_model_code)
        if private is not None:
            self._cleanup = lambda: shutil.rmtree(private, ignore_errors=True)
        return time.perf_counter() - started

    def _models_to_run(self) -> set[str]:
        """Models with an untimed step the cache lacks, from a dry run of this run's units: a
        rerun whose steps are all cached spawns no worker (each costs seconds of imports)."""
        from dataclasses import replace

        probe = Runner(replace(self.opts, dry_run=True, jobs=1), untimed_only=True,
                       units={u.index for u in self.units})
        for unit in probe.units:
            probe._unit(unit)
        todo = {row.unit for row in probe.state.rows if row.status == "would run"}
        return {u.model for u in probe.units if u.label in todo or f"{u.model} (fp32 source)" in todo}

    def run(self) -> dict | list[PlanRow]:
        started = self._t0
        setup_s = time.perf_counter() - started
        self._cleanup = lambda: None
        try:
            parallel_s = self._parallel_phase()
            return self._serial(started, setup_s, parallel_s)
        finally:
            self._cleanup()

    def _serial(self, started: float, setup_s: float, parallel_s: float) -> dict | list[PlanRow]:
        self.reporter.begin(sum(len(u.steps()) for u in self.units))
        entries = []
        try:
            for unit in self.units:
                entry = self._unit(unit)
                if self.baseline is not None and not self.opts.dry_run:
                    self._gates(unit, entry)
                elif self.baseline is not None:  # gates are no cached step: judged afresh every run
                    gates = ["gate-accuracy"] + (["gate-latency"] if "bench" in unit.steps() else [])
                    self.state.rows += [PlanRow(unit.label, g, "would run", "judged against --baseline on every run")
                                        for g in gates]
                entries.append(entry)
        finally:
            self.reporter.end()
        if self.opts.dry_run:
            return self.state.rows
        records_started = time.perf_counter()
        for entry in entries:
            mdir = self.opts.out / entry["model"]
            arts = []
            for name in sorted(entry.pop("_files")):
                path = mdir / name
                meta = {}
                if name.endswith(".onnx"):
                    from segexport.exporter.metadata import read_record

                    meta = asdict(read_record(path))
                arts.append({"model": entry["model"], "variant": entry["variant"],
                             **artefact(self.opts.out, path, _kind(name), meta)})
            entry["artefacts"] = arts
        records_s = time.perf_counter() - records_started
        wall = time.perf_counter() - started
        steps_s = sum(v["seconds"] for v in self.state.statuses.values())
        accounting = {"setup_s": round(setup_s, 3), "parallel_s": round(parallel_s, 3), "steps_s": round(steps_s, 3),
                      "artefact_records_s": round(records_s, 3),
                      "outside_steps_s": round(max(0.0, wall - steps_s - parallel_s), 3), "jobs": self.opts.jobs}
        return {"schema": SCHEMA, "segexport": __version__, "config_sha256": _config_sha(self.config),
                "units": self.total_units, "only": self.opts.only,
                "baseline": hash_path(self.opts.baseline) if self.opts.baseline else None,
                "entries": entries,
                "runs": [{"shard": f"{self.opts.shard[0]}/{self.opts.shard[1]}", "wall_s": round(wall, 3),
                          "accounting": accounting,
                          "cache": None if self.opts.cache_dir is None else "on", "steps": self.state.statuses,
                          "machine": machine()}]}

    # -- gates against the release --------------------------------------------------------
    def _gates(self, unit: Unit, entry: dict) -> None:
        from segexport.pipeline.gates import accuracy_gate, latency_gate

        base = next((b for b in self.baseline["entries"]
                     if b["model"] == entry["model"] and b["variant"] == entry["variant"]), None)
        entry["steps"]["gate-accuracy"] = accuracy_gate(entry, base, unit.settings, self.opts.out)
        if "bench" in entry["steps"]:
            entry["steps"]["gate-latency"] = latency_gate(entry, base, unit.settings, self.opts.out)


def prefetch_worker(task) -> list[tuple[str, str, float]]:
    """A ``--jobs`` worker (segexport.pipeline.parallel): one model's untimed steps (export,
    calibrations, lint, engine, parity, deploy) into the cache, in a throw-away --out; (step, key, seconds) of what ran. A failure is not the run's:
    the serial pass repeats the step and reports what happens."""
    import shutil
    import tempfile

    import torch

    torch.set_num_threads(task.threads)
    out = Path(tempfile.mkdtemp(prefix="segexport-job-"))
    try:
        runner = Runner(RunOptions(config=Path(task.config), out=out, cache_dir=Path(task.cache_dir),
                                   trust_model_code=task.trust_model_code), untimed_only=True, units=set(task.units))
        runner.run_untimed()
        return list(runner.state.ran)
    except KeyboardInterrupt:
        raise
    except Exception:  # noqa: BLE001 - the serial run repeats the step and reports its failure
        return []
    finally:
        shutil.rmtree(out, ignore_errors=True)

