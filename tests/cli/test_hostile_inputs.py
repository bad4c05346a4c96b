"""Inputs a user gets wrong at the edges: each is one line, exit 2, and nothing written.

Found by a break-it pass over ``onnx``, ``engine`` and the loaders; each test fails on the
code before its fix (a traceback, an overwritten file, or a misleading message).
"""

from __future__ import annotations

import shutil
import textwrap

import onnx
import pytest
import torch

from segexport.models.registry import build_model
from tests.conftest import TINY_WIDTH, assert_one_line_error


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    from segexport.exporter.export import ExportOptions, export_onnx

    out = tmp_path_factory.mktemp("hostile") / "u.onnx"
    return export_onnx(ExportOptions(model="unet", out=out, width=TINY_WIDTH, input_size=(32, 32), num_classes=3,
                                     verify=False)).path


def test_brackets_in_an_error_print_as_written(run_cli):
    """Error lines went through rich markup: '[bold]' vanished and '[/x]' crashed the CLI."""
    assert_one_line_error(run_cli("onnx", "--model", "unet[bold]"), "'unet[bold]'")
    assert_one_line_error(run_cli("lint", "x[/b].onnx"), "'x[/b].onnx' not found")


def test_an_engine_never_overwrites_an_onnx(small_onnx, run_cli, tmp_path):
    victim = tmp_path / "victim.onnx"
    shutil.copy(small_onnx, victim)
    before = victim.read_bytes()
    assert_one_line_error(run_cli("engine", victim, "--out", victim), "over an ONNX file")
    assert_one_line_error(run_cli("engine", victim, "--out", tmp_path / "other.onnx"), "name it .engine")
    assert_one_line_error(run_cli("engine", victim, "--out", tmp_path / "e.engine", "--timing-cache", victim),
                          "--timing-cache", "names the ONNX")
    assert_one_line_error(run_cli("engine", victim, "--out", tmp_path / "e.engine", "--timing-cache",
                                  tmp_path / "nodir" / "t.cache"), "choose another --timing-cache")
    assert_one_line_error(run_cli("engine", victim, "--out", tmp_path / "e.engine", "--timing-cache", tmp_path),
                          "is a directory")
    assert_one_line_error(run_cli("engine", victim, "--out", tmp_path / "e.engine", "--workspace", "-5"),
                          "--workspace must be >= 1")
    assert victim.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["victim.onnx"]


@pytest.mark.parametrize("args, fragment", [
    (("--dynamic", "batch", "--batch-range", "1:1"), "has one value"),
    (("--dynamic", "hw", "--hw-range", "32x32:32x64"), "height range 32..32 has one value"),
])
def test_a_dynamic_axis_with_one_value(run_cli, tmp_path, args, fragment):
    result = run_cli("onnx", "--model", "unet", "--width", TINY_WIDTH, "--input-size", "32", *args,
                     "--out", tmp_path / "u.onnx")
    assert_one_line_error(result, fragment)
    assert not list(tmp_path.iterdir())


USER = textwrap.dedent(
    """
    from torch import nn

    def raising(num_classes=2):
        raise RuntimeError("boom: no such backbone")

    def bad_spec(num_classes=2):
        m = nn.Conv2d(3, num_classes, 1)
        m.segexport_spec = SPEC
        return m

    def plain(num_classes=2, width=1.0):
        return nn.Conv2d(3, num_classes, 1)

    SPEC = {}
    """
)


