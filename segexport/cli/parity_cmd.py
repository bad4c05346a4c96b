"""``segexport parity``: does the export give the same segmentation as PyTorch?"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from segexport.cli.common import Stages, console
from segexport.errors import UserError


def register(app: typer.Typer) -> None:
    app.command("parity")(parity_command)


def parse_thresholds(pairs: list[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise UserError(f"--threshold {pair!r} must be name=number, e.g. min_pixel_agreement=0.999") from None
        if not sep:
            raise UserError(f"--threshold {pair!r} must be name=number")
    return out


def parity_command(
    onnx: Path = typer.Option(..., "--onnx", help="The exported ONNX (its metadata names the model, classes, preprocessing)."),
    model: Optional[str] = typer.Option(None, "--model", help="Override the model recorded in the ONNX (zoo name or module:factory)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="The checkpoint the ONNX was exported from (default: the path recorded at export, used when the file there has the recorded SHA-256)."),
    engine: Optional[Path] = typer.Option(None, "--engine", help="Also compare a TensorRT engine (needs tensorrt and a GPU)."),
    backends: str = typer.Option("ort-cpu", "--backends", help="Comma-separated candidates: ort-cpu, ort-cuda, ort-trt, trt."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of PNG/JPEG images (default: seeded random tensors)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Folder of label PNGs (same stems as the images; 255 = ignore) for mIoU."),
    count: int = typer.Option(4, "--count", help="Number of inputs (random tensors or sampled images)."),
    seed: int = typer.Option(0, "--seed"),
    threshold: Optional[List[str]] = typer.Option(None, "--threshold", help="Override a threshold: min_pixel_agreement, max_abs_rel, abs_quantile (1.0 = true max, 0.99 default), min_boundary_agreement, max_miou_drop (repeatable)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write a JUnit XML report (one testcase per check) for CI."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write a Markdown table."),
    save_diff: Optional[Path] = typer.Option(None, "--save-diff", help="Write PNGs: reference labels, candidate labels, disagreement overlay."),
    trust_model_code: bool = typer.Option(False, "--trust-model-code", help="Let a module:factory recorded in the ONNX's metadata be imported and run (off: only zoo names are read from a file)."),
    force: bool = typer.Option(False, "--force", help="Replace --json / --junit / --markdown files that already exist."),
) -> None:
    """Compare every backend with PyTorch eager on the same inputs; exit 1 when a check fails.

    Besides max-abs / relative L2 / cosine, it measures what a segmentation user cares about:
    pixel agreement of the label maps, margin-aware agreement (flips where the reference's
    top-2 logits are nearly tied are counted apart), agreement in a band around class
    boundaries, per-class IoU of candidate vs reference, and with --labels the mIoU of each
    backend and the drop. Default thresholds follow the ONNX's precision (fp32/fp16/int8).

    Examples:

      segexport parity --onnx deeplabv1.onnx

      segexport parity --onnx unet.onnx --weights unet.pt --images data/images --labels data/labels --junit parity.xml

    A trained export records its checkpoint's SHA-256 and path (relative to where it was exported):
    without --weights parity uses that file when its SHA-256 still matches, and refuses otherwise.
    """
    from segexport.core.files import refuse_replacing, require_inputs

    require_inputs([(onnx, "--onnx", "ONNX file"), (weights, "--weights", "weights file"),
                    (engine, "--engine", "engine"), (images, "--images", "image directory"),
                    (labels, "--labels", "label directory")])

    refuse_replacing([(json_out, "--json"), (junit, "--junit"), (markdown, "--markdown")], force,
                     inputs=[onnx, weights, engine])
    from segexport.api import parity
    from segexport.checks.reports import print_table
    from segexport.errors import CheckFailed

    with Stages("parity") as status:
        try:
            report = parity(onnx=onnx, model=model, weights=weights, engine=engine, backends=backends, images=images,
                            labels=labels, count=count, seed=seed, thresholds=parse_thresholds(threshold),
                            json_out=json_out, junit=junit, markdown=markdown, save_diff=save_diff,
                            progress=status.update, trust_model_code=trust_model_code).report
        except CheckFailed as exc:  # the table first, then the one-line verdict
            if exc.result is not None:
                status.stop()
                _say_weights(exc.result.report, weights)
                print_table(exc.result.report, console)
                _say_if_untrained(exc.result.report.model, exc.result.report.weights_sha256, labels)
            raise
    _say_weights(report, weights)
    print_table(report, console)
    _say_if_untrained(report.model, report.weights_sha256, labels)


def _say_weights(report, given: Path | None) -> None:
    """One line when the checkpoint came from the ONNX's record, not the command line: the user
    should see which file the reference was built from."""
    from rich.markup import escape

    if given is None and report.weights is not None:
        console.print(f"weights: {escape(report.weights)} (recorded at export, SHA-256 matches)", highlight=False,
                      soft_wrap=True)


def _say_if_untrained(model: str, weights_sha256: str | None, labels: Path | None) -> None:
    """A zoo model whose ONNX records no checkpoint (parity refuses a mismatch) is untrained."""
    from segexport.models.registry import UNTRAINED, is_untrained

    if is_untrained(model, weights_sha256):
        console.print(f"[yellow]note:[/] {UNTRAINED}: both sides are the same untrained network, so agreement tests "
                      "the export" + ("; the mIoU against --labels means nothing" if labels is not None else ""))
