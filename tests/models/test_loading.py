"""User models (module:factory, file.py:factory) and checkpoint loading."""

from __future__ import annotations

import textwrap

import pytest
import torch

from segexport.errors import UserError
from segexport.models.loading import load_model, read_state_dict
from tests.conftest import TINY_WIDTH

USER_MODULE = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self, num_classes=3, hidden=4):
            super().__init__()
            self.conv = nn.Conv2d(3, hidden, 3, padding=1)
            self.head = nn.Conv2d(hidden, num_classes, 1)
            self.segexport_spec = {"default_input_size": (32, 48), "min_size": 8,
                                   "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)))

    def build(num_classes=3, hidden=4):
        return Tiny(num_classes, hidden)

    not_callable = 3
    """
)


@pytest.fixture
def user_pkg(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_module_factory_gets_model_args_and_num_classes(user_pkg):
    loaded = load_model("userpkg.nets:build", num_classes=5, model_args={"hidden": 6})
    assert loaded.model.conv.out_channels == 6
    assert loaded.model(torch.zeros(1, 3, 16, 16)).shape == (1, 5, 16, 16)
    assert loaded.spec.default_input_size == (32, 48)
    assert loaded.spec.mean == (0.5, 0.5, 0.5)
    assert loaded.spec.min_size == 8


def test_file_factory(user_pkg):
    loaded = load_model(f"{user_pkg / 'userpkg' / 'nets.py'}:build", num_classes=2)
    assert loaded.model(torch.zeros(1, 3, 8, 8)).shape == (1, 2, 8, 8)


@pytest.mark.parametrize(
    "ref, fragment",
    [
        ("userpkg.nets:missing", "has no callable 'missing'"),
        ("userpkg.nets:not_callable", "has no callable"),
        ("userpkg.nowhere:build", "cannot import module"),
        ("no/such/file.py:build", "not found"),
    ],
)
def test_bad_user_references(user_pkg, ref, fragment):
    with pytest.raises(UserError, match=fragment):
        load_model(ref)


def test_unknown_factory_argument_is_a_user_error(user_pkg):
    with pytest.raises(UserError, match="model_args=") as err:
        load_model("userpkg.nets:build", model_args={"depth": 3})
    assert "--model-arg" in err.value.cli_message


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model+module", "compiled", "lightning", "lightning+module"])
def test_checkpoint_round_trip(tmp_path, wrap):
    torch.manual_seed(0)
    src = load_model("unet", num_classes=3, width=TINY_WIDTH).model
    state = src.state_dict()
    if wrap == "state_dict":
        obj = {"state_dict": state, "epoch": 3}
    elif wrap == "model+module":
        obj = {"model": {f"module.{k}": v for k, v in state.items()}}
    elif wrap == "compiled":
        obj = {f"_orig_mod.{k}": v for k, v in state.items()}
    elif wrap == "lightning":  # self.net = model inside a LightningModule, plus the loss's own tensors
        obj = {"state_dict": {**{f"net.{k}": v for k, v in state.items()}, "criterion.weight": torch.ones(3)},
               "epoch": 7, "global_step": 100}
    elif wrap == "lightning+module":
        obj = {"state_dict": {f"module.model.seg.{k}": v for k, v in state.items()}}
    else:
        obj = state
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    torch.manual_seed(1)  # a differently initialised target
    loaded = load_model("unet", num_classes=3, width=TINY_WIDTH, weights=path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(src.eval()(x), loaded.model(x))
    assert loaded.weights_sha256 and len(loaded.weights_sha256) == 64
    if wrap.startswith("lightning"):
        assert loaded.notes and ("'net.'" in loaded.notes[0] or "'model.seg.'" in loaded.notes[0]), loaded.notes


def test_a_checkpoint_holding_the_model_twice_is_a_choice_left_to_the_user(tmp_path):
    state = load_model("unet", num_classes=3, width=TINY_WIDTH).model.state_dict()
    path = tmp_path / "ema.pt"
    torch.save({"state_dict": {**{f"model.{k}": v for k, v in state.items()},
                               **{f"model_ema.module.{k}": v for k, v in state.items()}}}, path)
    with pytest.raises(UserError, match="holds the model 2 times.*'model.'.*'model_ema.module.'"):
        load_model("unet", num_classes=3, width=TINY_WIDTH, weights=path)


def test_wrong_classes_checkpoint_names_key_and_fix(tmp_path):
    path = tmp_path / "four.pt"
    torch.save(load_model("unet", num_classes=4, width=TINY_WIDTH).model.state_dict(), path)
    with pytest.raises(UserError) as info:
        load_model("unet", num_classes=21, width=TINY_WIDTH, weights=path)
    msg = str(info.value)  # a Python caller reads the parameter, the CLI the flag
    assert "shape mismatch" in msg and "num_classes= 4" in msg and "\n" not in msg
    assert "--num-classes 4" in info.value.cli_message


def test_pickled_object_is_refused(tmp_path):
    import argparse

    path = tmp_path / "obj.pt"  # an arbitrary Python object: weights_only must refuse to unpickle it
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": {}}, path)
    with pytest.raises(UserError):
        read_state_dict(path)
