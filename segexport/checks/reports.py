"""Reports people and CI systems read: rich tables, JSON, JUnit XML, Markdown, difference PNGs.

The JSON carries ``schema`` (bumped on any incompatible change), the thresholds the checks
were judged by and the library versions, so a stored report can be re-read and compared later.

JUnit is written with the standard library's ElementTree (one ``testcase`` per check, a
``failure`` element carrying the message) because every CI system renders it and no extra
dependency is needed for twenty lines of XML.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from segexport.core.metrics import CheckResult, ParityMetrics


@dataclass
class PairResult:
    """One candidate backend compared with the reference."""

    reference: str
    candidate: str
    metrics: ParityMetrics
    checks: list[CheckResult]
    miou_reference: float | None = None
    miou_candidate: float | None = None
    thresholds: dict[str, float | None] | None = None  # when they differ from the report's (e.g. an INT8 engine)
    noise_floor: ParityMetrics | None = None  # the reference against itself, when it was measured
    held_to_floor: bool = False  # the reference failed the thresholds against itself: checks relaxed to its floor

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


@dataclass
class ParityReport:
    onnx: str
    model: str
    precision: str
    inputs: str
    pairs: list[PairResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, float | None] = field(default_factory=dict)
    weights: str | None = None  # the checkpoint the reference was built from (None: untrained)
    weights_sha256: str | None = None  # its SHA-256, the one recorded at export

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.pairs)

    def to_dict(self) -> dict:
        d = {"schema": SCHEMA_VERSION, **asdict(self), "passed": self.passed}
        for pair, raw in zip(self.pairs, d["pairs"]):
            raw["passed"] = pair.passed
            # JSON object keys are strings; say so explicitly rather than rely on json.dumps
            for key in ("metrics", "noise_floor"):
                if raw[key] is not None:
                    raw[key]["class_iou"] = {str(k): v for k, v in raw[key]["class_iou"].items()}
        return d


SCHEMA_VERSION = 1


def _atomic_write(path: str | Path, text: str | bytes) -> None:
    from segexport.core.files import atomic_output

    with atomic_output(path) as tmp:
        tmp.write_bytes(text.encode() if isinstance(text, str) else text)


def _strict_json(value):
    """NaN/inf (a broken candidate's metrics) become null: bare NaN is not JSON and breaks jq and CI parsers."""
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(report: ParityReport, path: str | Path) -> None:
    _atomic_write(path, json.dumps(_strict_json(report.to_dict()), indent=2, allow_nan=False) + "\n")


def write_junit(report: ParityReport, path: str | Path) -> None:
    suite = ET.Element("testsuite", name=f"segexport parity {report.model}",
                       tests=str(sum(len(p.checks) for p in report.pairs) + len(report.skipped)),
                       failures=str(sum(not c.passed for p in report.pairs for c in p.checks)),
                       skipped=str(len(report.skipped)), errors="0")
    props = ET.SubElement(suite, "properties")
    for key, value in {"onnx": report.onnx, "precision": report.precision, "inputs": report.inputs,
                       **{f"threshold.{k}": v for k, v in report.thresholds.items()},
                       **{f"version.{k}": v for k, v in report.versions.items()}}.items():
        ET.SubElement(props, "property", name=key, value=str(value))
    for pair in report.pairs:
        for check in pair.checks:
            case = ET.SubElement(suite, "testcase", classname=f"parity.{pair.reference}_vs_{pair.candidate}", name=check.name)
            if not check.passed:
                ET.SubElement(case, "failure", message=check.message, type="threshold").text = (
                    f"{check.name}: value {check.value:.6g}, limit {check.limit:.6g}")
    for backend, reason in report.skipped.items():
        case = ET.SubElement(suite, "testcase", classname="parity.backends", name=backend)
        ET.SubElement(case, "skipped", message=reason)
    _atomic_write(path, ET.tostring(suite, encoding="unicode", xml_declaration=True))


def write_markdown(report: ParityReport, path: str | Path) -> None:
    cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731 -- a '|' would split the row
    lines = [f"# Parity: {report.model} ({report.precision})", "", f"ONNX `{report.onnx}`, inputs: {report.inputs}", "",
             "| reference | candidate | check | value | limit | result |", "|---|---|---|---|---|---|"]
    for pair in report.pairs:
        for c in pair.checks:
            lines.append(f"| {cell(pair.reference)} | {cell(pair.candidate)} | {c.name} | {c.value:.6g} | {c.limit:.6g} | "
                         f"{'pass' if c.passed else '**FAIL**'} |")
    for backend, reason in report.skipped.items():
        lines.append(f"| - | {cell(backend)} | skipped | | | {cell(reason)} |")
    if report.versions:
        lines += ["", ", ".join(f"{k} {v}" for k, v in report.versions.items())]
    _atomic_write(path, "\n".join(lines) + "\n")


def print_table(report: ParityReport, console) -> None:
    from rich.table import Table

    table = Table(title=f"parity {report.model} ({report.precision}, {report.inputs})", title_justify="left",
                  show_edge=False, pad_edge=False)  # fits 80 columns with the mIoU column filled
    for col in ("backend", "max|Δ|", "agree %", "strict %", "band %", "min IoU", "mIoU/ref", "result"):
        table.add_column(col, justify="right", no_wrap=True)
    pct = lambda v: "-" if v is None else f"{100 * v:.3f}"  # noqa: E731
    for p in report.pairs:
        m = p.metrics
        table.add_row(
            p.candidate, "-" if m.max_abs is None else f"{m.max_abs:.1e}", pct(m.pixel_agreement),
            pct(m.strict_agreement), pct(m.boundary_agreement),
            f"{min(m.class_iou.values()):.4f}" if m.class_iou else "-",
            "-" if p.miou_reference is None else f"{p.miou_candidate:.1f}/{p.miou_reference:.1f}",
            "[green]pass[/]" if p.passed else "[red]FAIL[/]",
        )
    from segexport.core.tables import print_table as show

    show(console, table)
    for p in report.pairs:
        for c in p.checks:
            if not c.passed:
                console.print(f"[red]✗ {p.candidate}: {c.message}[/]")
        if p.noise_floor is not None:
            f = p.noise_floor
            verdict = ("unstable at float32, so the checks were held to that floor" if p.held_to_floor
                       else "stable, so the strict checks stand")
            console.print(f"[yellow]note:[/] {p.candidate}: PyTorch against itself under float32-level input jitter "
                          f"agrees on {pct(f.pixel_agreement)} % of labels (max|Δ| "
                          f"{'-' if f.max_abs is None else f'{f.max_abs:.1e}'}): {verdict}")
    for backend, reason in report.skipped.items():
        console.print(f"[dim]skipped {backend}: {reason}[/]")


def clear_diff_pngs(directory: str | Path) -> None:
    """Remove the PNGs an earlier --save-diff run left (``NNNN_*.png``), so one directory never
    mixes two runs; other files are left alone."""
    out = Path(directory)
    if out.is_dir():
        for path in out.glob("[0-9][0-9][0-9][0-9]_*.png"):
            path.unlink()


def save_diff_pngs(directory: str | Path, index: int, image_rgb: np.ndarray | None, ref_labels: np.ndarray,
                   cand_labels: np.ndarray, tag: str) -> list[Path]:
    """Write ``NNNN_reference.png`` and ``NNNN_<tag>.png`` (labels in the VOC palette, so they open
    like VOC ground truth) and ``NNNN_<tag>_disagreement.png``: the image dimmed to half, with
    every pixel whose label differs painted magenta, so where the export goes wrong is visible
    at a glance. Without an image (random-tensor inputs) a grey canvas stands in."""
    from PIL import Image

    from segexport.core.files import atomic_output
    from segexport.data.synth import voc_palette

    if ref_labels.shape != cand_labels.shape:
        raise ValueError(f"label maps differ in shape: {ref_labels.shape} vs {cand_labels.shape}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    palette = voc_palette()
    images: list[tuple[Path, Image.Image]] = []
    wide = max(int(ref_labels.max(initial=0)), int(cand_labels.max(initial=0))) > 254
    for name, labels in (("reference", ref_labels), (tag, cand_labels)):
        if wide:  # more classes than a palette PNG holds (255 is VOC's ignore): 16-bit grey, ids unchanged
            im = Image.fromarray(labels.astype(np.uint16))
        else:
            im = Image.fromarray(labels.astype(np.uint8), mode="P")
            im.putpalette(palette)
        images.append((out / f"{index:04d}_{name}.png", im))
    base = image_rgb if image_rgb is not None else np.full((*ref_labels.shape, 3), 96, np.uint8)
    if base.shape[:2] != ref_labels.shape:
        raise ValueError(f"image {base.shape[:2]} and labels {ref_labels.shape} differ in size")
    overlay = (base.astype(np.float32) * 0.5).astype(np.uint8)
    overlay[ref_labels != cand_labels] = DISAGREEMENT_RGB
    images.append((out / f"{index:04d}_{tag}_disagreement.png", Image.fromarray(overlay)))
    for path, im in images:
        with atomic_output(path) as tmp:
            im.save(tmp, format="PNG")
    return [p for p, _ in images]


DISAGREEMENT_RGB = (255, 0, 255)


def write_bench_junit(stats, skipped: dict[str, str], baseline_p50: dict | None, max_regression: float,
                      path: str | Path, meta: dict) -> None:
    """One testcase per backend x batch: the baseline gate's verdict (a pass when there is no
    baseline: the latency is recorded, nothing is judged), skipped backends as skipped. Why:
    a bench gate that fails the job must show in the merged JUnit, not only in the exit code."""
    cases = []
    for s in stats:
        base = (baseline_p50 or {}).get((s.backend, s.batch))
        change = None if base is None else s.p50_ms / base - 1
        failed = change is not None and change > max_regression
        cases.append((s, base, change, failed))
    suite = ET.Element("testsuite", name=f"segexport bench {meta.get('model')}", tests=str(len(cases) + len(skipped)),
                       failures=str(sum(c[3] for c in cases)), skipped=str(len(skipped)), errors="0")
    props = ET.SubElement(suite, "properties")
    for key in ("model", "precision", "input_size"):
        ET.SubElement(props, "property", name=key, value=str(meta.get(key)))
    for s, base, change, failed in cases:
        case = ET.SubElement(suite, "testcase", classname=f"bench.{s.backend}", name=f"batch {s.batch}")
        out = f"p50 {s.p50_ms:.3f} ms" + ("" if base is None else f", baseline {base:.3f} ms ({change:+.1%})")
        ET.SubElement(case, "system-out").text = out
        if failed:
            ET.SubElement(case, "failure", type="latency-regression",
                          message=f"p50 {s.p50_ms:.2f} ms vs baseline {base:.2f} ms ({change:+.1%} > {max_regression:.0%})")
    for name, reason in skipped.items():
        case = ET.SubElement(suite, "testcase", classname="bench.backends", name=name)
        ET.SubElement(case, "skipped", message=reason)
    _atomic_write(path, ET.tostring(suite, encoding="unicode", xml_declaration=True))
