"""Shared fixtures: an in-process CLI runner and small-width model settings."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


TINY_WIDTH = 0.0625  # the real architectures at 1/16 of their channels


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli():
    """Invoke ``segexport ARGS`` in-process; returns exit code, stdout, stderr."""
    from typer.testing import CliRunner

    from segexport.cli import app

    def run(*args: str) -> CliResult:
        result = CliRunner().invoke(app, [str(a) for a in args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


def assert_one_line_error(result: CliResult, *fragments: str, code: int = 2) -> None:
    """A user-facing failure: the exit code, one line on stderr, the fragments in it."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def require_tensorrt_rtx() -> None:
    """Skip locally without tensorrt-rtx (with how to get it); in CI its absence is a failure.

    CI installs the [rtx] extra so NVIDIA's real parser and builder check every export;
    a skip there would turn a missing install into a green run.
    """
    import os

    try:
        import tensorrt_rtx  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("tensorrt-rtx must be installed in CI (pip install -e '.[rtx]')")
        pytest.skip("tensorrt_rtx not installed: pip install tensorrt-rtx to run NVIDIA's parser and builder")


def assert_labels_meet_contract(agreement: float, checks: list, held_to_floor: bool, floor_agreement: float | None,
                                strict_limit: float) -> None:
    """Label agreement judged the way segexport judges it, not against a hard-coded number.

    A stable reference must meet the strict threshold. An untrained SegNet/DeconvNet unpools by
    max position, and near-ties make PyTorch disagree with *itself* under float32 jitter (with
    current torch/onnxruntime a tiny SegNet agrees on 99.986 %, below the strict 99.99 %): then,
    and only then, the check is held to the measured floor, at most half a point below it. Either
    way the check must have passed with the value the metrics report.
    """
    from segexport.checks.noise_floor import SLACK_AGREEMENT

    check = next(c for c in checks if (c["name"] if isinstance(c, dict) else c.name) == "pixel_agreement")
    get = (lambda k: check[k]) if isinstance(check, dict) else (lambda k: getattr(check, k))
    assert get("passed") and get("value") == agreement >= get("limit"), check
    if not held_to_floor:
        assert get("limit") == strict_limit, check
        return
    assert floor_agreement is not None and floor_agreement < 1.0, "held to a floor that was not unstable"
    assert get("limit") == min(strict_limit, floor_agreement - SLACK_AGREEMENT), check
    assert agreement >= floor_agreement - SLACK_AGREEMENT
