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

from segexport.exporter.export import make_reproducible

def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dynamic_segnet_export_is_byte_identical_across_processes(exports, tmp_path):
    """The session's dynamic SegNet export (tests/conftest.py) against the same export in a fresh
    interpreter (unverified: verification and lint read the file, they never change it)."""
    from tests.conftest import TINY_WIDTH, small_size

    h, w = small_size("segnet")
    options = dict(model="segnet", width=TINY_WIDTH, input_size=(h, w), dynamic=("hw",),
                   hw_range=((h - 5, w - 13), (h + 24, w + 31)), verify=False, lint=False)
    here = exports("segnet", True).path
    there = tmp_path / "b" / here.name
    there.parent.mkdir()
    code = ("import json,sys; from pathlib import Path; from segexport.exporter.export import ExportOptions, export_onnx; "
            "o=json.loads(sys.argv[1]); o['input_size']=tuple(o['input_size']); o['dynamic']=tuple(o['dynamic']); "
            "o['hw_range']=tuple(map(tuple, o['hw_range'])); export_onnx(ExportOptions(out=Path(sys.argv[2]), **o))")
    subprocess.run([sys.executable, "-c", code, json.dumps(options), str(there)], check=True, env=os.environ.copy(),
                   timeout=300)
    assert _sha(here) == _sha(there)
    model = onnx.load(str(here))
    text = str([(p.key, p.value) for n in model.graph.node for p in n.metadata_props])
    assert "sym_min" in text  # the scopes are kept (lint names modules with them)...
    data = model.SerializeToString().decode("latin-1")
    assert " at 0x" not in text and str(here.parent) not in data and str(tmp_path) not in data  # ...scrubbed


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
