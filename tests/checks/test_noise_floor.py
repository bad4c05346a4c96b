"""The reference's float32 noise floor: when it relaxes the checks, how far, and what it never hides."""

from __future__ import annotations

import json

import numpy as np

from segexport.checks.metrics import PARITY_THRESHOLDS, Thresholds, compare
from segexport.checks.noise_floor import JITTERS, SAMPLES_PER_JITTER, judge_against_floor, measure_floor, worst
from tests.conftest import TINY_WIDTH

STRICT = Thresholds(min_pixel_agreement=0.9999, max_abs_rel=1e-4)


def _logits(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 4, 16, 16)).astype(np.float32)


def _spiked(x: np.ndarray, index: int, amount: float) -> np.ndarray:
    out = x.copy()
    out.flat[index] += amount
    return out


def test_a_stable_reference_keeps_the_strict_verdict():
    ref = _logits()
    floors = [compare(ref, ref + 1e-8)]
    assert judge_against_floor(compare(ref, ref + 1e-3), STRICT, floors) is None


def test_an_unstable_reference_gates_the_bulk_not_the_maximum():
    ref = _logits()
    jump = float(np.abs(ref).max())
    floors = [compare(ref, _spiked(ref, 5, jump)), compare(ref, _spiked(ref, 77, jump))]
    bigger_flip = judge_against_floor(compare(ref, _spiked(ref, 300, 3 * jump)), STRICT, floors)
    assert bigger_flip is not None and all(c.passed for c in bigger_flip)  # the maximum is the luck of the draw
    names = {c.name for c in bigger_flip}
    assert "abs_p99" in names and "max_abs" not in names
    everywhere = judge_against_floor(compare(ref, ref * 1.01), STRICT, floors)  # a wrong weight moves every value
    assert [c.name for c in everywhere if not c.passed] == ["abs_p99"]
    band = ref.copy()
    band.flat[:40] += 0.01 * jump  # 4 % of the values off by 1 % of max|ref|: more than tie flips explain
    assert "abs_p99" in [c.name for c in judge_against_floor(compare(ref, band), STRICT, floors) if not c.passed]


def test_labels_may_land_half_a_point_below_the_floor_and_no_further():
    ref = _logits()
    labels = ref.argmax(axis=1).astype(np.int32)
    flipped = labels.copy()
    flipped.flat[:8] = (flipped.flat[:8] + 1) % 4  # the reference flips 8 of 256 labels against itself
    floors = [compare(labels, flipped)]
    assert judge_against_floor(compare(labels, flipped), STRICT, floors) is not None
    near = labels.copy()
    near.flat[100:109] = (near.flat[100:109] + 1) % 4  # 9 of 256: 0.4 pt below the floor
    assert all(c.passed for c in judge_against_floor(compare(labels, near), STRICT, floors))
    far = labels.copy()
    far.flat[100:120] = (far.flat[100:120] + 1) % 4  # 20 of 256: 4.7 pt below
    assert not all(c.passed for c in judge_against_floor(compare(labels, far), STRICT, floors))


def test_a_threshold_the_user_set_is_never_relaxed():
    ref = _logits()
    jump = float(np.abs(ref).max())
    floors = [compare(ref, _spiked(ref, 5, jump))]
    checks = judge_against_floor(compare(ref, _spiked(ref, 300, jump)), STRICT, floors, fixed=["max_abs_rel"])
    assert [c.name for c in checks if not c.passed] == ["max_abs"]


def test_the_floor_is_the_reference_against_itself_under_jitter():
    calls = []

    def reference(x):
        calls.append(x)
        return x * 2

    x = _logits(1)
    floors = measure_floor(reference, x, x * 2, np.random.default_rng(0))
    assert len(floors) == len(calls) == len(JITTERS) * SAMPLES_PER_JITTER >= 4
    assert all(0 < np.abs(c - x).max() <= max(JITTERS) * np.abs(x).max() for c in calls)
    assert len({c.tobytes() for c in calls}) == len(calls)  # every sample is a fresh jitter
    assert worst(floors).max_abs == max(f.max_abs for f in floors)


def test_parity_holds_an_unstable_reference_to_its_floor_and_says_so(tmp_path, run_cli):
    """End to end: a user model whose reference, under any last-bit change of its input, moves the
    feature vectors of 64 pixels, as a near-tied unpool window moves its value to another position.
    Labels stay put (every class moves alike); 6 % of the logits move, so p99 |diff| fails strictly."""
    from segexport.exporter.export import ExportOptions, export_onnx

    factory = tmp_path / "tie.py"
    factory.write_text(
        "import zlib\n"
        "import torch\n"
        "from segexport.models import build_model\n\n"
        "class TieFlipping(torch.nn.Module):\n"
        "    def __init__(self, base):\n"
        "        super().__init__()\n"
        "        self.base = base\n\n"
        "    def forward(self, x):\n"
        "        out = self.base(x)\n"
        "        flat = out.flatten(2).clone()\n"
        "        at = zlib.crc32(x.detach().numpy().tobytes()) % (flat.shape[2] - 64)\n"
        "        flat[:, :, at:at + 64] += out.abs().max()\n"
        "        return flat.view_as(out)\n\n"
        "def build(num_classes=21, width=1.0):\n"
        "    return TieFlipping(build_model('deeplabv1', num_classes=num_classes, width=width))\n")
    onnx_path = export_onnx(ExportOptions(model="deeplabv1", out=tmp_path / "d.onnx", width=TINY_WIDTH,
                                          input_size=(33, 33), verify=False, lint=False)).path
    user = f"{factory}:build"
    result = run_cli("parity", "--onnx", onnx_path, "--model", user, "--count", "1", "--json", tmp_path / "p.json")
    assert result.exit_code == 0, result.stderr + result.stdout
    pair = json.loads((tmp_path / "p.json").read_text())["pairs"][0]
    assert pair["held_to_floor"] is True and pair["noise_floor"]["max_abs"] > 0.5 * pair["noise_floor"]["ref_max_abs"]
    assert "noise floor" not in result.stderr and "held to that floor" in result.stdout.replace("\n", " ")
    strict = run_cli("parity", "--onnx", onnx_path, "--model", user, "--count", "1",
                     "--threshold", f"max_abs_rel={PARITY_THRESHOLDS['fp32'].max_abs_rel}")
    assert strict.exit_code == 1, strict.stdout
