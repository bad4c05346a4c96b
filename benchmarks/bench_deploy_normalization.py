"""What nvinfer's single net-scale-factor costs, and what baking the normalisation gives -> table + JSON.

    python benchmarks/bench_deploy_normalization.py MODEL.onnx [MODEL.onnx ...]

For each segexport ONNX: `deploy_deepstream` with the baked normalisation (label agreement of
the bundle graph on raw pixels vs exact preprocessing, and the pixels where the appended Softmax
picks the other of two float-tied classes) and with `--approximate-normalization` (the measured
agreement of nvinfer's one-scale approximation). Images: the library's verification set (synthetic
scenes, noise, 0/255 extremes) at each model's export size.
Results: benchmarks/results/deploy_normalization.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table


def main(argv: list[str]) -> int:
    from segexport.deploy import deploy_deepstream
    from segexport.exporter.metadata import read_record

    rows = []
    for path in map(Path, argv):
        record = read_record(path)
        with tempfile.TemporaryDirectory() as tmp:
            baked = deploy_deepstream(path, Path(tmp) / "baked")
            approx = deploy_deepstream(path, Path(tmp) / "approx", approximate_normalization=True)
        rows.append({"onnx": path.name, "model": record.model, "width": record.width,
                     "classes": record.num_classes, "input_size": list(record.preprocess.input_size),
                     "std": list(record.preprocess.std), "pixels": baked.agreement.pixels,
                     "baked_agreement": baked.agreement.agreement, "softmax_ties": baked.agreement.softmax_ties,
                     "approximate_agreement": approx.agreement.agreement})
    table = Table("onnx", "model", "width", "classes", "baked", "softmax ties", "one net-scale-factor")
    for r in rows:
        table.add_row(r["onnx"], r["model"][-24:], f"{r['width']:g}", str(r["classes"]), f"{r['baked_agreement']:.4%}",
                      str(r["softmax_ties"]), f"{r['approximate_agreement']:.4%}")
    Console().print(table)
    out = Path(__file__).parent / "results" / "deploy_normalization.json"
    out.write_text(json.dumps({"command": "python benchmarks/bench_deploy_normalization.py " + " ".join(argv),
                               "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
