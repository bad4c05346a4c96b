"""Third-party-style networks through segexport -> table + JSON: does each export, how well
does ONNX Runtime agree with PyTorch, how long does the export take, does TensorRT-RTX parse
and build it, and do fp16 / int8 calibrate.

    python benchmarks/bench_third_party.py                   # every look-alike, static and dynamic
    python benchmarks/bench_third_party.py --models smp_fpn,hf_segformer --no-calibrate

The models are the small random-init look-alikes of torchvision, segmentation_models_pytorch,
Hugging Face and MONAI networks in tests/exporter/third_party_models.py (their output
containers and upsampling idioms, tiny channels), plus the real networks of MONAI,
torchvision, segmentation_models_pytorch and transformers where each is installed (MONAI:
`pip install -e ".[thirdparty]"`). Each goes through the library calls behind
`segexport onnx`, `segexport lint --build` and `segexport calibrate`; a failure is recorded
as its one-line message, not a traceback. Results: benchmarks/results/third_party_cpu.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "tests" / "exporter" / "third_party_models.py"

# name, factory reference (relative to the models file), export options
CASES = [
    ("torchvision DeepLabV3 ({'out','aux'})", "tv_deeplabv3", dict(input_size=(64, 64))),
    ("torchvision FCN ({'out'})", "tv_fcn", dict(input_size=(64, 64), dynamic=("hw",))),
    ("smp Unet (scale_factor nearest, scSE mean)", "smp_unet", dict(input_size=(64, 64))),
    ("smp FPN (UpsamplingBilinear2d x4)", "smp_fpn", dict(input_size=(64, 64))),
    ("smp PSPNet (Upsample x8 bilinear)", "smp_pspnet", dict(input_size=(64, 64))),
    # AdaptiveAvgPool2d(2): PyTorch's lowering freezes it at the traced size; segexport's
    # shape-following pooling (exporter/adaptive_pool.py) keeps it right at every size
    ("smp PSPNet dynamic (AdaptiveAvgPool2d 1, 2)", "smp_pspnet", dict(input_size=(64, 64), dynamic=("hw",),
                                                                       hw_range=((32, 32), (128, 128)))),
    ("HF UperNet dynamic (PPM 1, 2, 3, 6 in a list)", "hf_upernet", dict(input_size=(64, 64), dynamic=("hw",))),
    # replicate-pads odd sizes in Python: frozen at the traced case, a dynamic export must be refused
    ("MONAI BasicUNet dynamic, odd (expected: refused)", "monai_basicunet",
     dict(input_size=(33, 37), dynamic=("hw",), hw_range=((32, 32), (48, 48)))),
    ("smp DeepLabV3+ (interpolate x4)", "smp_deeplabv3plus", dict(input_size=(64, 64))),
    ("HF Segformer (.logits at 1/4, --upsample-logits)", "hf_segformer",
     dict(input_size=(64, 64), upsample_logits=True, dynamic=("hw",))),
    ("MONAI BasicUNet (odd 33x37)", "monai_basicunet", dict(input_size=(33, 37))),
    ("MONAI SegResNet (Upsample bilinear)", "monai_segresnet", dict(input_size=(64, 64), dynamic=("hw",))),
    ("scale_factor matrix, bilinear", "scale_matrix", dict(input_size=(48, 64), model_args={"mode": "bilinear"})),
    ("scale_factor matrix, nearest", "scale_matrix", dict(input_size=(48, 64), model_args={"mode": "nearest"})),
    # issue 23: a ViT position embedding resized bicubic+antialias (a constant: folded when static)
    ("smp DPT (pos-embed bicubic antialias, folded)", "smp_dpt", dict(input_size=(48, 40))),
    ("smp DPT dynamic (expected: refused, size follows the input)", "smp_dpt",
     dict(input_size=(48, 40), dynamic=("hw",))),
    ("MONAI BasicUNetPlusPlus (list, --output 0)", "monai_basicunetplusplus", dict(input_size=(33, 37), output_key="0")),
    ("MONAI BasicUNetPlusPlus dynamic batch (list, --output 0)", "monai_basicunetplusplus",
     dict(input_size=(33, 37), output_key="0", dynamic=("batch",))),
    ("MONAI BasicUNetPlusPlus dynamic hw (expected: refused, pads odd sizes in Python)", "monai_basicunetplusplus",
     dict(input_size=(32, 48), output_key="0", dynamic=("hw",))),
]
# (library module, label, factory, options): run where the library is installed
REAL = [
    ("monai", "monai.networks.nets.BasicUNet (real)", "real_monai_basicunet", dict(input_size=(64, 64))),
    ("monai", "monai.networks.nets.SegResNet (real)", "real_monai_segresnet", dict(input_size=(64, 64))),
    ("torchvision", "torchvision lraspp_mobilenet_v3_large (real)", "real_tv_lraspp",
     dict(input_size=(96, 128), dynamic=("batch", "hw"))),
    ("torchvision", "torchvision deeplabv3_mobilenet_v3_large (real)", "real_tv_deeplabv3", dict(input_size=(96, 128))),
    ("segmentation_models_pytorch", "smp PSPNet resnet18 (real)", "real_smp",
     dict(input_size=(64, 96), dynamic=("hw",), hw_range=((32, 32), (256, 256)), model_args={"arch": "PSPNet"})),
    ("segmentation_models_pytorch", "smp UPerNet resnet18 (real)", "real_smp",
     dict(input_size=(64, 96), model_args={"arch": "UPerNet"})),
    ("transformers", "transformers UperNetForSemanticSegmentation (real)", "real_hf_upernet",
     dict(input_size=(64, 96), dynamic=("hw",))),
    ("transformers", "transformers SegformerForSemanticSegmentation (real)", "real_hf_segformer",
     dict(input_size=(64, 96), dynamic=("hw",), upsample_logits=True)),
    # issue 23: the transformer segmenters of the issue (random init, tiny configs)
    ("segmentation_models_pytorch", "smp DPT tu-vit_tiny (real, pos-embed folded)", "real_smp_dpt",
     dict(input_size=(96, 96))),
    ("segmentation_models_pytorch", "smp DPT tu-vit_tiny dynamic (real; expected: refused)", "real_smp_dpt",
     dict(input_size=(96, 96), dynamic=("hw",), hw_range=((64, 64), (128, 128)))),
    ("monai", "monai BasicUNetPlusPlus (real, list, --output 0)", "real_monai_basicunetplusplus",
     dict(input_size=(64, 64), output_key="0")),
    ("monai", "monai BasicUNetPlusPlus dynamic hw (real; expected: refused)", "real_monai_basicunetplusplus",
     dict(input_size=(64, 64), output_key="0", dynamic=("hw",))),
    ("monai", "monai UNETR (real)", "real_monai_unetr", dict(input_size=(64, 64))),
    ("monai", "monai UNETR dynamic (real; expected: refused, fixed patch grid)", "real_monai_unetr",
     dict(input_size=(64, 64), dynamic=("hw",))),
    ("monai", "monai SwinUNETR (real)", "real_monai_swinunetr", dict(input_size=(64, 64))),
    ("monai", "monai SwinUNETR dynamic (real; expected: refused, np.ceil of each stage's size to whole windows)", "real_monai_swinunetr",
     dict(input_size=(64, 64), dynamic=("hw",), hw_range=((32, 32), (128, 128)))),
    ("transformers", "transformers BEiT (real)", "real_hf_beit", dict(input_size=(64, 64), upsample_logits=True)),
    ("transformers", "transformers BEiT dynamic (real)", "real_hf_beit",
     dict(input_size=(64, 64), upsample_logits=True, dynamic=("hw",))),
    ("transformers", "transformers MobileViT (real)", "real_hf_mobilevit", dict(input_size=(64, 64), upsample_logits=True)),
    ("transformers", "transformers MobileViT dynamic (real)", "real_hf_mobilevit",
     dict(input_size=(64, 64), upsample_logits=True, dynamic=("hw",))),
    ("transformers", "transformers MobileViTV2 (real)", "real_hf_mobilevitv2",
     dict(input_size=(64, 64), upsample_logits=True)),
    ("transformers", "transformers MobileViTV2 dynamic (real)", "real_hf_mobilevitv2",  # PyTorch fails at 32x32
     dict(input_size=(64, 64), upsample_logits=True, dynamic=("hw",), hw_range=((64, 64), (128, 128)))),
    ("transformers", "transformers DPT (real)", "real_hf_dpt", dict(input_size=(64, 64))),
    ("transformers", "transformers DPT dynamic (real; expected: refused, tokens folded to a square grid)", "real_hf_dpt",
     dict(input_size=(64, 64), dynamic=("hw",))),
]


def _one(label: str, ref: str, options: dict, tmp: Path, calibrate: bool) -> dict:
    from segexport.errors import SegexportError
    from segexport.exporter.export import ExportOptions, export_onnx
    from segexport.exporter.lint import lint_model

    row: dict = {"model": label, "factory": ref, "model_args": options.get("model_args", {}),
                 "dynamic": list(options.get("dynamic", ())),
                 "input_size": list(options["input_size"])}
    out = tmp / f"{ref.rpartition(':')[2]}.onnx"
    t0 = time.perf_counter()
    try:
        result = export_onnx(ExportOptions(model=ref, out=out, **options))
    except SegexportError as exc:
        row.update(exports=False, error=str(exc), export_s=round(time.perf_counter() - t0, 2))
        return row
    row.update(exports=True, export_s=round(time.perf_counter() - t0, 2), steps_s=result.seconds,
               notes=result.notes, num_classes=result.record.num_classes, output_key=result.record.output_key,
               pixel_agreement=min(r.metrics.pixel_agreement for r in result.verify),
               max_abs_diff=max(r.metrics.max_abs for r in result.verify),
               verified_shapes=["x".join(map(str, r.shape)) for r in result.verify],
               lint_errors=len(result.lint.errors), lint_warnings=len(result.lint.warnings))
    report = lint_model(out, build=True)
    row["trt"] = (f"parse+build ok ({report.parser}, {report.build_seconds:.1f} s)" if report.engine_bytes
                  else report.parser_skipped or (report.errors[0].message if report.errors else "not built"))
    if calibrate:
        from segexport.calib.pipeline import CalibrateOptions, run_calibrate

        for precision in ("fp16", "int8"):
            try:
                reduced = run_calibrate(CalibrateOptions(onnx=out, precision=precision, count=8, eval_count=4,
                                                         out=tmp / f"{out.stem}.{precision}.onnx"))
                row[precision] = (f"ok, agreement {100 * reduced.pixel_agreement:.2f} %"
                                  + (f", {len(reduced.range_fallback)} minmax fallback" if reduced.range_fallback else ""))
            except SegexportError as exc:
                row[precision] = f"refused: {exc}"
    return row


def _library_versions() -> dict[str, str]:
    """The third-party libraries whose real networks ran (a row is only as good as its version)."""
    from importlib import metadata

    found = {}
    for dist in ("monai", "torchvision", "segmentation-models-pytorch", "timm", "transformers"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="all", help="comma-separated factory names (default: all)")
    parser.add_argument("--no-calibrate", action="store_true", help="skip fp16/int8")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "third_party_cpu.json"))
    args = parser.parse_args(argv)

    cases = [(label, f"{MODELS}:{factory}", opts) for label, factory, opts in CASES]
    real = ROOT / "tests" / "exporter" / "real_third_party.py"
    cases += [(label, f"{real}:{factory}", opts) for module, label, factory, opts in REAL
              if importlib.util.find_spec(module) is not None]
    if args.models != "all":
        wanted = set(args.models.split(","))
        cases = [c for c in cases if c[1].rpartition(":")[2] in wanted]
    console = Console()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, ref, opts in cases:
            console.print(f"[bold]{escape(label)}[/] ...")
            rows.append(_one(label, ref, opts, Path(tmp), not args.no_calibrate))
    table = Table(title=f"third-party-style models through segexport, CPU ({os.cpu_count()} cores)")
    for col in ("model", "shape", "exports", "agreement", "export s", "lint", "RTX build", "fp16", "int8"):
        table.add_column(col)

    def short(cell: str | None) -> str:  # "ok, agreement 99.96 %, ..." -> "99.96 %"
        if not cell:
            return "-"
        return cell.split("agreement ")[1].split(",")[0] if cell.startswith("ok") else "refused"

    for r in rows:
        name = (r["factory"].rpartition(":")[2] + "".join(f" {v}" for v in r["model_args"].values())
                + (" (refusal expected)" if "expected: refused" in r["model"] else ""))
        shape = "x".join(map(str, r["input_size"])) + (" dyn" if r["dynamic"] else "")
        if not r["exports"]:
            table.add_row(escape(name), shape, "[red]no[/]", "-", f"{r['export_s']:.1f}", "-", "-", "-", "-")
            continue
        table.add_row(escape(name), shape, "yes", f"{100 * r['pixel_agreement']:.3f} %", f"{r['export_s']:.1f}",
                      f"{r['lint_errors']}e/{r['lint_warnings']}w", "ok" if r["trt"].startswith("parse+build ok") else "FAIL",
                      short(r.get("fp16")), short(r.get("int8")))
    console.print(table)
    import onnxslim
    import torch

    payload = {
        "command": "python " + " ".join(["benchmarks/bench_third_party.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "onnxslim": onnxslim.__version__,
                    "libraries": _library_versions()},
        "results": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2, default=str) + "\n")
    console.print(f"wrote {args.out}")
    unexpected = [r["model"] for r in rows if r["exports"] == ("expected: refused" in r["model"])]
    if unexpected:
        console.print(f"[red]unexpected result:[/] {escape(', '.join(unexpected))}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
