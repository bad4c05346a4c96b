"""``segexport models [NAME]``: the zoo as a table, one entry in detail, or JSON."""

from __future__ import annotations

from typing import List, Optional

import typer

from segexport.cli.common import console, parse_model_args, print_table


def register(app: typer.Typer) -> None:
    app.command("models")(models_command)


def _entry(spec, stats, width: float, num_classes: int) -> dict:
    return {
        "name": spec.name,
        "family": spec.family,
        "width": width,
        "params": stats.params,
        "paper_params": spec.paper_params,
        "gflops": None if stats.gflops is None else round(stats.gflops, 2),
        "default_input_size": list(spec.default_input_size),
        "output_stride": spec.output_stride,
        "min_size": spec.min_size,
        "num_classes": num_classes,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "paper": spec.paper,
        "description": spec.description,
        "notes": list(spec.notes),
        "class_names": list(spec.class_names_for(num_classes)),
    }


def _user_entry(ref: str, num_classes: int, width: float, model_args: dict, *, flops: bool) -> dict:
    from segexport.models.info import user_model_stats

    spec, stats, classes = user_model_stats(ref, num_classes=num_classes, width=width, model_args=model_args,
                                            flops=flops)
    return _entry(spec, stats, width, classes)


def models_command(
    name: Optional[str] = typer.Argument(None, help="Show one model in detail: a zoo name (e.g. deeplabv1) or your "
                                                    "own package.module:factory / path/to/file.py:factory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines instead of a table."),
    no_flops: bool = typer.Option(False, "--no-flops", help="Skip the GFLOPs measurement (faster)."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", help="Classes the counts are taken at (default: 21 for the zoo, a user factory's own)."),
    width: float = typer.Option(1.0, "--width", help="Channel width multiplier (1.0 = the paper's network)."),
    model_arg: Optional[List[str]] = typer.Option(None, "--model-arg", help="key=value passed to the model factory (repeatable)."),
) -> None:
    """List the model zoo: params, GFLOPs at the default input size, output stride, minimum input size.

    GFLOPs are measured with torch.utils.flop_counter on the meta device (no weights are
    allocated). A user model (package.module:factory) is built for real, counted the same way
    on the CPU, and run once to check what segexport needs of it: N x 3 x H x W in, N x classes
    x H x W logits out.

    Examples:

      segexport models

      segexport models unet --width 0.125 --json

      segexport models mypkg.nets:build --num-classes 2 --model-arg depth=4
    """
    from segexport.models.registry import ZOO_NUM_CLASSES, check_model_request, get_spec, is_zoo_name, list_models

    check_model_request(name, num_classes, width)  # before torch: a typo is answered at once
    args = parse_model_args(model_arg)
    if name is not None and not is_zoo_name(name):
        rows = [_user_entry(name, num_classes, width, args, flops=not no_flops)]
    else:
        from segexport.models.info import model_stats

        num_classes = ZOO_NUM_CLASSES if num_classes is None else num_classes
        specs = [get_spec(name)] if name else list_models()
        rows = [_entry(s, model_stats(s, num_classes=num_classes, width=width, flops=not no_flops, model_args=args),
                       width, num_classes) for s in specs]
    if as_json:
        from segexport.core.jsonio import dumps

        print(dumps(rows[0] if name else rows, indent=2))
        return
    if name:
        _show_one(rows[0], zoo=is_zoo_name(name))
        return
    from rich.table import Table

    from rich import box

    size = "full width" if width == 1.0 else f"width {width:g}"
    table = Table(title=f"segexport model zoo ({num_classes} classes, {size})", title_justify="left", box=box.SIMPLE_HEAD)
    for col, kw in (("name", {"style": "bold cyan", "no_wrap": True}), ("params", {"justify": "right"}),
                    ("paper", {"justify": "right"}), ("GFLOPs", {"justify": "right"}), ("input", {"justify": "right"}),
                    ("stride", {"justify": "right"}), ("min", {"justify": "right"})):
        table.add_column(col, **kw)
    for r in rows:
        table.add_row(
            r["name"], f"{r['params'] / 1e6:.2f}M",
            "-" if r["paper_params"] is None or r["width"] != 1.0 else f"{r['paper_params'] / 1e6:.1f}M",
            "?" if r["gflops"] is None else f"{r['gflops']:.1f}",
            "x".join(map(str, r["default_input_size"])), str(r["output_stride"]), str(r["min_size"]),
        )
    print_table(console, table)
    console.print("Details: [bold]segexport models NAME[/]   Export: [bold]segexport onnx --model NAME[/]")
    from segexport.models.registry import UNTRAINED

    console.print(f"[yellow]note:[/] the zoo ships no weights: every model is built with {UNTRAINED}; "
                  "export with --weights for real labels")


def _show_one(r: dict, zoo: bool) -> None:
    from rich.panel import Panel

    lines = [
        f"[bold]family[/]        {r['family']}",
        f"[bold]paper[/]         {r['paper']}",
        f"[bold]params[/]        {r['params']:,}" + (f"  (paper: {r['paper_params']:,})" if r["paper_params"] and r["width"] == 1.0 else "")
        + (f"  at width {r['width']:g}" if r["width"] != 1.0 else ""),
        f"[bold]GFLOPs[/]        {'?' if r['gflops'] is None else r['gflops']} at {'x'.join(map(str, r['default_input_size']))}",
        f"[bold]output stride[/] {r['output_stride']}",
        f"[bold]min size[/]      {r['min_size']}",
        f"[bold]mean / std[/]    {r['mean']} / {r['std']}",
        f"[bold]classes[/]       {r['num_classes']}: {', '.join(r['class_names'])}",
    ]
    if r["description"]:
        lines.append(f"\n{r['description']}")
    if zoo:  # a user factory may load its own weights; the zoo has none
        from segexport.models.registry import UNTRAINED

        lines.append(f"[yellow]weights[/]       none shipped: built with {UNTRAINED}")
    for note in r["notes"]:
        lines.append(f"- {note}")
    console.print(Panel("\n".join(lines), title=r["name"], title_align="left"))
