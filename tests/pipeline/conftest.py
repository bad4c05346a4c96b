"""One tiny pipeline run shared by the tests of this folder (and the CI-example test).

Two real architectures at width 1/16 and 32x32 px, fp32 + int8 for one of them with four
calibration images: the whole first run is a few exports; every later run in these tests
takes what it can from the same cache, as CI would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

TINY = """
[defaults]
precisions = ["fp32"]
calib_count = 4
parity_count = 1
bench_backends = ["torch", "ort-cpu"]
bench_iterations = 2
bench_warmup = 0
bench_trials = 2
# untrained networks at 32 px: INT8 moves labels more than a trained one would
thresholds = { min_pixel_agreement = 0.8, min_boundary_agreement = 0.8 }

[[models]]
name = "unet-t"
model = "unet"
width = 0.0625
num_classes = 3
input_size = "32x32"
precisions = ["fp32", "int8"]

[[models]]
name = "fcn-t"
model = "fcn8s"
width = 0.0625
num_classes = 3
input_size = "32x32"
"""


@pytest.fixture(autouse=True)
def _in_a_scratch_folder(tmp_path, monkeypatch):
    """Every test runs in its own folder: a run without --cache-dir / --out writes the defaults
    (.segexport-cache, segexport-out) into the working directory, never into the checkout."""
    monkeypatch.chdir(tmp_path)


def manifest_without_runs(path: Path) -> dict:
    doc = json.loads(Path(path).read_text())
    doc.pop("runs")
    return doc


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """(folder, config path, cache dir, output dir, CLI result) of one full run."""
    from typer.testing import CliRunner

    from segexport.cli import app

    root = tmp_path_factory.mktemp("pipeline")
    config = root / "segexport.toml"
    config.write_text(TINY)
    result = CliRunner().invoke(app, ["pipeline", "run", str(config), "--out", str(root / "full"),
                                      "--cache-dir", str(root / "cache")])
    return root, config, root / "cache", root / "full", result


@pytest.fixture
def tiny_copy(tiny_run, tmp_path):
    """A private copy of the config and a cache holding the full run's steps."""
    root, config, cache, _, _ = tiny_run
    shutil.copytree(cache, tmp_path / "cache")
    shutil.copy(config, tmp_path / "segexport.toml")
    return tmp_path, tmp_path / "segexport.toml", tmp_path / "cache"
