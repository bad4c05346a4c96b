"""``segexport data``: datasets for calibration and accuracy checks."""

from __future__ import annotations

from pathlib import Path

import typer

from segexport.cli.common import console, parse_size

data_app = typer.Typer(help="Datasets for calibration and accuracy checks.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("synth")
def synth_command(
    out: Path = typer.Option(..., "--out", help="Directory to write images/, labels/ and manifest.json into."),
    count: int = typer.Option(64, "--count", help="Number of image/label pairs."),
    size: str = typer.Option("96x96", "--size", help="HxW of the images."),
    num_classes: int = typer.Option(21, "--num-classes", help="Classes including background (0)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same dataset (byte for byte)."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier synthetic set in --out (any other non-empty folder is still refused)."),
) -> None:
    """Write a deterministic synthetic segmentation set (shapes on textured backgrounds).

    Example:  segexport data synth --out synth --count 64 --num-classes 4
    """
    from rich.progress import Progress

    from segexport.data.synth import make_synthetic

    from segexport.errors import UserError

    hw = parse_size(size, "--size")
    if not force and out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {str(out)!r} is not empty: pass --force to replace an earlier synthetic set, "
                        "or give a new or empty directory")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("writing", total=count)
        make_synthetic(out, count, hw, num_classes, seed, progress=lambda i: progress.update(task, completed=i))
    console.print(f"[bold green]✓[/] wrote {count} images + labels to {out} ({hw[0]}x{hw[1]}, {num_classes} classes)")
