"""The three-model pipeline of docs/pipeline.md at small width: first run, cached rerun, one changed model.

    python benchmarks/bench_pipeline.py                     # width 1/16, 64 px: a few minutes on 2 cores
    python benchmarks/bench_pipeline.py --zoo --jobs 2      # every zoo model, width 1/4, 256 px, fp32/fp16/int8

With ``--zoo`` the config is the whole zoo (``segexport models``) at ``--width``/``--size`` (default
0.25, 256x256) with fp32, fp16 and int8 and the pipeline's default bench settings; each run records
the manifest's time accounting (steps, parallel phase, outside steps) and the seconds per step kind,
and the JSON gets a cost model: mean seconds per model x variant for each step kind.

Takes the ```toml config of docs/pipeline.md ("The config") as written, narrows every model
(``--width``, ``--size``: the figures are about the pipeline, not the networks), and times
`segexport pipeline run` as a user runs it (a subprocess, wall clock):
  1. first run, empty cache;
  2. the same config again (every step should come from the cache);
  3. one model changed (its num_classes): only its steps should run.
Step statuses come from each run's manifest (``runs[0].steps``). Writes
benchmarks/results/pipeline_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_config() -> str:
    text = (ROOT / "docs" / "pipeline.md").read_text()
    section = text[text.index("## The config"):]
    return re.search(r"```toml\n(.+?)\n```", section, re.S).group(1)


def _toml(doc: dict) -> str:
    def value(v):
        return json.dumps(v)  # TOML strings, numbers, booleans and arrays of them read the same

    lines = ["[defaults]"] + [f"{k} = {value(v)}" for k, v in doc["defaults"].items()]
    for m in doc["models"]:
        lines += ["", "[[models]]"] + [f"{k} = {value(v)}" for k, v in m.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=float, default=0.0625)
    p.add_argument("--size", default="64x64")
    p.add_argument("--out", default=None)
    p.add_argument("--zoo", action="store_true", help="every zoo model, fp32/fp16/int8, default bench settings")
    p.add_argument("--jobs", type=int, default=1)
    args = p.parse_args(argv)
    if args.zoo:
        from segexport.models.registry import list_models

        width = 0.25 if args.width == 0.0625 else args.width
        size = "256x256" if args.size == "64x64" else args.size
        doc = {"defaults": {"precisions": ["fp32", "fp16", "int8"]},
               "models": [{"name": m.name, "model": m.name, "width": width, "input_size": size} for m in list_models()]}
        args.width, args.size = width, size
    else:
        doc = tomllib.loads(readme_config())
        doc["defaults"].update(calib_count=8, bench_iterations=10, bench_trials=3)
        for m in doc["models"]:
            m.update(width=args.width, input_size=args.size)
    args.out = args.out or str(ROOT / "benchmarks" / "results" / ("pipeline_zoo_cpu.json" if args.zoo else "pipeline_cpu.json"))
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    config = work / "segexport.toml"
    runs = []

    def run(label: str) -> None:
        out = work / f"out-{len(runs)}"
        load_before = round(os.getloadavg()[0], 2)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "segexport", "pipeline", "run", str(config), "--out", str(out),
                               "--cache-dir", str(work / "cache"), "--jobs", str(args.jobs)], capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode not in (0, 1):
            print(proc.stdout, proc.stderr)
            raise SystemExit(f"{label}: exit {proc.returncode}")
        manifest = json.loads((out / "manifest.json").read_text())
        statuses = manifest["runs"][0]["steps"]
        ran = sorted(k for k, v in statuses.items() if v["status"] == "ran")
        by_kind: dict[str, float] = {}
        by_unit: dict[str, dict[str, float]] = {}  # model -> variant -> seconds of its steps
        for k, v in statuses.items():
            unit, kind = k.rsplit("/", 1)
            seconds = v.get("worker_seconds", v["seconds"])
            by_kind[kind] = round(by_kind.get(kind, 0.0) + seconds, 2)
            model, _, variant = unit.partition(" ")
            variant = "fp32" if variant.startswith("(") else variant  # "(fp32 source)": the shared export
            row = by_unit.setdefault(model, {})
            row[variant] = round(row.get(variant, 0.0) + seconds, 2)
        runs.append({"run": label, "wall_s": round(wall, 2), "exit_code": proc.returncode, "steps": len(statuses),
                     "loadavg_1min_before": load_before, "seconds_by_model_variant": by_unit,
                     "accounting": manifest["runs"][0].get("accounting"), "seconds_by_step": by_kind,
                     "variants": len(manifest["entries"]),
                     "ran": len(ran), "cached": len(statuses) - len(ran),
                     "models_that_ran": sorted({k.split()[0] for k in ran}),
                     "verdicts": {f"{e['model']} {e['variant']}": {n: s["verdict"] for n, s in e["steps"].items()}
                                  for e in manifest["entries"]}})
        r = runs[-1]
        print(f"{label:<28} {r['wall_s']:8.1f} s   {r['ran']:3d} steps ran, {r['cached']:3d} cached   "
              f"(models run: {', '.join(r['models_that_ran']) or '-'})", flush=True)

    config.write_text(_toml(doc))
    run("first run (empty cache)")
    run("unchanged rerun")
    doc["models"][1]["num_classes"] = doc["models"][1].get("num_classes", 21) + 1
    config.write_text(_toml(doc))
    run(f"{doc['models'][1]['name']} changed")
    first = runs[0]
    cost_model = {kind: round(secs / max(1, first["variants"]), 2) for kind, secs in first["seconds_by_step"].items()}
    # what one more model x variant costs a cold run: its steps' seconds (worker seconds where it ran in parallel)
    result = {"command": "python benchmarks/" + Path(__file__).name + " " + " ".join(argv or sys.argv[1:]),
              "width": args.width, "input_size": args.size, "config": doc,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
              "runs": runs, "cost_model_s_per_model_variant": cost_model,
              "cost_s_by_model_variant": first["seconds_by_model_variant"]}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    variants = sorted({v for row in first["seconds_by_model_variant"].values() for v in row})
    print(f"\ncold run, seconds per model x variant (steps' own seconds; a parallel step counts its worker's):")
    print(f"{'model':<16}" + "".join(f"{v:>10}" for v in variants) + f"{'total':>10}")
    for model, row in first["seconds_by_model_variant"].items():
        print(f"{model:<16}" + "".join(f"{row.get(v, 0.0):10.1f}" for v in variants) + f"{sum(row.values()):10.1f}")
    for r in runs:
        acc = r["accounting"] or {}
        outside = acc.get("outside_steps_s", 0.0)
        print(f"{r['run']:<28} wall {r['wall_s']:7.1f} s  outside steps {outside:6.1f} s "
              f"({100 * outside / max(r['wall_s'], 1e-9):4.1f} %)  parallel phase {acc.get('parallel_s', 0.0):6.1f} s")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
