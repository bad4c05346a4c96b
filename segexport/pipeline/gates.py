"""Gates against the last release (``--baseline``, a previous manifest.json).

Accuracy is judged against the release's own figures (agreement with PyTorch, and mIoU when
labels are configured), not only against PyTorch; latency with the robust trial statistics
of :func:`segexport.checks.latency.judge_latency`. A baseline entry for another model,
precision or input shape is refused: the gate is reported as skipped with the reason, never
judged on figures that measure other work.
"""

from __future__ import annotations

from pathlib import Path

from segexport.pipeline.config import Settings

COMPARED = ("model", "precision", "num_classes", "width", "preprocess", "dynamic", "batch")


def _record(entry: dict, root: Path) -> dict | None:
    from dataclasses import asdict

    from segexport.exporter.metadata import read_record

    import json

    path = root / entry["model"] / f"{entry['model']}.{entry['variant']}.onnx"
    # through JSON, as the baseline's copy went: tuples become lists on both sides
    return json.loads(json.dumps(asdict(read_record(path)))) if path.is_file() else None


def _comparable(entry: dict, base: dict | None, root: Path) -> str | None:
    """Why the baseline entry cannot be compared with this one (None when it can)."""
    if base is None:
        return f"the baseline has no {entry['model']} {entry['variant']}: nothing to compare (promote a new baseline)"
    now = _record(entry, root)
    then = next((a["metadata"] for a in base.get("artefacts", [])
                 if a["path"].endswith(f".{base['variant']}.onnx") and a.get("metadata")), None)
    if now is None or then is None:
        return "no ONNX metadata to compare with the baseline's"
    for key in COMPARED:
        if now.get(key) != then.get(key):
            return (f"baseline refused: it was made with {key} {then.get(key)}, this run {now.get(key)} "
                    "(compare like with like; promote a new baseline after an intended change)")
    return None


def _skip(message: str) -> dict:
    return {"verdict": "skip", "message": message, "figures": {}, "key": None}


def accuracy_gate(entry: dict, base: dict | None, s: Settings, root: Path) -> dict:
    why = _comparable(entry, base, root)
    if why:
        return _skip(why)
    now = entry["steps"].get("parity", {}).get("figures") or {}
    then = base["steps"].get("parity", {}).get("figures") or {}
    if now.get("pixel_agreement") is None or then.get("pixel_agreement") is None:
        return _skip("parity figures missing in this run or the baseline")
    figures = {"agreement": now["pixel_agreement"], "baseline_agreement": then["pixel_agreement"],
               "agreement_change_pt": 100 * (now["pixel_agreement"] - then["pixel_agreement"])}
    problems = []
    if -figures["agreement_change_pt"] > s.max_agreement_regression:
        problems.append(f"label agreement with PyTorch {100 * now['pixel_agreement']:.2f} % vs the release's "
                        f"{100 * then['pixel_agreement']:.2f} % (limit -{s.max_agreement_regression} pt)")
    if now.get("miou") is not None and then.get("miou") is not None:
        figures.update(miou=now["miou"], baseline_miou=then["miou"], miou_change_pt=now["miou"] - then["miou"])
        if -figures["miou_change_pt"] > s.max_miou_regression:
            problems.append(f"mIoU {now['miou']:.2f} vs the release's {then['miou']:.2f} "
                            f"(limit -{s.max_miou_regression} pt)")
    if problems:
        return {"verdict": "fail", "message": "; ".join(problems), "figures": figures, "key": None}
    return {"verdict": "pass", "message": "", "figures": figures, "key": None}


def latency_gate(entry: dict, base: dict | None, s: Settings, root: Path) -> dict:
    from segexport.checks.latency import judge_latency

    why = _comparable(entry, base, root)
    if why:
        return _skip(why)
    now = (entry["steps"].get("bench", {}).get("figures") or {}).get("batches") or {}
    then = (base["steps"].get("bench", {}).get("figures") or {}).get("batches") or {}
    results = []
    for batch, per in now.items():
        for backend, fig in per.items():
            if backend.startswith("torch") or backend not in then.get(batch, {}):
                continue  # the gate judges the artefact's backend, not PyTorch eager
            results.append(judge_latency(fig, then[batch][backend], backend=backend, batch=int(batch),
                                         max_regression=s.max_latency_regression))
    if not results:
        return _skip("the baseline timed no backend and batch that this run timed")
    figures = {f"{r.backend} b{r.batch}": {"change_best": r.change_best, "change_ratio": r.change_ratio,
                                           "change_best_ratio": r.change_best_ratio,
                                           "noise": r.noise, "baseline_noise": r.baseline_noise} for r in results}
    failed = [r for r in results if not r.passed]
    return {"verdict": "fail" if failed else "pass", "figures": figures, "key": None,
            "message": "latency regression: " + failed[0].message if failed else "; ".join(r.message for r in results)}
