"""``segexport models [NAME]``: the zoo as a table, one entry in detail, or JSON."""

from __future__ import annotations

import json
from typing import Optional

import typer

from segexport.cli.common import console


def register(app: typer.Typer) -> None:
    app.command("models")(models_command)


def _entry(spec, stats) -> dict:
    return {
        "name": spec.name,
        "family": spec.family,
        "params": stats.params,
        "paper_params": spec.paper_params,
        "gflops": None if stats.gflops is None else round(stats.gflops, 2),
        "default_input_size": list(spec.default_input_size),
        "output_stride": spec.output_stride,
        "min_size": spec.min_size,
        "num_classes": spec.num_classes,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "paper": spec.paper,
        "description": spec.description,
        "notes": list(spec.notes),
        "class_names": list(spec.class_names),
    }


def models_command(
    name: Optional[str] = typer.Argument(None, help="Show one model in detail (e.g. deeplabv1)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines instead of a table."),
    no_flops: bool = typer.Option(False, "--no-flops", help="Skip the GFLOPs measurement (faster)."),
) -> None:
    """List the model zoo: params, GFLOPs at the default input size, output stride, minimum input size.

    GFLOPs are measured with torch.utils.flop_counter on the meta device (no weights are
    allocated); params are at 21 classes (VOC), full width.
    """
    from segexport.models.info import model_stats
    from segexport.models.registry import get_spec, list_models

    specs = [get_spec(name)] if name else list_models()
    rows = [_entry(s, model_stats(s, flops=not no_flops)) for s in specs]
    if as_json:
        print(json.dumps(rows[0] if name else rows, indent=2))
        return
    if name:
        _show_one(rows[0])
        return
    from rich.table import Table

    from rich import box

    table = Table(title="segexport model zoo (21 classes, full width)", title_justify="left", box=box.SIMPLE_HEAD)
    for col, kw in (("name", {"style": "bold cyan", "no_wrap": True}), ("params", {"justify": "right"}),
                    ("paper", {"justify": "right"}), ("GFLOPs", {"justify": "right"}), ("input", {"justify": "right"}),
                    ("stride", {"justify": "right"}), ("min", {"justify": "right"})):
        table.add_column(col, **kw)
    for r in rows:
        table.add_row(
            r["name"], f"{r['params'] / 1e6:.2f}M",
            "-" if r["paper_params"] is None else f"{r['paper_params'] / 1e6:.1f}M",
            "?" if r["gflops"] is None else f"{r['gflops']:.1f}",
            "x".join(map(str, r["default_input_size"])), str(r["output_stride"]), str(r["min_size"]),
        )
    console.print(table)
    console.print("Details: [bold]segexport models NAME[/]   Export: [bold]segexport onnx --model NAME[/]")


def _show_one(r: dict) -> None:
    from rich.panel import Panel

    lines = [
        f"[bold]family[/]        {r['family']}",
        f"[bold]paper[/]         {r['paper']}",
        f"[bold]params[/]        {r['params']:,}" + (f"  (paper: {r['paper_params']:,})" if r["paper_params"] else ""),
        f"[bold]GFLOPs[/]        {'?' if r['gflops'] is None else r['gflops']} at {'x'.join(map(str, r['default_input_size']))}",
        f"[bold]output stride[/] {r['output_stride']}",
        f"[bold]min size[/]      {r['min_size']}",
        f"[bold]mean / std[/]    {r['mean']} / {r['std']}",
        f"[bold]classes[/]       {r['num_classes']}: {', '.join(r['class_names'])}",
    ]
    if r["description"]:
        lines.append(f"\n{r['description']}")
    for note in r["notes"]:
        lines.append(f"- {note}")
    console.print(Panel("\n".join(lines), title=r["name"], title_align="left"))
