"""Two uncached exports of the same model are byte-identical, so a content-keyed cache can hit.

One export runs in this process and one in a fresh interpreter: memory addresses (the way a
dynamic SegNet's ``sym_min`` scopes used to differ) only change between processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import onnx

from segexport.exporter.export import ExportOptions, export_onnx, make_reproducible

OPTIONS = dict(model="segnet", width=0.0625, num_classes=4, input_size=(32, 32), dynamic=("hw",), verify=False, lint=False)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dynamic_segnet_export_is_byte_identical_across_processes(tmp_path):
    here = tmp_path / "a" / "segnet.onnx"
    there = tmp_path / "b" / "segnet.onnx"
    here.parent.mkdir()
    there.parent.mkdir()
    export_onnx(ExportOptions(out=here, **OPTIONS))
    code = ("import json,sys; from pathlib import Path; from segexport.exporter.export import ExportOptions, export_onnx; "
            "o=json.loads(sys.argv[1]); o['input_size']=tuple(o['input_size']); o['dynamic']=tuple(o['dynamic']); "
            "export_onnx(ExportOptions(out=Path(sys.argv[2]), **o))")
    subprocess.run([sys.executable, "-c", code, json.dumps(OPTIONS), str(there)], check=True, env=os.environ.copy(),
                   timeout=300)
    assert _sha(here) == _sha(there)
    model = onnx.load(str(here))
    text = str([(p.key, p.value) for n in model.graph.node for p in n.metadata_props])
    assert "sym_min" in text  # the scopes are kept (lint names modules with them)...
    assert " at 0x" not in text and str(tmp_path) not in model.SerializeToString().decode("latin-1")  # ...scrubbed


def test_make_reproducible_scrubs_addresses_paths_and_doc_strings():
    node = onnx.helper.make_node("Relu", ["x"], ["y"], name="n", doc_string="File /home/me/net.py, line 3")
    prop = node.metadata_props.add()
    prop.key, prop.value = "namespace", "Net/<function sym_min at 0x7f15deadbeef> /srv/ci/job/models/net.py"
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", 1, [1])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1])], doc_string="trace")
    model = onnx.helper.make_model(graph, doc_string="exported at 12:00")
    make_reproducible(model)
    assert model.graph.node[0].metadata_props[0].value == "Net/<function sym_min> net.py"
    assert model.doc_string == model.graph.doc_string == model.graph.node[0].doc_string == ""
