"""Image and label loading details: sub-sampling, resizing policies, label encodings."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from segexport.data.contract import PreprocessContract
from segexport.data.images import list_images, load_images, load_labels
from segexport.data.synth import voc_palette
from segexport.errors import UserError


def write_images(root, names, size=(6, 8)):
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((*size, 3), 10 * i, np.uint8)).save(path)


def test_recursive_sorted_and_seeded_subsample(tmp_path):
    names = ["b.png", "a.jpg", "sub/c.png", "sub/deeper/d.jpeg", "notes.txt"]
    write_images(tmp_path, names[:4])
    (tmp_path / "notes.txt").write_text("not an image")
    files = list_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a.jpg", "b.png", "sub/c.png", "sub/deeper/d.jpeg"]
    picks = {tuple(list_images(tmp_path, limit=2, seed=s)) for s in range(8)}
    assert len(picks) > 1  # the seed matters ...
    assert list_images(tmp_path, limit=2, seed=3) == list_images(tmp_path, limit=2, seed=3)  # ... deterministically
    assert all(list(p) == sorted(p) for p in picks)  # and a subsample stays in sorted order
    with pytest.raises(UserError, match=">= 1"):
        list_images(tmp_path, limit=0)


def test_grey_image_becomes_rgb_and_is_normalised(tmp_path):
    Image.fromarray(np.full((4, 4), 51, np.uint8), mode="L").save(tmp_path / "g.png")
    contract = PreprocessContract(mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5), input_size=(4, 4))
    x, _ = load_images(tmp_path, contract)
    # 51 / 255 = 0.2 per channel: ((0.2 - mean) / 0.5) = 0.2, 0.0, -0.2
    assert x.shape == (1, 3, 4, 4)
    assert np.allclose(x[0, :, 0, 0], [0.2, 0.0, -0.2], atol=1e-6)


def test_labels_resize_nearest_never_invents_classes(tmp_path):
    write_images(tmp_path / "img", ["x.png"])
    lab = np.zeros((6, 8), np.uint8)
    lab[:, 4:] = 3  # bilinear would produce 1s and 2s on the edge
    im = Image.fromarray(lab, mode="P")
    im.putpalette(voc_palette())
    (tmp_path / "lab").mkdir()
    im.save(tmp_path / "lab" / "x.png")
    got = load_labels(tmp_path / "lab", [tmp_path / "img" / "x.png"], (12, 16), num_classes=4)
    assert got.shape == (1, 12, 16) and set(np.unique(got)) == {0, 3}
    assert got[0, :, :8].max() == 0 and got[0, :, 8:].min() == 3


def test_rgb_labels_in_voc_colours_are_decoded(tmp_path):
    write_images(tmp_path / "img", ["x.png"], size=(2, 3))
    table = np.asarray(voc_palette(), np.uint8).reshape(256, 3)
    indices = np.array([[0, 1, 2], [15, 255, 1]])
    (tmp_path / "lab").mkdir()
    Image.fromarray(table[indices]).save(tmp_path / "lab" / "x.png")  # RGB, not palette
    got = load_labels(tmp_path / "lab", [tmp_path / "img" / "x.png"], (2, 3), num_classes=21)
    assert got[0].tolist() == indices.tolist()
    odd = table[indices].copy()
    odd[0, 0] = (1, 2, 3)
    Image.fromarray(odd).save(tmp_path / "lab" / "x.png")
    with pytest.raises(UserError, match=r"colours \[\(1, 2, 3\)\] outside the VOC colour map"):
        load_labels(tmp_path / "lab", [tmp_path / "img" / "x.png"], (2, 3), num_classes=21)


def test_ignore_index_is_allowed_and_missing_label_named(tmp_path):
    write_images(tmp_path / "img", ["x.png", "y.png"], size=(2, 2))
    (tmp_path / "lab").mkdir()
    Image.fromarray(np.array([[0, 255], [1, 1]], np.uint8), mode="L").save(tmp_path / "lab" / "x.png")
    got = load_labels(tmp_path / "lab", [tmp_path / "img" / "x.png"], (2, 2), num_classes=2)
    assert got[0].tolist() == [[0, 255], [1, 1]]
    with pytest.raises(UserError, match="no label PNG for image y.png"):
        load_labels(tmp_path / "lab", [tmp_path / "img" / "y.png"], (2, 2), num_classes=2)
    with pytest.raises(UserError, match=r"values \[7\]"):
        Image.fromarray(np.array([[0, 7], [1, 1]], np.uint8), mode="L").save(tmp_path / "lab" / "x.png")
        load_labels(tmp_path / "lab", [tmp_path / "img" / "x.png"], (2, 2), num_classes=2)


def test_16_bit_grey_is_scaled_not_clipped_to_white(tmp_path):
    from segexport.data.images import read_rgb

    grey8 = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    rgb = read_rgb(tmp_path / "g16.png")
    assert rgb.shape == (8, 8, 3) and np.array_equal(rgb[..., 0], grey8) and np.array_equal(rgb[..., 2], grey8)


def test_a_dataset_root_with_images_and_labels_is_refused(tmp_path):
    """Walking the root of `segexport data synth` output would read the label maps as images."""
    write_images(tmp_path / "set", ["images/a.png", "labels/a.png"])
    with pytest.raises(UserError, match="holds images/ and labels/"):
        list_images(tmp_path / "set")


def test_label_names_must_be_unique_to_be_matched(tmp_path):
    write_images(tmp_path / "img", ["a/x.png", "b/y.png"])
    write_images(tmp_path / "lab", ["a/x.png", "b/x.png"])
    names = list_images(tmp_path / "img")
    with pytest.raises(UserError, match="label name 'x' appears twice"):
        load_labels(tmp_path / "lab", names, (6, 8), 21)
    write_images(tmp_path / "img2", ["a/x.png", "b/x.png"])
    write_images(tmp_path / "lab2", ["x.png"])
    with pytest.raises(UserError, match="image name 'x' appears twice"):
        load_labels(tmp_path / "lab2", list_images(tmp_path / "img2"), (6, 8), 21)
