"""Tables stay complete at any width: a CI log or a pipe (80 columns, not a terminal) gets every
figure whole, and a narrow terminal folds cells instead of cutting them to ``44…``."""

from __future__ import annotations

from types import SimpleNamespace

from rich.console import Console
from rich.table import Table

from segexport.core.tables import print_table

CELLS = [f"{12345.678 + i:.3f}" for i in range(12)]


def _wide_table() -> Table:
    table = Table(title="wide")
    for i in range(len(CELLS)):
        table.add_column(f"column {i}", justify="right", no_wrap=True)
    table.add_row(*CELLS)
    return table


def test_a_log_gets_every_cell_whole_at_80_columns():
    console = Console(record=True, width=80, force_terminal=False)
    print_table(console, _wide_table())
    text = console.export_text()
    assert "…" not in text
    for cell in CELLS:
        assert cell in text, (cell, text)
    assert console.width == 80  # the console is left as it was


def test_a_narrow_terminal_folds_instead_of_cutting():
    console = Console(record=True, width=80, force_terminal=True)
    print_table(console, _wide_table())
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    digits = "".join(ch for ch in text if ch.isdigit() or ch == ".")
    assert all(cell.replace(".", "")[:3] in digits.replace(".", "") for cell in CELLS)


def _stat(backend: str, batch: int, scale: float, ranked: bool | None = None) -> SimpleNamespace:
    return SimpleNamespace(backend=backend, batch=batch, mean_ms=1234.5 * scale, p50_ms=2345.6 * scale,
                           p90_ms=3456.7 * scale, p99_ms=4567.8 * scale, throughput=0.123 * scale,
                           speedup_vs_torch=12.34, speedup_baseline="torch-cuda-channels-last",
                           speedup_vs_best_torch=0.89, peak_memory_mb=123456.0, memory_kind="cuda-allocated",
                           best_torch="torch-cuda-channels-last", compile_s=None, trials=5,
                           trial_p10_ms=2111.1 * scale, trial_p90_ms=2999.9 * scale, spread=0.378,
                           speedup_ranked=ranked, vs_best_ranked=ranked)


def test_bench_piped_at_80_columns_shows_every_figure(run_cli, monkeypatch):
    """The table the issue found as ``44…``: the command's output, captured (not a terminal)."""
    import segexport.checks.bench as bench

    stats = [_stat("torch-cuda-channels-last", 16, 1.0), _stat("ort-trt", 128, 3.0, ranked=False)]
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(bench, "run_bench", lambda opts, progress=None: SimpleNamespace(
        stats=stats, skipped={}, input_size=(512, 512)))
    result = run_cli("bench", "--model", "unet")
    assert result.exit_code == 0, result.stderr
    assert "…" not in result.stdout
    for figure in ("torch-cuda-channels-last", "ort-trt", "1234", "2346", "3457", "4568", "3704", "7037", "10370",
                   "13703", "0.12", "0.37", "12.34x vs torch-cuda-channels-last", "0.89x", "123456",
                   "2111-3000", "6333-9000", "38%", "~12.34x vs torch-cuda-channels-last", "~0.89x"):
        assert figure in result.stdout, (figure, result.stdout)
    # the spread warning is one whole line too, however long: a pipe has no right edge
    warning = next(line for line in result.stdout.splitlines() if line.startswith("warning:"))
    assert "cannot rank ort-trt vs torch-cuda-channels-last (batch 128)" in warning, warning
    assert "ort-trt b128 38%" in warning and warning.rstrip().endswith("more --iterations"), warning


def test_models_piped_at_80_columns_is_complete(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = run_cli("models", "--no-flops", "--width", "0.125")
    assert result.exit_code == 0, result.stderr
    assert "…" not in result.stdout and "fcdensenet103" in result.stdout and "dilatednet-context" in result.stdout
