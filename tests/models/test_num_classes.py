"""Where a model's class count comes from when --num-classes is not given: 21 for the zoo, a
user factory's own default, the checkpoint's head, or the model's own output; never a silent
21-class head on a user model."""

from __future__ import annotations

import textwrap

import pytest
import torch

from segexport.errors import UserError
from segexport.models.loading import load_model

FACTORIES = textwrap.dedent(
    """
    from torch import nn

    def five(num_classes=5):
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, num_classes, 1))

    def required(num_classes):
        return nn.Conv2d(3, num_classes, 1)

    def own_name(classes=3):  # smp's spelling: segexport cannot pass num_classes
        return nn.Conv2d(3, classes, 1)
    """
)


@pytest.fixture
def nets(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(FACTORIES)
    return path


def test_zoo_default_is_21():
    loaded = load_model("fcn32s", width=0.0625)
    assert (loaded.num_classes, loaded.num_classes_source) == (21, "zoo default")


def test_factory_default_wins_over_21(nets):
    loaded = load_model(f"{nets}:five")
    assert (loaded.num_classes, loaded.num_classes_source) == (5, "factory default")
    assert loaded.model[-1].out_channels == 5


def test_explicit_flag_wins(nets):
    assert load_model(f"{nets}:five", num_classes=2).model[-1].out_channels == 2


def test_checkpoint_head_decides_when_not_given(nets, tmp_path):
    torch.manual_seed(1)
    from importlib import util

    spec = util.spec_from_file_location("nets_ckpt", nets)
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    trained = module.five(num_classes=7)
    ckpt = tmp_path / "seven.pt"
    torch.save(trained.state_dict(), ckpt)
    loaded = load_model(f"{nets}:five", weights=ckpt)
    assert (loaded.num_classes, loaded.num_classes_source) == (7, "checkpoint head")
    torch.testing.assert_close(loaded.model[-1].weight, trained[-1].weight)
    with pytest.raises(UserError, match=r"pass (--num-classes |num_classes= ?)7"):  # an explicit mismatch: one line with the fix
        load_model(f"{nets}:five", num_classes=5, weights=ckpt)


def test_required_argument_without_default_is_asked_for(nets):
    with pytest.raises(UserError, match=r"requires num_classes and has no default: pass (--num-classes |num_classes= ?)N"):
        load_model(f"{nets}:required")


def test_a_factory_without_num_classes_is_decided_by_its_output(nets):
    loaded = load_model(f"{nets}:own_name")
    assert loaded.num_classes is None  # settled from the first forward by the export
    from segexport.models.loading import settle_num_classes, spec_of

    settle_num_classes(loaded, 3)
    assert (loaded.num_classes, loaded.num_classes_source) == (3, "model output")
    assert spec_of(loaded).class_names == ("class_0", "class_1", "class_2")


def test_required_argument_is_read_from_the_checkpoint(nets, tmp_path):
    ckpt = tmp_path / "four.pt"
    torch.save(torch.nn.Conv2d(3, 4, 1).state_dict(), ckpt)
    loaded = load_model(f"{nets}:required", weights=ckpt)
    assert (loaded.num_classes, loaded.num_classes_source) == (4, "checkpoint head")
    torch.save(torch.nn.Conv2d(3, 21, 1).state_dict(), ckpt)  # the build's own count: no rebuild, same answer
    assert load_model(f"{nets}:required", weights=ckpt).num_classes_source == "checkpoint head"
