"""Parity metrics against small cases counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from segexport.checks.metrics import THRESHOLDS, boundary_band, compare, evaluate, iou_per_class, miou, top2_margin


def onehot_logits(labels: np.ndarray, num_classes: int, scale: float = 1.0) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels].transpose(0, 3, 1, 2) * scale


def test_iou_by_hand():
    truth = np.array([[[0, 0, 1, 1],
                       [0, 0, 1, 1],
                       [2, 2, 2, 2]]])
    pred = np.array([[[0, 1, 1, 1],
                      [0, 0, 1, 1],
                      [2, 2, 2, 0]]])
    # class 0: truth 4 px, pred 4 px, intersection 3 -> 3 / 5; class 1: truth 4, pred 5, inter 4 -> 4/5;
    # class 2: truth 4, pred 3, inter 3 -> 3/4
    ious = iou_per_class(pred, truth, 3)
    assert ious == pytest.approx({0: 3 / 5, 1: 4 / 5, 2: 3 / 4})
    assert miou(pred, truth, 3) == pytest.approx(100 * (3 / 5 + 4 / 5 + 3 / 4) / 3)


def test_ignore_index_and_absent_classes():
    truth = np.array([[[0, 255], [1, 1]]])
    pred = np.array([[[0, 2], [1, 1]]])  # the 2 sits on an ignored pixel: class 2 is absent from both
    assert iou_per_class(pred, truth, 4) == {0: 1.0, 1: 1.0}
    assert miou(pred, truth, 4) == 100.0


def test_margin_aware_agreement():
    ref = np.zeros((1, 2, 1, 3), np.float32)
    ref[0, 0] = [[1.0, 1.0, 0.5]]
    ref[0, 1] = [[0.0, 0.9995, 0.0]]   # pixel 1: margin 5e-4, ambiguous
    cand = ref.copy()
    cand[0, 1, 0, 1] = 1.0005          # flips the ambiguous pixel
    cand[0, 1, 0, 2] = 0.6             # flips a clear pixel (margin 0.5)
    assert top2_margin(ref)[0, 0].tolist() == pytest.approx([1.0, 5e-4, 0.5], abs=1e-6)
    m = compare(ref, cand, margin_tol=1e-3)
    assert m.pixel_agreement == pytest.approx(1 / 3)
    assert m.ambiguous_disagreements == 1
    assert m.strict_agreement == pytest.approx(1 / 2)  # 1 agreeing of the 2 non-ambiguous pixels


def test_boundary_band_on_6x6():
    labels = np.zeros((1, 6, 6), int)
    labels[0, :, 3:] = 1  # a vertical edge between columns 2 and 3
    band1 = boundary_band(labels, 1)
    assert band1[0].sum() == 12 and band1[0, :, 2:4].all()
    band2 = boundary_band(labels, 2)
    assert band2[0].sum() == 24 and band2[0, :, 1:5].all() and not band2[0, :, 0].any()


def test_boundary_agreement_counts_only_the_band():
    labels = np.zeros((1, 6, 6), int)
    labels[0, :, 3:] = 1
    ref = onehot_logits(labels, 2)
    cand = ref.copy()
    cand[0, :, 0, 0] = [0, 1]   # far from the edge: outside the band
    cand[0, :, 0, 2] = [0, 1]   # on the edge
    m = compare(ref, cand, boundary_px=1)
    assert m.pixel_agreement == pytest.approx(34 / 36)
    assert m.boundary_agreement == pytest.approx(11 / 12)


def test_tensor_metrics_and_thresholds():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    m = compare(ref, ref.copy())
    assert m.max_abs == 0 and m.rel_l2 == 0 and m.cosine == pytest.approx(1.0) and m.pixel_agreement == 1
    assert all(c.passed for c in evaluate(m, THRESHOLDS["fp32"]))
    bad = compare(ref, ref + 1e-2)
    checks = {c.name: c for c in evaluate(bad, THRESHOLDS["fp32"])}
    assert not checks["max_abs"].passed and checks["max_abs"].value == pytest.approx(1e-2, rel=1e-3)
    drop = {c.name: c for c in evaluate(m, THRESHOLDS["int8"], miou_drop=1.5)}
    assert not drop["miou_drop"].passed


def test_parity_bounds_the_99th_percentile_not_the_max():
    from segexport.checks.metrics import PARITY_THRESHOLDS

    ref = np.zeros((1, 2, 10, 10), np.float32)
    ref[:, 0] = 10.0
    moved = ref.copy()
    moved[0, 0, 0, 0] = 9.0  # one element in 200 moved (an unpool index flip): max 1.0, p99 0
    m = compare(ref, moved)
    strict = {c.name: c.passed for c in evaluate(m, THRESHOLDS["fp32"])}
    parity = {c.name: c.passed for c in evaluate(m, PARITY_THRESHOLDS["fp32"])}
    assert strict["max_abs"] is False and parity["max_abs"] is True
    broken = compare(ref, ref * 0.9)  # everything off: fails both ways
    assert not {c.name: c.passed for c in evaluate(broken, PARITY_THRESHOLDS["fp32"])}["max_abs"]


def test_label_maps_are_compared_too():
    a = np.array([[[0, 1], [2, 2]]])
    b = np.array([[[0, 1], [2, 1]]])
    m = compare(a, b)
    assert m.pixel_agreement == 0.75 and m.max_abs is None


def test_batch_sums_match_whole_array_formulas():
    # compare() reduces one sample at a time; the totals must equal the textbook definitions.
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((3, 5, 6, 7)).astype(np.float32)
    cand = ref + rng.standard_normal(ref.shape).astype(np.float32) * np.float32(0.1)
    r, c = ref.astype(np.float64), cand.astype(np.float64)
    m = compare(ref, cand)
    assert m.max_abs == pytest.approx(np.abs(r - c).max(), rel=1e-6)
    assert m.mean_abs == pytest.approx(np.abs(r - c).mean(), rel=1e-6)
    assert m.rel_l2 == pytest.approx(np.sqrt(((r - c) ** 2).sum() / (r ** 2).sum()), rel=1e-6)
    assert m.cosine == pytest.approx((r * c).sum() / np.sqrt((r ** 2).sum() * (c ** 2).sum()), rel=1e-9)
    assert m.ref_max_abs == pytest.approx(np.abs(r).max())
    assert m.pixel_agreement == pytest.approx((ref.argmax(1) == cand.argmax(1)).mean())


def test_class_iou_of_logits_by_hand():
    ref_labels = np.array([[[0, 0, 1], [1, 1, 1]]])
    cand_labels = np.array([[[0, 1, 1], [1, 1, 0]]])
    m = compare(onehot_logits(ref_labels, 2), onehot_logits(cand_labels, 2))
    # class 0: ref {0,1}, cand {0,5}: inter 1, union 3; class 1: ref {2,3,4,5}, cand {1,2,3,4}: inter 3, union 5
    assert m.class_iou == pytest.approx({0: 1 / 3, 1: 3 / 5})


def test_nan_logits_fail_even_when_labels_agree():
    ref = onehot_logits(np.zeros((1, 2, 2), int), 2, scale=5.0)
    cand = ref.copy()
    cand[0, 0, 1, 1] = np.nan  # argmax still picks class 0: labels "agree"
    m = compare(ref, cand)
    assert m.pixel_agreement == 1.0 and m.nonfinite == 1 and np.isnan(m.max_abs)
    for precision in ("fp32", "fp16", "int8"):
        checks = {c.name: c.passed for c in evaluate(m, THRESHOLDS[precision])}
        assert checks["finite"] is False and checks["pixel_agreement"] is True
    assert {c.name: c.passed for c in evaluate(compare(ref, ref), THRESHOLDS["int8"])}["finite"] is True


def test_out_of_range_class_ids_are_refused():
    truth = np.array([[0, 1], [1, 255]])
    with pytest.raises(ValueError, match=r"prediction has class ids \[3\]"):
        miou(np.array([[0, 1], [3, 0]]), truth, 3)
    with pytest.raises(ValueError, match=r"truth has class ids \[7\]"):
        iou_per_class(truth * 0, np.array([[0, 7], [1, 255]]), 3)
    assert miou(np.array([[0, 1], [1, 9]]), truth, 3) == 100.0  # the stray id sits on an ignored pixel


def test_threshold_overrides():
    t = THRESHOLDS["fp32"].with_overrides(min_pixel_agreement=0.5)
    assert t.min_pixel_agreement == 0.5 and t.max_abs_rel == THRESHOLDS["fp32"].max_abs_rel
    with pytest.raises(KeyError):
        THRESHOLDS["fp32"].with_overrides(nonsense=1.0)
