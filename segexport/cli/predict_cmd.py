"""``segexport predict``: label PNGs, overlays and a contact sheet from an ONNX, engine or DeepStream bundle."""

from __future__ import annotations

from pathlib import Path

import typer

from segexport.cli.common import console


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)


def predict_command(
    artefact: Path = typer.Argument(..., help="ONNX, TensorRT engine (where TensorRT runs), or a `segexport deploy deepstream` bundle folder."),
    images: Path = typer.Argument(..., help="An image or a folder of PNG/JPEG images (recursive)."),
    out: Path = typer.Option(..., "--out", "-o", help="New (or empty) folder for the PNGs."),
    alpha: float = typer.Option(0.5, "--alpha", help="Overlay opacity of the class colours (0..1)."),
) -> None:
    """Predict images and write what a person checks before shipping: <name>_labels.png (VOC
    palette), <name>_overlay.png and contact_sheet.png.

    An ONNX or engine gets the preprocessing recorded at export; a DeepStream bundle folder is run
    the way nvinfer feeds it (net-scale-factor, offsets, colour order, infer-dims from its config),
    which proves the bundle itself.

    Examples:

      segexport predict segnet.onnx photos/ --out preview

      # the DeepStream bundle, with nvinfer's preprocessing:
      segexport predict segnet-ds/ photos/ --out preview-ds
    """
    from segexport.core.files import require_inputs

    require_inputs([(artefact, "ARTEFACT", "artefact"), (images, "IMAGES", "images")])
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from segexport.deploy.predict import predict

    with Progress(TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("predict", total=None)
        result = predict(artefact, images, out, alpha=alpha,
                         progress=lambda done, total: bar.update(task, completed=done, total=total))
    top = sorted(result.class_fractions.items(), key=lambda kv: -kv[1])[:5]
    console.print(f"[bold green]✓[/] {result.images} image(s) via {result.source} -> [bold]{result.out}[/] "
                  f"(contact sheet: {result.contact_sheet})")
    console.print("  classes: " + ", ".join(f"{name} {share:.1%}" for name, share in top))
    if result.untrained:
        from segexport.models.registry import UNTRAINED

        console.print(f"[yellow]note:[/] {UNTRAINED}: this zoo model was never trained, so these classes and "
                      "pictures are meaningless; export with --weights (README, \"Five-minute walkthrough\")")
