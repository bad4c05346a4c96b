"""``segexport onnx`` through the CLI: the happy path and every bad input."""

from __future__ import annotations

import os
import textwrap

import onnx
import pytest
import torch

from tests.conftest import TINY_WIDTH, assert_one_line_error


def test_onnx_cli_writes_verified_export(run_cli, tmp_path):
    out = tmp_path / "d.onnx"
    result = run_cli("onnx", "--model", "deeplabv1", "--width", TINY_WIDTH, "--input-size", "33x47", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert out.exists() and "pixel agreement" in result.stdout and "pass" in result.stdout
    onnx.checker.check_model(str(out))
    assert [p.name for p in tmp_path.iterdir()] == ["d.onnx"]  # no temp files left


def test_out_directory_missing(run_cli, tmp_path):
    result = run_cli("onnx", "--model", "unet", "--width", TINY_WIDTH, "--input-size", "32", "--out", tmp_path / "no" / "u.onnx")
    assert_one_line_error(result, "does not exist", "--out")


def test_out_is_a_directory(run_cli, tmp_path):
    (tmp_path / "d.onnx").mkdir()
    result = run_cli("onnx", "--model", "unet", "--width", TINY_WIDTH, "--input-size", "32", "--out", tmp_path / "d.onnx")
    assert_one_line_error(result, "is a directory")


def test_out_not_writable(run_cli, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    # root ignores directory permissions; /proc refuses new files even for root
    target = ro if not os.access(ro, os.W_OK) else __import__("pathlib").Path("/proc")
    try:
        result = run_cli("onnx", "--model", "unet", "--width", TINY_WIDTH, "--input-size", "32", "--out", target / "u.onnx")
        assert_one_line_error(result, "not writable")
    finally:
        ro.chmod(0o700)


def test_inverted_dynamic_range(run_cli, tmp_path):
    result = run_cli("onnx", "--model", "unet", "--width", TINY_WIDTH, "--input-size", "64x64", "--dynamic", "hw",
                     "--hw-range", "128x128:32x32", "--out", tmp_path / "u.onnx")
    assert_one_line_error(result, "inverted", "--hw-range")
    assert not list(tmp_path.iterdir())


def test_bad_size_and_dynamic_values(run_cli, tmp_path):
    assert_one_line_error(run_cli("onnx", "--input-size", "big", "--out", tmp_path / "a.onnx"), "is not a size")
    assert_one_line_error(run_cli("onnx", "--dynamic", "depth", "--out", tmp_path / "a.onnx"), "--dynamic")
    assert_one_line_error(run_cli("onnx", "--opset", "11", "--out", tmp_path / "a.onnx"), "--opset 11")


def test_exporter_failure_names_op_and_module(run_cli, tmp_path, monkeypatch):
    (tmp_path / "badnet.py").write_text(textwrap.dedent(
        """
        import torch
        from torch import nn

        class Picky(nn.Module):
            def forward(self, x):
                k = torch.kthvalue(x.flatten(), 3).values   # no ONNX translation exists
                return x * k

        class Net(nn.Module):
            def __init__(self, num_classes=2):
                super().__init__()
                self.stem = nn.Conv2d(3, num_classes, 1)
                self.picky = Picky()

            def forward(self, x):
                return self.picky(self.stem(x))

        def build(num_classes=2):
            return Net(num_classes)
        """))
    monkeypatch.chdir(tmp_path)
    result = run_cli("onnx", "--model", "badnet:build", "--input-size", "16", "--num-classes", "2", "--out", "bad.onnx")
    assert_one_line_error(result, "ONNX export failed", "picky")
    assert not (tmp_path / "bad.onnx").exists()


def test_a_wrong_graph_fails_verification_even_after_the_noise_floor_check(tmp_path):
    """The noise-floor fallback only applies when PyTorch disagrees with itself; a stable
    model with a corrupted graph must still fail the strict contract."""
    import numpy as np
    from onnx import numpy_helper

    from segexport.exporter.export import ExportOptions, export_onnx, verify_export
    from segexport.exporter.metadata import read_record
    from segexport.models.loading import load_model

    result = export_onnx(ExportOptions(model="deeplabv1", out=tmp_path / "d.onnx", width=TINY_WIDTH,
                                       input_size=(33, 33), verify=False))
    model = onnx.load(str(result.path))
    weights = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    arr = numpy_helper.to_array(weights)
    weights.CopyFrom(numpy_helper.from_array((arr * 1.01).astype(arr.dtype), weights.name))  # a 1 % error
    onnx.save(model, tmp_path / "bad.onnx")
    rows = verify_export(load_model("deeplabv1", width=TINY_WIDTH).model, tmp_path / "bad.onnx", read_record(result.path))
    assert not rows[0].passed
    assert rows[0].noise_floor is not None and rows[0].noise_floor.pixel_agreement >= 0.9999  # stable reference


class _TieFlipping(torch.nn.Module):
    """A reference as chaotic as untrained SegNet at float32, made deterministic: one logit,
    picked by a hash of the input's bits, jumps by max|logit| -- the way a near-tied unpool
    window sends its value elsewhere under last-bit changes. Any other input (a jitter, or the
    runtime's own rounding) moves a *different* single value."""

    def __init__(self, base: torch.nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, x):
        import zlib

        out = self.base(x)
        flat = out.flatten().clone()
        flat[zlib.crc32(x.numpy().tobytes()) % flat.numel()] += out.abs().max()
        return flat.view_as(out)


@pytest.fixture(scope="module")
def tiny_deeplab_onnx(tmp_path_factory):
    from segexport.exporter.export import ExportOptions, export_onnx

    path = tmp_path_factory.mktemp("tie") / "d.onnx"
    return export_onnx(ExportOptions(model="deeplabv1", out=path, width=TINY_WIDTH, input_size=(33, 33), verify=False)).path


def test_tie_flips_of_an_unstable_reference_are_held_to_its_noise_floor(tiny_deeplab_onnx):
    from segexport.exporter.export import verify_export
    from segexport.exporter.metadata import read_record
    from segexport.models.loading import load_model

    base = load_model("deeplabv1", width=TINY_WIDTH).model.eval()
    rows = verify_export(_TieFlipping(base), tiny_deeplab_onnx, read_record(tiny_deeplab_onnx))
    row = rows[0]
    assert row.metrics.max_abs > 1e-4 * row.metrics.ref_max_abs  # the strict max-abs alone would fail
    assert row.noise_floor is not None and row.noise_floor.max_abs > 0.5 * row.noise_floor.ref_max_abs
    assert row.passed, [c.message for c in row.checks if not c.passed]
    assert row.held_to_floor
    names = {c.name for c in row.checks}
    assert "abs_p99" in names and "max_abs" not in names  # the bulk is gated; the maximum is reported


def test_the_export_summary_says_when_it_was_held_to_the_floor(tiny_deeplab_onnx, monkeypatch):
    from types import SimpleNamespace

    from rich.console import Console

    import segexport.cli.onnx_cmd as onnx_cmd
    from segexport.exporter.export import verify_export
    from segexport.exporter.metadata import read_record
    from segexport.models.loading import load_model

    record = read_record(tiny_deeplab_onnx)
    base = load_model("deeplabv1", width=TINY_WIDTH).model.eval()
    shown = {}
    for label, model in (("unstable", _TieFlipping(base)), ("stable", base)):
        recorder = Console(record=True, width=400)
        monkeypatch.setattr(onnx_cmd, "console", recorder)
        rows = verify_export(model, tiny_deeplab_onnx, record)
        onnx_cmd._print_result(SimpleNamespace(record=record, path=tiny_deeplab_onnx, onnx_ops={"Conv": 1}, lint=None,
                                               verify=rows, seconds={"verify": 1.0}))
        shown[label] = recorder.export_text()
    assert "held to that noise floor" in shown["unstable"] and "reported, not gated" in shown["unstable"]
    assert "note:" not in shown["stable"] and "pass" in shown["stable"]  # a stable reference: no floor measured


def test_the_noise_floor_does_not_hide_a_wrong_weight(tiny_deeplab_onnx, tmp_path):
    """An unstable reference relaxes max-abs only: a 1 % weight error moves every value, and the
    99th percentile of |diff| still has to meet the strict bound."""
    import numpy as np
    from onnx import numpy_helper

    from segexport.exporter.export import verify_export
    from segexport.exporter.metadata import read_record
    from segexport.models.loading import load_model

    model = onnx.load(str(tiny_deeplab_onnx))
    weights = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    arr = numpy_helper.to_array(weights)
    weights.CopyFrom(numpy_helper.from_array((arr * 1.01).astype(arr.dtype), weights.name))
    onnx.save(model, tmp_path / "bad.onnx")
    base = load_model("deeplabv1", width=TINY_WIDTH).model.eval()
    row = verify_export(_TieFlipping(base), tmp_path / "bad.onnx", read_record(tiny_deeplab_onnx))[0]
    assert row.noise_floor is not None and not row.passed
    assert [c.name for c in row.checks if not c.passed] == ["abs_p99"]


def test_onnx_precision_writes_the_reduced_model_too(run_cli, tmp_path):
    out = tmp_path / "u.onnx"
    result = run_cli("onnx", "--model", "unet", "--width", TINY_WIDTH, "--input-size", "32", "--out", out,
                     "--precision", "int8", "--calib-count", "2")
    assert result.exit_code == 0, result.stderr
    from segexport.exporter.metadata import read_record

    assert read_record(out).precision == "fp32" and read_record(tmp_path / "u.int8.onnx").precision == "int8"
    assert_one_line_error(run_cli("onnx", "--precision", "int4", "--out", tmp_path / "x.onnx"), "--precision")
