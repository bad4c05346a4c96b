"""A long step is never silence: off a terminal one line a stage (a CI log, a pipe), on a terminal
a spinner that follows the stage. The slow steps here are fakes that report their stages."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from segexport.cli.common import Stages
from segexport.errors import UserError
from tests.conftest import assert_one_line_error

EXPORT_STAGES = ["loading model", "exporting unet to ONNX", "verifying ONNX Runtime against PyTorch"]


def _stage_lines(stdout: str) -> list[str]:
    return [ln.removeprefix("… ").rsplit(" (", 1)[0] for ln in stdout.splitlines() if ln.startswith("… ")]


def test_onnx_says_each_stage_of_a_slow_export_in_a_log(run_cli, monkeypatch):
    import segexport.api as api

    def slow_export(progress, **_kw):
        for stage in EXPORT_STAGES:
            progress(stage)
            progress(stage)  # said twice, printed once
        raise UserError("the fake export stops here")

    monkeypatch.setattr(api, "export", slow_export)
    result = run_cli("onnx", "--model", "unet", "--out", "never.onnx")
    assert_one_line_error(result, "the fake export stops here")  # stderr keeps its one line
    assert _stage_lines(result.stdout) == EXPORT_STAGES, result.stdout


def test_bench_and_parity_say_their_stages(run_cli, monkeypatch, tmp_path):
    import segexport.api as api
    import segexport.checks.bench as bench

    def slow_bench(opts, progress=None):
        for name in ("torch", "ort-cpu"):
            progress(f"timing {name} batch 1")
        return SimpleNamespace(stats=[], skipped={}, input_size=(32, 32))

    monkeypatch.setattr(bench, "run_bench", slow_bench)
    result = run_cli("bench", "--model", "unet")
    assert result.exit_code == 0, result.stderr
    assert _stage_lines(result.stdout) == ["timing torch batch 1", "timing ort-cpu batch 1"]

    def slow_parity(progress, **_kw):
        progress("running the PyTorch reference")
        progress("running ort-cpu")
        raise UserError("the fake parity stops here")

    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")  # only has to exist: the fake never reads it
    monkeypatch.setattr(api, "parity", slow_parity)
    result = run_cli("parity", "--onnx", onnx)
    assert_one_line_error(result, "the fake parity stops here")
    assert _stage_lines(result.stdout) == ["running the PyTorch reference", "running ort-cpu"]


def test_a_terminal_gets_a_spinner_not_lines():
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=80)
    with Stages("exporting", terminal) as stages:
        stages.update("loading model")
        assert stages._status is not None
    assert "… loading model (" not in out.getvalue()
    log = Console(file=io.StringIO(), force_terminal=False, width=80)
    with Stages("exporting", log) as stages:
        stages.update("loading model")
    assert "… loading model (" in log.file.getvalue()
