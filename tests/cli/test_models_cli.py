"""``segexport models`` and the bad inputs every command shares, through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import TINY_WIDTH, assert_one_line_error

ZOO = [
    "fcn32s", "fcn16s", "fcn8s", "deconvnet", "segnet", "unet", "fcdensenet56", "fcdensenet67",
    "fcdensenet103", "deeplabv1", "dilatednet", "dilatednet-context",
]


def test_models_json_lists_the_zoo_with_params(run_cli):
    result = run_cli("models", "--json", "--no-flops")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ZOO
    for row in rows:
        assert row["params"] > 0 and row["min_size"] >= 1 and row["output_stride"] >= 1
        if row["paper_params"] and row["name"] != "fcdensenet56":  # see test_fcdensenet56_follows_the_recipe
            assert abs(row["params"] - row["paper_params"]) / row["paper_params"] <= 0.02, row


def test_models_one_entry_with_flops(run_cli):
    result = run_cli("models", "deeplabv1", "--json")
    assert result.exit_code == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["name"] == "deeplabv1" and "Chen" in row["paper"]
    assert row["gflops"] and row["gflops"] > 1  # measured by torch.utils.flop_counter


def test_models_table(run_cli):
    result = run_cli("models", "--no-flops")
    assert result.exit_code == 0
    for name in ZOO:
        assert name in result.stdout


def test_models_counts_at_the_width_and_classes_asked(run_cli):
    full = json.loads(run_cli("models", "unet", "--json", "--no-flops").stdout)
    small = json.loads(run_cli("models", "unet", "--json", "--no-flops", "--width", "0.125", "--num-classes", "2").stdout)
    from segexport.models.registry import build_model

    want = sum(p.numel() for p in build_model("unet", num_classes=2, width=0.125).parameters())
    assert small["params"] == want < full["params"] and small["width"] == 0.125 and small["num_classes"] == 2
    table = run_cli("models", "unet", "--no-flops", "--width", "0.125").stdout
    assert "at width 0.125" in table and "paper:" not in table  # the paper's count is for full width


USER_NET = """
import torch.nn.functional as F
from torch import nn

class Net(nn.Module):
    def __init__(self, num_classes, depth):
        super().__init__()
        self.body = nn.Sequential(*[nn.Conv2d(3, 3, 3, padding=1) for _ in range(depth)])
        self.head = nn.Conv2d(3, num_classes, 1)
        self.segexport_spec = {"default_input_size": (32, 48), "min_size": 8}

    def forward(self, x):
        return self.head(self.body(x))

def build(num_classes=21, depth=1):
    return Net(num_classes, depth)

def coarse(num_classes=21):
    return nn.Conv2d(3, num_classes, 2, stride=2)
"""


def test_models_describes_a_user_factory(run_cli, tmp_path, monkeypatch):
    (tmp_path / "modelsnet.py").write_text(USER_NET)
    monkeypatch.chdir(tmp_path)
    result = run_cli("models", "modelsnet:build", "--json", "--num-classes", "2", "--model-arg", "depth=2")
    assert result.exit_code == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["family"] == "user" and row["num_classes"] == 2 and row["default_input_size"] == [32, 48]
    assert row["params"] == 2 * (3 * 3 * 9 + 3) + (3 * 2 + 2)
    assert row["gflops"] == pytest.approx(2 * 32 * 48 * (2 * 27 * 3 + 3 * 2) / 1e9, abs=0.005)
    shown = run_cli("models", "modelsnet.py:build", "--num-classes", "1")
    assert shown.exit_code == 0 and "background, foreground" in shown.stdout


def test_models_holds_a_user_factory_to_the_forward_contract(run_cli, tmp_path, monkeypatch):
    (tmp_path / "modelsnet.py").write_text(USER_NET)
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(run_cli("models", "modelsnet:coarse"), "returned 1x21x256x256 for a 1x3x512x512 input")
    assert_one_line_error(run_cli("models", "unet", "--model-arg", "depth=2"), "--model-arg not accepted by unet")
    assert_one_line_error(run_cli("models", "unet", "--width", "0"), "--width must be in (0, 4]")


def test_unknown_model_suggests_closest(run_cli):
    assert_one_line_error(run_cli("models", "deeplab1"), "unknown model", "deeplabv1")
    assert_one_line_error(run_cli("onnx", "--model", "segnett", "--out", "x.onnx"), "did you mean segnet")


def test_missing_weights_file(run_cli, tmp_path):
    result = run_cli("onnx", "--model", "unet", "--width", TINY_WIDTH, "--weights", tmp_path / "nope.pt",
                     "--out", tmp_path / "u.onnx")
    assert_one_line_error(result, "not found", "--weights")
    assert not list(tmp_path.iterdir())


def test_wrong_shaped_checkpoint(run_cli, tmp_path):
    from segexport.models.loading import load_model

    ckpt = tmp_path / "c.pt"
    torch.save(load_model("unet", num_classes=5, width=TINY_WIDTH).model.state_dict(), ckpt)
    result = run_cli("onnx", "--model", "unet", "--width", TINY_WIDTH, "--weights", ckpt, "--out", tmp_path / "u.onnx")
    assert_one_line_error(result, "does not fit unet", "--num-classes 5")
    assert not (tmp_path / "u.onnx").exists()


def test_non_checkpoint_file(run_cli, tmp_path):
    bogus = tmp_path / "notes.pt"
    bogus.write_text("these are not weights")
    result = run_cli("onnx", "--model", "unet", "--width", TINY_WIDTH, "--weights", bogus, "--out", tmp_path / "u.onnx")
    assert_one_line_error(result, "not a PyTorch checkpoint")


def test_input_below_minimum(run_cli, tmp_path):
    result = run_cli("onnx", "--model", "deconvnet", "--width", TINY_WIDTH, "--input-size", "64x64",
                     "--out", tmp_path / "d.onnx")
    assert_one_line_error(result, "below deconvnet's minimum")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("entry", [["-m", "segexport"], None])
def test_version_from_module_and_console_script(entry):
    import shutil

    cmd = [sys.executable, *entry, "--version"] if entry else [shutil.which("segexport") or "segexport", "--version"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("segexport ")
