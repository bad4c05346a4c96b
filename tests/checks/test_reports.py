"""Report writers: the JSON schema, JUnit that CI systems parse, Markdown, the rich table, PNGs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict

import numpy as np
import pytest
from PIL import Image

from segexport.checks.metrics import THRESHOLDS, compare, evaluate
from segexport.checks.reports import (DISAGREEMENT_RGB, PairResult, ParityReport, print_table, save_diff_pngs,
                                      write_json, write_junit, write_markdown)


def logits(labels: np.ndarray, num_classes: int = 3) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels].transpose(0, 3, 1, 2) * 4.0


@pytest.fixture
def report() -> ParityReport:
    labels = np.zeros((1, 4, 4), int)
    labels[0, 2:, :] = 2
    ref = logits(labels)
    same = compare(ref, ref.copy())
    broken_labels = labels.copy()
    broken_labels[0, 0, :] = 1  # 4 of 16 pixels flip
    broken = compare(ref, logits(broken_labels))
    thresholds = THRESHOLDS["fp32"]
    return ParityReport(
        onnx="m.onnx", model="unet", precision="fp32", inputs="1 seeded random tensors",
        pairs=[PairResult("torch", "ort-cpu", same, evaluate(same, thresholds)),
               PairResult("torch", "ort-cuda", broken, evaluate(broken, thresholds), 80.0, 60.0)],
        skipped={"trt": "no module tensorrt | install it"},
        versions={"segexport": "0.1", "torch": "2.x"},
        thresholds=asdict(thresholds),
    )


def test_json_schema(report, tmp_path):
    path = tmp_path / "r.json"
    write_json(report, path)
    d = json.loads(path.read_text())
    assert d["schema"] == 1 and d["passed"] is False
    assert d["thresholds"]["min_pixel_agreement"] == THRESHOLDS["fp32"].min_pixel_agreement
    assert d["versions"] == {"segexport": "0.1", "torch": "2.x"}
    assert [p["passed"] for p in d["pairs"]] == [True, False]
    bad = d["pairs"][1]
    assert bad["metrics"]["pixel_agreement"] == pytest.approx(12 / 16)
    assert {c["name"]: c["passed"] for c in bad["checks"]}["pixel_agreement"] is False
    assert set(bad["metrics"]["class_iou"]) == {"0", "1", "2"}  # keys are strings, explicitly
    assert d["skipped"] == {"trt": "no module tensorrt | install it"}


def test_json_writes_nan_as_null(report, tmp_path):
    ref = logits(np.zeros((1, 2, 2), int))
    cand = ref.copy()
    cand[0, 1, 0, 0] = np.nan
    m = compare(ref, cand)
    report.pairs = [PairResult("torch", "ort-cpu", m, evaluate(m, THRESHOLDS["fp32"]))]
    path = tmp_path / "nan.json"
    write_json(report, path)
    d = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c} in the JSON"))
    assert d["pairs"][0]["metrics"]["max_abs"] is None and d["passed"] is False


def test_junit_one_testcase_per_check(report, tmp_path):
    path = tmp_path / "r.xml"
    write_junit(report, path)
    suite = ET.parse(path).getroot()
    cases = suite.findall("testcase")
    n_checks = sum(len(p.checks) for p in report.pairs)
    assert len(cases) == n_checks + 1  # + the skipped backend
    assert int(suite.get("tests")) == len(cases)  # JUnit counts skipped testcases in tests=
    assert int(suite.get("skipped")) == 1
    failures = [(c.get("classname"), c.get("name"), c.find("failure")) for c in cases if c.find("failure") is not None]
    assert {(cls, name) for cls, name, _ in failures} == {("parity.torch_vs_ort-cuda", "pixel_agreement"),
                                                         ("parity.torch_vs_ort-cuda", "max_abs")}
    assert int(suite.get("failures")) == 2
    pixel = next(f for _, name, f in failures if name == "pixel_agreement")
    assert "75.0000 %" in pixel.get("message")
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert [c.get("name") for c in skipped] == ["trt"]
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["version.torch"] == "2.x" and float(props["threshold.min_pixel_agreement"]) == 0.9999


def test_markdown_table(report, tmp_path):
    path = tmp_path / "r.md"
    write_markdown(report, path)
    rows = [ln for ln in path.read_text().splitlines() if ln.startswith("| ")]
    assert rows[0].startswith("| reference | candidate |")
    fails = [r for r in rows if "**FAIL**" in r]
    assert len(fails) == 2 and all("ort-cuda" in r for r in fails)
    skipped = next(r for r in rows if "skipped" in r)
    assert "tensorrt \\| install" in skipped  # an escaped pipe keeps the row's six cells
    assert all(len(r.replace("\\|", "").split("|")) == 8 for r in rows)


def test_rich_table_names_failures(report):
    from rich.console import Console

    console = Console(record=True, width=160)
    print_table(report, console)
    text = console.export_text()
    assert "ort-cpu" in text and "ort-cuda" in text and "FAIL" in text
    assert "ort-cuda: pixel agreement 75.0000 %" in text and "skipped trt" in text


def test_rich_table_fits_an_80_column_terminal(report):
    """With the mIoU column filled nothing is cut to an ellipsis at the default width of a
    terminal or a CI log."""
    from rich.console import Console

    console = Console(record=True, width=80)
    print_table(report, console)
    text = console.export_text()
    assert "…" not in text
    for cell in ("strict %", "min IoU", "result", "60.0/80.0", "FAIL", "ort-cuda"):
        assert cell in text, (cell, text)


def test_diff_pngs(tmp_path):
    from segexport.data.synth import voc_palette

    ref = np.array([[0, 1, 1], [2, 2, 0]], np.uint8)
    cand = np.array([[0, 1, 0], [2, 2, 0]], np.uint8)
    image = np.full((2, 3, 3), 200, np.uint8)
    paths = save_diff_pngs(tmp_path / "d", 7, image, ref, cand, "ort-cpu")
    assert [p.name for p in paths] == ["0007_reference.png", "0007_ort-cpu.png", "0007_ort-cpu_disagreement.png"]
    ref_png = Image.open(paths[0])
    assert ref_png.mode == "P" and np.array_equal(np.asarray(ref_png), ref)
    palette = voc_palette()
    assert tuple(ref_png.convert("RGB").getpixel((0, 1))) == tuple(palette[6:9])  # class 2 in VOC colours
    assert np.array_equal(np.asarray(Image.open(paths[1])), cand)
    overlay = np.asarray(Image.open(paths[2]).convert("RGB"))
    assert tuple(overlay[0, 2]) == DISAGREEMENT_RGB  # the one pixel that differs
    assert tuple(overlay[0, 0]) == (100, 100, 100)   # the image, dimmed to half elsewhere
    assert not list((tmp_path / "d").glob(".*"))     # no temporary files left behind


def test_diff_pngs_keep_class_ids_above_254(tmp_path):
    """A palette PNG holds 0..255 and VOC reads 255 as ignore: more classes go to 16-bit grey."""
    ref = np.array([[0, 298], [255, 3]])
    paths = save_diff_pngs(tmp_path, 0, None, ref, ref.copy(), "ort-cpu")
    assert np.array_equal(np.asarray(Image.open(paths[0])), ref)


def test_a_new_save_diff_run_replaces_the_old_pngs(tmp_path):
    from segexport.checks.reports import clear_diff_pngs

    ref = np.zeros((2, 2), int)
    for i in range(3):
        save_diff_pngs(tmp_path, i, None, ref, ref, "ort-cpu")
    (tmp_path / "notes.txt").write_text("mine")
    clear_diff_pngs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
