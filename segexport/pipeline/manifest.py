"""The pipeline's outputs: ``manifest.json`` (the source of truth), and three views of it,
``report.md``, ``junit.xml`` and ``SHA256SUMS``, plus the merge of shard outputs.

The views are pure functions of the manifest, so a merge rebuilds them from the merged
manifest and they match a single full run's. What only describes *this* run (wall time,
which steps came from the cache, the shard) lives under ``runs``, the one key that differs
between a full run and merged shards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from segexport.core import jsonio
from segexport.core.files import atomic_output
from segexport.core.hashing import sha256_file
from segexport.core.jsonio import finite_or_none
from segexport.errors import UserError

SCHEMA = 1
FAILING = ("fail", "error")


def artefact(root: Path, path: Path, kind: str, metadata: dict | None = None) -> dict:
    return {"kind": kind, "path": path.relative_to(root).as_posix(), "sha256": sha256_file(path),
            "bytes": path.stat().st_size, "metadata": metadata or {}}


def passed(manifest: dict) -> bool:
    return not any(s["verdict"] in FAILING for e in manifest["entries"] for s in e["steps"].values())


def write_outputs(root: Path, manifest: dict) -> None:
    """manifest.json, report.md, junit.xml and SHA256SUMS in ``root``, each written atomically."""
    manifest = finite_or_none(manifest)
    manifest["entries"].sort(key=lambda e: e["index"])
    with atomic_output(root / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")  # steps stay in run order
    with atomic_output(root / "report.md") as tmp:
        tmp.write_text(report_markdown(manifest))
    with atomic_output(root / "junit.xml") as tmp:
        tmp.write_text(junit_xml(manifest))
    with atomic_output(root / "SHA256SUMS") as tmp:
        tmp.write_text("".join(f"{a['sha256']}  {a['path']}\n"
                               for a in sorted((a for e in manifest["entries"] for a in e["artefacts"]),
                                               key=lambda a: a["path"])))


def read_manifest(path: Path) -> dict:
    try:
        doc = jsonio.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as exc:
        detail = " ".join(str(exc).split())[:120] if not isinstance(exc, RecursionError) else "nested too deeply"
        raise UserError(f"{path}: not a readable manifest.json ({detail}): pass a `segexport pipeline run` output") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("entries"), list):
        raise UserError(f"{path}: not a segexport pipeline manifest of schema {SCHEMA} "
                        "(re-run `segexport pipeline run` with this segexport)")
    for i, e in enumerate(doc["entries"]):  # a file is data: check its shape before anything reads it
        try:
            _check_entry(e)
        except ValueError as exc:
            raise UserError(f"{path}: entries[{i}] is damaged ({str(exc)[:160]}): "
                            "pass a manifest.json written by `segexport pipeline run`") from None
    runs = doc.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(r, dict) and isinstance(r.get("shard"), str)
                                             and _SHARD_RE.fullmatch(r["shard"]) for r in runs):
        raise UserError(f"{path}: runs is damaged (a list of runs, each with a shard I/N): "
                        "pass a manifest.json written by `segexport pipeline run`")
    for key in ("config_sha256", "segexport", "baseline", "only"):
        if doc.get(key) is not None and not isinstance(doc.get(key), str):
            raise UserError(f"{path}: {key} is not a string: pass a manifest.json written by `segexport pipeline run`")
    if isinstance(doc.get("units"), bool) or not isinstance(doc.get("units", 0), int):
        raise UserError(f"{path}: units is not an integer: pass a manifest.json written by `segexport pipeline run`")
    return doc


_SHARD_RE = re.compile(r"[1-9][0-9]{0,8}/[1-9][0-9]{0,8}")


def _check_entry(e: object) -> None:
    """One manifest entry: its keys typed, every step record validated (``records``), every
    artefact a relative path with a SHA-256 and a metadata table. Raises ValueError."""
    from segexport.pipeline.config import _NAME_RE, MAX_NAME
    from segexport.pipeline.records import check_step

    if not isinstance(e, dict):
        raise ValueError("not an object")
    if not isinstance(e.get("model"), str) or not _NAME_RE.fullmatch(e["model"]) or len(e["model"]) > MAX_NAME:
        raise ValueError("model is not a model name")
    if e.get("variant") not in ("fp32", "fp16", "int8", "best"):
        raise ValueError("variant is not a precision")
    if isinstance(e.get("index"), bool) or not isinstance(e.get("index"), int) or not 0 <= e["index"] < 10**9:
        raise ValueError("index is not an integer")
    if not isinstance(e.get("steps"), dict):
        raise ValueError("steps is not a table")
    for name, step in e["steps"].items():
        check_step(name, step)
    if not isinstance(e.get("artefacts"), list):
        raise ValueError("artefacts is not a list")
    for a in e["artefacts"]:
        if not (isinstance(a, dict) and isinstance(a.get("path"), str) and isinstance(a.get("sha256"), str)
                and isinstance(a.get("metadata", {}), dict) and isinstance(a.get("bytes", 0), int)):
            raise ValueError("an artefact lacks its path, sha256, bytes or metadata")
        if not a["path"] or Path(a["path"]).is_absolute() or ".." in Path(a["path"]).parts or "\\" in a["path"]:
            raise ValueError(f"artefact path {a['path'][:60]!r} leaves the folder")


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def _bench_cells(entry: dict) -> tuple[str, str, str]:
    bench = entry["steps"].get("bench", {}).get("figures", {})
    for batch, per in (bench.get("batches") or {}).items():
        for backend, fig in per.items():
            if not backend.startswith("torch"):
                speed = fig.get("speedup_vs_torch")
                noise = fig.get("noise")
                return (f"{fig['p50_ms']:.2f} ms ({backend} b{batch})", "-" if speed is None else f"{speed:.2f}x",
                        "-" if noise is None else f"{100 * noise:.0f} %")
    return "-", "-", "-"


def _release_cell(entry: dict) -> str:
    """Change against the --baseline release: label agreement (pt), mIoU (pt), fastest iteration."""
    parts = []
    acc = entry["steps"].get("gate-accuracy", {})
    if acc.get("verdict") == "skip":
        return "not compared"
    fig = acc.get("figures") or {}
    if fig.get("agreement_change_pt") is not None:
        parts.append(f"agreement {fig['agreement_change_pt']:+.2f} pt")
    if fig.get("miou_change_pt") is not None:
        parts.append(f"mIoU {fig['miou_change_pt']:+.2f} pt")
    for name, lat in ((entry["steps"].get("gate-latency") or {}).get("figures") or {}).items():
        parts.append(f"{name} {lat['change_best']:+.1%}")
    return ", ".join(parts) or "-"


def _calibration_cell(entry: dict) -> str:
    """The reduced variant against its fp32 ONNX, as calibrate's gate judged it: label agreement on
    the confident pixels and ΔmIoU (with labels), or "not judged" when the reference has none."""
    fig = (entry["steps"].get("calibrate") or {}).get("figures") or {}
    gate = fig.get("gate")
    if not isinstance(gate, dict):
        return "-"
    if not gate.get("judged"):
        agree = fig.get("pixel_agreement")
        return "not judged (no confident pixels" + (f"; {_pct(agree)} of all" if isinstance(agree, (int, float)) else "") + ")"
    parts = [f"{_pct(gate.get('confident_agreement'))} of confident pixels"]
    drop = fig.get("miou_drop")
    if isinstance(drop, (int, float)):
        parts.append(f"ΔmIoU {-drop:+.2f}")
    return ", ".join(parts)


def report_markdown(manifest: dict) -> str:
    """One table across all models, then every failure with its message."""
    release = any("gate-accuracy" in e["steps"] for e in manifest["entries"])
    lines = ["# segexport pipeline", "",
             "| model | variant | reduced vs fp32 | agreement vs PyTorch | ΔmIoU (pt) | p50 | speedup vs PyTorch | "
             "machine noise | size | " + ("vs release | " if release else "") + "verdict |",
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if release else "") + "---|"]
    failures = []
    for e in manifest["entries"]:
        parity = e["steps"].get("parity", {}).get("figures", {})
        drop = parity.get("miou_drop")
        p50, speed, noise = _bench_cells(e)
        onnx = next((a for a in e["artefacts"] if a["path"].endswith(f".{e['variant']}.onnx")), None)
        size = "-" if onnx is None else f"{onnx['bytes'] / 1e6:.2f} MB"
        bad = [(n, s) for n, s in e["steps"].items() if s["verdict"] in FAILING]
        verdict = "**FAIL** " + ", ".join(n for n, _ in bad) if bad else "pass"
        lines.append(f"| {e['model']} | {e['variant']} | {_calibration_cell(e)} | {_pct(parity.get('pixel_agreement'))} | "
                     f"{'-' if drop is None else f'{-drop:+.2f}'} | {p50} | {speed} | {noise} | {size} | "
                     + (f"{_release_cell(e)} | " if release else "") + f"{verdict} |")
        failures += [f"- `{e['model']} {e['variant']} {n}`: {s['message']}" for n, s in bad]
    stops: dict[str, int] = {}
    budgets = set()
    for e in manifest["entries"]:
        for per in (((e["steps"].get("bench") or {}).get("figures") or {}).get("batches") or {}).values():
            fig = next(iter(per.values()), {}) if isinstance(per, dict) and per else {}
            if isinstance(fig, dict) and isinstance(fig.get("stopped"), str):
                stops[fig["stopped"]] = stops.get(fig["stopped"], 0) + 1
                budgets.add(fig.get("budget_s"))
    if stops:
        lines += ["", "Bench: a time budget of " + ", ".join(f"{b:g}" for b in sorted(x for x in budgets if isinstance(x, (int, float))))
                  + " s of measured inference per variant and batch, iterations cut to fit it; trials stopped "
                  + ", ".join(f"{k} ({n})" for k, n in sorted(stops.items()))
                  + " (settled: the fastest iteration moved <= 1 % in the last trial)."]
    judged_on = sorted({str(e["steps"]["parity"]["figures"]["inputs"]) for e in manifest["entries"]
                        if ((e["steps"].get("parity") or {}).get("figures") or {}).get("inputs")})
    if judged_on:
        lines += ["", "Parity judged on: " + "; ".join(judged_on) + "."]
    skipped = sorted({f"{n}: {s['message']}" for e in manifest["entries"] for n, s in e["steps"].items()
                      if s["verdict"] == "skip" and s["message"]})
    if failures:
        lines += ["", "## Failures", "", *failures]
    if skipped:
        lines += ["", "## Skipped", "", *(f"- {s}" for s in skipped)]
    threads = sorted({str(e["steps"]["bench"]["figures"].get("cpu_threads")) for e in manifest["entries"]
                      if (e["steps"].get("bench") or {}).get("figures", {}).get("cpu_threads") is not None})
    for run in manifest.get("runs") or []:
        acc = run.get("accounting") if isinstance(run, dict) else None
        if isinstance(acc, dict) and all(isinstance(acc.get(k), (int, float)) for k in ("steps_s", "outside_steps_s")):
            lines += ["", f"Time (shard {run.get('shard', '1/1')}): {run.get('wall_s', 0):.1f} s wall = steps "
                      f"{acc['steps_s']:.1f} s + parallel exports/calibrations {acc.get('parallel_s', 0):.1f} s "
                      f"(--jobs {acc.get('jobs', 1)}) + outside steps {acc['outside_steps_s']:.1f} s (setup "
                      f"{acc.get('setup_s', 0):.1f} s, artefact records {acc.get('artefact_records_s', 0):.1f} s, "
                      "the rest input hashing between steps)."]
    lines += ["", f"segexport {manifest['segexport']}, manifest schema {manifest['schema']}; machine noise is the "
              "spread (max/min - 1) of the trial medians of the timed backend"
              + (f"; CPU backends timed with {', '.join(threads)} thread(s)" if threads else "") + "."]
    return "\n".join(lines) + "\n"


_NOT_XML = __import__("re").compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text) -> str:
    """A message as XML 1.0 can hold it: a hostile shard's control characters (an ANSI escape, a
    NUL) would make junit.xml unreadable to every CI system, so they are shown as ``?``."""
    return _NOT_XML.sub("?", str(text))


def junit_xml(manifest: dict) -> str:
    """One testcase per model x variant x step, gates included."""
    cases = [(e, n, s) for e in manifest["entries"] for n, s in e["steps"].items()]
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name="segexport pipeline", tests=str(len(cases)),
                          failures=str(sum(s["verdict"] == "fail" for _, _, s in cases)),
                          errors=str(sum(s["verdict"] == "error" for _, _, s in cases)),
                          skipped=str(sum(s["verdict"] == "skip" for _, _, s in cases)))
    for e, name, s in cases:
        case = ET.SubElement(suite, "testcase", classname=_xml_text(f"{e['model']}.{e['variant']}"), name=_xml_text(name))
        if s["verdict"] in FAILING:
            ET.SubElement(case, "failure" if s["verdict"] == "fail" else "error", message=_xml_text(s["message"]),
                          type=s["verdict"]).text = _xml_text(s["message"])
        elif s["verdict"] == "skip":
            ET.SubElement(case, "skipped", message=_xml_text(s["message"]))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def check_output_folder(out: Path, flag: str = "--out") -> None:
    """The pipeline writes manifest.json, report.md, junit.xml and SHA256SUMS into ``out``: it may
    be new, empty, or a previous pipeline output (one with a segexport manifest), never a folder
    of other files (``--out .`` in a project would replace its own report.md or junit.xml)."""
    from segexport.core.files import check_name_lengths

    check_name_lengths(out, flag)
    if out.is_symlink():
        raise UserError(f"{flag} {str(out)!r} is a symlink: give a real folder (the output replaces it whole)")
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"{flag} {str(out)!r} is a file: give a folder")
    present = sorted(p.name for p in out.iterdir())
    if not present:
        return
    try:
        read_manifest(out / "manifest.json")  # an earlier pipeline output: written again
        return
    except UserError:
        pass
    listed = ", ".join(present[:4]) + (f" (+{len(present) - 4} more)" if len(present) > 4 else "")
    raise UserError(f"{flag} {str(out)!r} holds files a pipeline did not write ({listed}): give a new or "
                    "empty folder (or the --out of an earlier pipeline run)")


def merge(dirs: list[Path], out: Path) -> dict:
    """Join shard outputs into ``out``: artefacts copied (and checked against their SHA-256),
    manifests joined, the views rebuilt. Refuses shards of other configs or missing shards.

    Every shard is validated, its files included, before anything is written, and the output is
    staged and swapped in whole: a bad shard leaves ``out`` as it was, so the merge after the fix
    runs as the first would have."""
    from segexport.core.files import commit_folder, refuse_nested, staged_folder
    from segexport.core.files import regular_file_inside as inside

    dirs = [Path(d) for d in dirs]
    if not dirs:
        raise UserError("pass the output folder of every shard")
    seen: dict[Path, Path] = {}
    for d in dirs:
        if d.resolve() in seen:
            raise UserError(f"{str(d)!r} is given twice (as {str(seen[d.resolve()])!r}): pass each shard's folder once")
        seen[d.resolve()] = d
    refuse_nested({"--out": out}, {f"the shard {str(d)!r}": d for d in dirs})
    check_output_folder(out)
    docs = [(d, read_manifest(d / "manifest.json")) for d in dirs]
    first = docs[0][1]
    for d, doc in docs:
        for key in ("config_sha256", "segexport", "units", "baseline"):
            if doc.get(key) != first.get(key):
                raise UserError(f"{d}: {key} differs from {docs[0][0]}'s: merge the shards of one run "
                                "(same config, same segexport, same --baseline)")
    shards = [r["shard"] for _, doc in docs for r in doc.get("runs", [])]
    total = {s.split("/")[1] for s in shards}
    if len(total) > 1:
        raise UserError(f"the shards were split differently ({', '.join(sorted(set(shards)))}): merge one --shard I/N set")
    n = int(total.pop()) if total else 1
    only = any(doc.get("only") for _, doc in docs)
    if not only:
        twice = sorted({s for s in shards if shards.count(s) > 1})
        if twice:
            raise UserError(f"shard(s) {', '.join(twice)} given twice: pass each shard's output folder once")
        bad = sorted({s for s in shards if not 1 <= int(s.split("/")[0]) <= n})
        if bad:
            raise UserError(f"shard(s) {', '.join(bad)} are not shards of {n}: pass the outputs of one --shard I/N set")
        missing = sorted(set(f"{i}/{n}" for i in range(1, n + 1)) - set(shards), key=lambda s: int(s.split("/")[0]))
        if missing:
            raise UserError(f"shard(s) {', '.join(missing)} missing: pass every shard's output folder")
    entries: dict[int, dict] = {}
    copies: dict[str, tuple[Path, str]] = {}
    for d, doc in docs:
        for e in doc["entries"]:
            if e["index"] in entries and entries[e["index"]] != e:
                raise UserError(f"{d}: {e['model']} {e['variant']} appears in two shards with different results")
            entries[e["index"]] = e
            for a in e["artefacts"]:
                src = d / a["path"]
                if not inside(src, d) or sha256_file(src) != a["sha256"]:
                    raise UserError(f"{src}: missing, not a regular file inside the shard, or changed since its "
                                    "manifest was written: re-run that shard")
                if a["path"] in copies and copies[a["path"]][1] != a["sha256"]:
                    raise UserError(f"{src}: another shard has a different {a['path']}: merge the shards of one run")
                copies[a["path"]] = (src, a["sha256"])
    merged = {k: v for k, v in first.items() if k not in ("entries", "runs")}
    merged["entries"] = [entries[i] for i in sorted(entries)]
    merged["runs"] = [r for _, doc in docs for r in doc.get("runs", [])]
    with staged_folder(out) as stage:  # nothing is written before every shard passed
        for rel, (src, _sha) in copies.items():
            dst = stage / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        write_outputs(stage, merged)
        commit_folder(stage, out)
    return merged


def check_step_summary() -> None:
    """``$GITHUB_STEP_SUMMARY``, when set, must be a file one can append to: checked before the run,
    not found out after every step ran."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    p = Path(target)
    if p.is_dir() or (p.exists() and not p.is_file()):
        raise UserError(f"GITHUB_STEP_SUMMARY {target!r} is not a regular file: unset it or point it at a file")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir() or not os.access(p if p.exists() else parent, os.W_OK):
        raise UserError(f"GITHUB_STEP_SUMMARY {target!r} cannot be written: unset it or point it at a writable file")


def append_step_summary(root: Path) -> None:
    """Append report.md to ``$GITHUB_STEP_SUMMARY`` when GitHub Actions set it."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        check_step_summary()
        try:
            with open(target, "a", encoding="utf-8") as fh:
                fh.write((root / "report.md").read_text())
        except OSError as exc:
            raise UserError(f"GITHUB_STEP_SUMMARY {target!r}: {exc.strerror}; the outputs are in {root}") from None