@pytest.fixture
def user(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def write(spec: str = "{}"):
        (tmp_path / "hostilenet.py").write_text(USER.replace("SPEC = {}", f"SPEC = {spec}"))
    write()
    return write


def test_a_factory_that_raises_is_named(run_cli, user):
    result = run_cli("onnx", "--model", "hostilenet:raising", "--input-size", "16", "--out", "x.onnx")
    assert_one_line_error(result, "calling hostilenet:raising failed", "RuntimeError: boom: no such backbone")


@pytest.mark.parametrize("spec, fragment", [
    ('{"default_input_size": 64}', "default_input_size"),
    ('{"mean": (0.5,)}', "'mean'"),
    ('{"std": (0.2, 0.0, 0.2)}', "three positive numbers"),
    ('{"min_size": 0}', "an integer >= 1"),
    ('{"class_names": "cat"}', "a sequence of names"),
    ('{"class_names": ("cat", "dog\\nbird")}', "one printable line"),
])
def test_a_user_spec_that_would_poison_the_metadata(run_cli, user, spec, fragment):
    user(spec)
    # the file form: each test's file imports afresh (a module name would be cached in-process)
    result = run_cli("onnx", "--model", "hostilenet.py:bad_spec", "--input-size", "16", "--out", "x.onnx")
    assert_one_line_error(result, "segexport_spec", fragment)


def test_user_models_get_the_width_and_class_checks_too(run_cli, user):
    assert_one_line_error(run_cli("onnx", "--model", "hostilenet:plain", "--width", "-3", "--input-size", "16"),
                          "--width must be in (0, 4]")
    assert_one_line_error(run_cli("onnx", "--model", "hostilenet:plain", "--num-classes", "0", "--input-size", "16"),
                          "--num-classes must be >= 1")


def test_checkpoints_that_are_garbage_diverged_or_mixed(run_cli, tmp_path):
    args = ("onnx", "--model", "unet", "--width", TINY_WIDTH, "--input-size", "32", "--out", tmp_path / "x.onnx")
    (tmp_path / "garbage.pt").write_bytes(b"garbage")
    assert_one_line_error(run_cli(*args, "--weights", tmp_path / "garbage.pt"), "is not a PyTorch checkpoint",
                          "UnpicklingError")
    state = build_model("unet", width=TINY_WIDTH).state_dict()
    torch.save(state | {"epoch": 3}, tmp_path / "extra.pt")
    assert_one_line_error(run_cli(*args, "--weights", tmp_path / "extra.pt"), "non-tensor entries (epoch: int)")
    key = next(k for k, v in state.items() if v.is_floating_point())
    torch.save(state | {key: state[key] * float("nan")}, tmp_path / "nan.pt")
    assert_one_line_error(run_cli(*args, "--weights", tmp_path / "nan.pt"), "NaN/inf values in " + key)
    assert not (tmp_path / "x.onnx").exists()


def test_bad_calibration_input_is_refused_before_the_export(run_cli, tmp_path):
    base = ("onnx", "--model", "unet", "--width", TINY_WIDTH, "--input-size", "32", "--precision", "int8",
            "--out", tmp_path / "p.onnx")
    assert_one_line_error(run_cli(*base, "--calib-data", tmp_path / "nowhere"), "calibration data", "not found")
    assert_one_line_error(run_cli(*base, "--calib-count", "0"), "--calib-count must be >= 1")
    assert not list(tmp_path.iterdir())


def test_every_intermediate_shape_is_recorded_once(small_onnx):
    """onnxslim kept the exporter's value_info and shape inference appended its own: two entries
    per tensor, which at odd dynamic sizes contradicted each other."""
    names = [v.name for v in onnx.load(str(small_onnx)).graph.value_info]
    assert names and len(names) == len(set(names))


def test_data_dependent_control_flow_is_named_on_one_line(run_cli, tmp_path, monkeypatch):
    (tmp_path / "ddnet.py").write_text(textwrap.dedent(
        """
        from torch import nn

        class DataDep(nn.Module):
            def __init__(self):
                super().__init__()
                self.c = nn.Conv2d(3, 2, 1)

            def forward(self, x):
                y = self.c(x)
                if y.mean() > 0:
                    return y * 2
                return y

        def build(num_classes=2):
            return DataDep()
        """))
    monkeypatch.chdir(tmp_path)
    result = run_cli("onnx", "--model", "ddnet:build", "--num-classes", "2", "--input-size", "16", "--out", "d.onnx")
    assert_one_line_error(result, "branches on tensor values", "torch.where")
