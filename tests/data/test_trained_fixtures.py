"""The trained fixtures still are what fixtures.json says they are.

Parity and INT8 checks are judged on these checkpoints. A change to an architecture's
forward pass (a pool's rounding, an added ReLU) keeps every state_dict key loadable but turns
the weights into a poor model; this test catches that by re-measuring the held-out mIoU
recorded at training time. When it fails, retrain: the failing fixture's "command" is in
tests/fixtures/fixtures.json (python scripts/train_fixtures.py --models NAME ...).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INDEX = json.loads((FIXTURES / "fixtures.json").read_text())


@pytest.mark.parametrize("name", sorted(INDEX["fixtures"]))
def test_fixture_reproduces_its_held_out_miou(name):
    import torch

    from segexport.checks.metrics import miou
    from segexport.data.synth import synthetic_arrays
    from segexport.models.registry import build_model, get_spec

    meta, data = INDEX["fixtures"][name], INDEX["dataset"]
    assert (FIXTURES / meta["file"]).stat().st_size < 4_000_000, "fixtures must stay small"
    model = build_model(name, num_classes=meta["num_classes"], width=meta["width"]).eval()
    model.load_state_dict(torch.load(FIXTURES / meta["file"], map_location="cpu", weights_only=True), strict=True)
    spec = get_spec(name)
    images, labels = synthetic_arrays(data["val"]["count"], tuple(meta["input_size"]), meta["num_classes"],
                                      seed=data["val"]["seed"])
    x = (images.astype(np.float32) / 255 - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    with torch.no_grad():
        pred = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).argmax(1).numpy()
    measured = miou(pred, labels, meta["num_classes"])
    assert meta["val_miou"] > 60, f"{name} is barely trained ({meta['val_miou']} mIoU)"
    assert measured == pytest.approx(meta["val_miou"], abs=0.5), (
        f"{name}: held-out mIoU {measured:.2f} != recorded {meta['val_miou']} -- the architecture changed "
        f"since training; rerun: {meta['command']}")
