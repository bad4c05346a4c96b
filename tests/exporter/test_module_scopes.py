"""The export keeps, per node, the PyTorch module it came from (onnxslim drops node
metadata; the pipeline restores it), because lint findings and the FP16 overflow
analysis must name modules users recognise."""

from __future__ import annotations

import onnx

from segexport.exporter.export import ExportOptions, export_onnx
from tests.conftest import TINY_WIDTH


def test_conv_nodes_carry_their_module_path(tmp_path):
    result = export_onnx(ExportOptions(model="deeplabv1", out=tmp_path / "d.onnx", width=TINY_WIDTH,
                                       input_size=(33, 33), verify=False))
    model = onnx.load(str(result.path))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs
    for node in convs:
        meta = {p.key: p.value for p in node.metadata_props}
        assert "namespace" in meta, node.name
        assert "stack_trace" not in " ".join(meta)  # no local paths leaked into the artefact
    namespaces = " ".join(p.value for n in convs for p in n.metadata_props)
    assert "fc6" in namespaces  # DeepLab's dilated fc6 conv is found by its module name


def test_slimmed_away_nodes_do_not_rename_their_neighbours(tmp_path):
    """At an even size U-Net's skip padding is a no-op that onnxslim removes; the up-convolution
    before it must keep its own module, not the removed Pad's."""
    from segexport.exporter.lint import module_of

    result = export_onnx(ExportOptions(model="unet", out=tmp_path / "u.onnx", width=TINY_WIDTH,
                                       input_size=(48, 48), verify=False))
    ups = [n for n in onnx.load(str(result.path)).graph.node if n.op_type == "ConvTranspose"]
    assert [module_of(n) for n in ups] == ["up.0", "up.1", "up.2", "up.3"]
