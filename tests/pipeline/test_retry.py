"""A CI job is cancelled (SIGTERM), interrupted (SIGINT) or killed (SIGKILL) mid-run, then retried
into the same --out: real signals to a real `segexport pipeline run` subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[defaults]
parity_count = 1
bench_backends = []
engine = "off"

[[models]]
name = "first"
model = "unet"
width = 0.0625
num_classes = 3
input_size = "32x32"

[[models]]
name = "second"
model = "fcn8s"
width = 0.0625
num_classes = 3
input_size = "32x32"
"""


def _run(tmp: Path, *, stop_with: int | None = None) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp / "tmp")}
    env.pop("GITHUB_STEP_SUMMARY", None)
    proc = subprocess.Popen([sys.executable, "-m", "segexport", "pipeline", "run", "cfg.toml", "--out", "dist",
                             "--cache-dir", "cache"], cwd=tmp, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if stop_with is not None and "first fp32 export" in line:  # one step finished and cached
            proc.send_signal(stop_with)
            break
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, "".join(lines) + out


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGKILL, -9)])
def test_an_interrupted_run_never_blocks_its_retry(tmp_path, sig, code):
    (tmp_path / "tmp").mkdir()
    (tmp_path / "cfg.toml").write_text(CONFIG)
    rc, log = _run(tmp_path, stop_with=sig)
    assert rc == code, log
    assert not (tmp_path / "dist").exists(), log  # --out is written whole at the end, or not at all
    if sig != signal.SIGKILL:
        assert "interrupted" in log and "Traceback" not in log
        assert not [p for p in os.listdir(tmp_path) if p.startswith(".dist")]  # staging removed
    rc, log = _run(tmp_path)
    assert rc == 0, log
    doc = json.loads((tmp_path / "dist" / "manifest.json").read_text())
    assert doc["runs"][0]["steps"]["first fp32/export"]["status"] == "cached"  # the finished step is reused
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".dist")]  # a killed run's staging swept


def test_an_interrupt_a_library_swallowed_stops_the_run(tiny_copy, run_cli, monkeypatch):
    """torch turns a Ctrl-C inside a lazy import into an ordinary exception (the export then 'fails'
    with "try another opset"): the signal handler recorded it, so the run stops with exit 130 and
    records no step failure, writes no --out and caches nothing."""
    from segexport.core import interrupts
    from segexport.pipeline import steps

    tmp, config, cache = tiny_copy
    real_export = steps.export

    def export(*_a, **_k):
        interrupts.note(signal.SIGINT)  # what the handler does before the library swallows the exception
        raise RuntimeError("Failed to export the model: try another opset=...")

    monkeypatch.setattr(steps, "export", export)
    result = run_cli("pipeline", "run", config, "--out", tmp / "out", "--no-cache")
    assert result.exit_code == 130, result.stdout + result.stderr
    assert "interrupted" in result.stderr and "opset" not in result.stdout + result.stderr
    assert not (tmp / "out").exists()

    def lint(*_a, **_k):  # a SIGTERM swallowed by a step that then returns a failure
        interrupts.note(signal.SIGTERM)
        return steps.Outcome("fail", message="swallowed")

    monkeypatch.setattr(steps, "export", real_export)
    monkeypatch.setattr(steps, "lint", lint)
    result = run_cli("pipeline", "run", config, "--out", tmp / "out", "--no-cache", "--only", "unet-t:fp32")
    assert result.exit_code == 143, result.stdout + result.stderr
    assert not (tmp / "out").exists()


def test_sigterm_outside_a_command_exits_143_not_130(monkeypatch):
    """Typer turns any KeyboardInterrupt outside a command (start-up, option parsing) into exit 130,
    SIGTERM's Terminated included; the entry point reports the signal that arrived."""
    import segexport.cli as cli
    from segexport.core import interrupts

    def app():
        try:
            interrupts._handler(signal.SIGTERM, None)
        except KeyboardInterrupt:
            raise SystemExit(130) from None  # what typer's main does with it

    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setattr(cli, "_prepare_process", lambda: None)
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 143
    interrupts.clear()
