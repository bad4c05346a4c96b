"""``segexport debug``: where a reduced model goes wrong, by PyTorch module."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from segexport.cli.common import console


def register(app: typer.Typer) -> None:
    app.command("debug")(debug_command)


def debug_command(
    reference: Path = typer.Argument(..., help="The fp32 ONNX from `segexport onnx`."),
    candidate: Path = typer.Argument(..., help="The reduced ONNX (fp16 or int8 Q/DQ) from `segexport calibrate`."),
    data: str = typer.Option("synthetic", "--data", help="Image folder, .npy/.npz, or 'synthetic' (held-out synthetic images)."),
    count: int = typer.Option(4, "--count", help="Inputs compared."),
    seed: int = typer.Option(0, "--seed"),
    frontier: int = typer.Option(8, "--frontier", help="Modules compared at once (memory: their outputs only)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write every measured module as JSON to this file."),
) -> None:
    """Find the first PyTorch module whose output CANDIDATE gets wrong, and what to do about it.

    Module outputs (in the PyTorch model's own dotted names, kept by the exporter) are compared
    between the two ONNX graphs in ONNX Runtime: a frontier of modules at a time, then bisection,
    so memory stays bounded on big models. A module has diverged when its output's relative L2
    error passes the precision's noise (fp16 1e-2, int8 0.2; a mask: 1e-3 / 1 % of elements
    flipped). The first diverging module's reduced output is then put into the fp32 graph alone,
    to show what it does to the final labels. Exit 1 when a module diverges.

    Examples:

      segexport debug segnet.onnx segnet.int8.onnx

      segexport debug unet.onnx unet.fp16.onnx --data images/ --count 8 --json where.json
    """
    from segexport.api import debug
    from segexport.errors import CheckFailed

    if json_out is not None:
        from segexport.cli.common import check_output_path

        check_output_path(json_out, "--json")
    with console.status("comparing module outputs", spinner="dots") as status:
        found = debug(reference=reference, candidate=candidate, data=data, count=count, seed=seed, frontier=frontier,
                      progress=lambda message, *_a, **_k: status.update(message))
    _print(found)
    if json_out is not None:
        from segexport.cli.common import write_json

        write_json(json_out, found.to_dict())
    if found.first is not None:
        raise CheckFailed(f"{found.first.module} is the first module whose {found.precision} output diverges "
                          f"({found.first.kind} {found.first.error:.3g}); try: {found.fix}")


def _print(found) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{Path(found.candidate).name} vs {Path(found.reference).name}: {len(found.measured)} of "
                        f"{found.modules} modules measured on {found.inputs}")
    for col in ("module", "ops", "error", "verdict", "labels it alone changes"):
        table.add_column(col, overflow="fold")
    for m in found.measured:
        alone = "-" if m.label_agreement is None else f"{100 * (1 - m.label_agreement):.2f} %"
        verdict = "[bold red]diverged[/]" if m.diverged else "within noise"
        table.add_row(escape(m.module), escape(", ".join(m.ops)), f"{m.kind} {m.error:.3g}", verdict, alone)
    from segexport.cli.common import print_table

    print_table(console, table)
    console.print(f"  whole {found.precision} model: {100 * found.final_agreement:.2f} % label agreement with fp32")
    if found.first is None:
        console.print(f"[bold green]✓[/] no module's output leaves {found.precision}'s noise")
    else:
        console.print(f"[bold red]✗[/] first diverging module: [bold]{escape(found.first.module)}[/]")
        console.print(f"  try: {escape(found.fix)}")
