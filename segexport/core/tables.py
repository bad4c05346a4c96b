"""Print a rich table so that every figure survives any width (one place for every command).

Why: rich fits a table to the console by cutting cells to ``44…``. A CI log or a pipe gets an
80-column console, so the figures a user came for were the first thing lost. On a terminal,
cells fold onto the next line instead of being cut; anywhere else the table is printed at its
natural width (a log has no right edge), so each figure stays on one line, whole.
"""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

_UNBOUNDED = 100_000


def natural_width(console: Console, table: Table) -> int:
    """Columns the table needs to show every cell on one line."""
    return Measurement.get(console, console.options.update_width(_UNBOUNDED), table).maximum


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` on ``console`` without ever cutting a cell to an ellipsis."""
    for column in table.columns:  # fold, never "…": a folded figure is still the whole figure
        column.no_wrap, column.overflow = False, "fold"
    need = natural_width(console, table)
    if console.is_terminal or need <= console.width:
        console.print(table)
        return
    saved = console.__dict__.get("_width")
    console.width = need  # a log or pipe has no right edge: a wide line beats a cut figure
    try:
        console.print(table)
    finally:
        console._width = saved
