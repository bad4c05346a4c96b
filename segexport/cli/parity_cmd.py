"""``segexport parity``: does the export give the same segmentation as PyTorch?"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from segexport.cli.common import check_output_path, console
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
    weights: Optional[Path] = typer.Option(None, "--weights", help="The checkpoint the ONNX was exported from."),
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
    """
    from segexport.checks.parity import ParityOptions, run_parity
    from segexport.checks.reports import print_table, write_json, write_junit, write_markdown
    from segexport.errors import CheckFailed

    # every report path is checked before the comparison runs: a typo must not cost the run,
    # nor leave some reports written and others not; no report may overwrite what parity reads
    from segexport.core.files import refuse_overwriting_inputs

    reports = {"--json": json_out, "--junit": junit, "--markdown": markdown}
    for flag, path in reports.items():
        if path is not None:
            check_output_path(path, flag)
    _check_save_diff(save_diff)
    refuse_overwriting_inputs({**reports, "--save-diff": save_diff},
                              [onnx, weights, engine, engine and Path(str(engine) + ".json"), images, labels])
    opts = ParityOptions(onnx=onnx, model=model, weights=weights, engine=engine,
                         backends=tuple(b.strip() for b in backends.split(",") if b.strip()), images=images,
                         labels=labels, count=count, seed=seed, thresholds=parse_thresholds(threshold),
                         save_diff=save_diff, trust_model_code=trust_model_code)
    with console.status("parity", spinner="dots") as status:
        report = run_parity(opts, progress=lambda m: status.update(f"[bold]{m}[/]…"))
    if not report.pairs:  # before any report is written: an empty report would read as a pass
        raise UserError("no candidate backend could run here: " + "; ".join(f"{k}: {v}" for k, v in report.skipped.items()))
    print_table(report, console)
    from segexport.core.files import atomic_outputs

    # all reports land together or none does: a JUnit that cannot be written must not leave
    # a JSON saying "pass" for CI to read
    writers = [(path, flag, writer) for path, flag, writer in ((json_out, "--json", write_json),
                                                                (junit, "--junit", write_junit),
                                                                (markdown, "--markdown", write_markdown))
               if path is not None]
    with atomic_outputs([(path, flag) for path, flag, _ in writers]) as staged:
        for path, _flag, writer in writers:
            writer(report, staged[Path(path)])
    if not report.passed:
        failed = [f"{p.candidate}: {c.message}" for p in report.pairs for c in p.checks if not c.passed]
        raise CheckFailed(f"parity failed ({len(failed)} check(s)); first: {failed[0]}")


def _check_save_diff(save_diff: Optional[Path]) -> None:
    """--save-diff must be a folder parity can write PNGs into (or create), checked up front."""
    import os

    if save_diff is None:
        return
    if save_diff.exists() and not save_diff.is_dir():
        raise UserError(f"--save-diff {str(save_diff)!r} is a file: give a directory for the PNGs")
    folder = save_diff if save_diff.exists() else (save_diff.parent if str(save_diff.parent) else Path("."))
    if not folder.is_dir():
        raise UserError(f"--save-diff {str(save_diff)!r}: {str(folder)!r} does not exist: create it or choose another")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"--save-diff {str(save_diff)!r}: {str(folder)!r} is not writable: choose another folder")
