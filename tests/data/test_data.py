"""The synthetic dataset is deterministic; image and label loading name every bad file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segexport.data.contract import PreprocessContract
from segexport.data.images import load_images, load_labels
from segexport.data.synth import make_synthetic, synthetic_arrays
from segexport.errors import UserError

CONTRACT = PreprocessContract(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=(32, 40))


def test_synthetic_is_deterministic_and_labelled():
    a, la = synthetic_arrays(3, (48, 48), 5, seed=1)
    b, lb = synthetic_arrays(3, (48, 48), 5, seed=1)
    c, _ = synthetic_arrays(3, (48, 48), 5, seed=2)
    assert np.array_equal(a, b) and np.array_equal(la, lb) and not np.array_equal(a, c)
    assert la.max() < 5 and len(np.unique(la)) >= 2


def test_written_dataset_round_trips(tmp_path):
    make_synthetic(tmp_path, 3, (24, 30), num_classes=4, seed=0)
    x, files = load_images(tmp_path / "images", CONTRACT)
    assert x.shape == (3, 3, 32, 40) and x.dtype == np.float32
    raw = np.asarray(Image.open(files[0]).convert("RGB").resize((40, 32), Image.BILINEAR)).astype(np.float32)
    assert np.allclose(x[0], ((raw / 255 - 0.5) / 0.25).transpose(2, 0, 1), atol=1e-5)
    labels = load_labels(tmp_path / "labels", files, (32, 40), num_classes=4)
    assert labels.shape == (3, 32, 40) and labels.max() < 4


def test_empty_dir_and_unreadable_image(tmp_path):
    with pytest.raises(UserError, match="no PNG/JPEG images"):
        load_images(tmp_path, CONTRACT)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png"):
        load_images(tmp_path, CONTRACT)


def test_labels_out_of_range_are_named(tmp_path):
    make_synthetic(tmp_path, 2, (16, 16), num_classes=6, seed=0)
    _, files = load_images(tmp_path / "images", CONTRACT)
    with pytest.raises(UserError, match="outside 0..1"):
        load_labels(tmp_path / "labels", files, (16, 16), num_classes=2)


def test_cli_synth(run_cli, tmp_path):
    result = run_cli("data", "synth", "--out", tmp_path / "s", "--count", "2", "--size", "20x24", "--num-classes", "3")
    assert result.exit_code == 0, result.stderr
    assert len(list((tmp_path / "s" / "labels").glob("*.png"))) == 2


def test_same_seed_same_bytes_and_manifest(tmp_path):
    import json

    a = make_synthetic(tmp_path / "a", 2, (16, 20), num_classes=3, seed=4)
    b = make_synthetic(tmp_path / "b", 2, (16, 20), num_classes=3, seed=4)
    for rel in ("images/00001.png", "labels/00001.png", "manifest.json"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["num_classes"] == 3 and manifest["size"] == [16, 20] and len(manifest["sha256"]) == 64
    label = Image.open(a / "labels" / "00000.png")
    assert label.mode == "P" and label.getpalette()[3:6] == [128, 0, 0]  # VOC class 1 is dark red


def test_synth_refuses_bad_class_counts():
    with pytest.raises(UserError, match="at least 2"):
        synthetic_arrays(1, (8, 8), 1)
    with pytest.raises(UserError, match="255 means ignore"):
        synthetic_arrays(1, (8, 8), 300)


def test_cli_synth_bad_input_is_one_line(run_cli, tmp_path):
    from tests.conftest import assert_one_line_error

    result = run_cli("data", "synth", "--out", tmp_path / "s", "--count", "1", "--num-classes", "1")
    assert_one_line_error(result, "--num-classes", "at least 2")
    result = run_cli("data", "synth", "--out", tmp_path / "s", "--count", "0")
    assert_one_line_error(result, "--count")


def test_synth_replaces_an_earlier_set_and_touches_nothing_else(run_cli, tmp_path):
    from tests.conftest import assert_one_line_error

    out = tmp_path / "s"
    assert run_cli("data", "synth", "--out", out, "--count", "4", "--size", "16").exit_code == 0
    assert run_cli("data", "synth", "--out", out, "--count", "2", "--size", "16", "--seed", "5", "--force").exit_code == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == ["00000.png", "00001.png"]  # no stale samples
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert_one_line_error(run_cli("data", "synth", "--out", tmp_path / "mine", "--size", "16"), "not empty")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert_one_line_error(run_cli("data", "synth", "--out", tmp_path / "n", "--seed", "-1"), "--seed must be >= 0")
    assert_one_line_error(run_cli("data", "synth", "--out", tmp_path / "mine" / "notes.txt"), "is a file")
    assert_one_line_error(run_cli("data", "synth", "--out", tmp_path / "n", "--num-classes", "256"), "too many")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "s"]  # failures leave no folders behind
