"""The TensorRT lint on hand-made graphs (one per check), and the real parser/builder."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segexport.exporter.lint import lint_model
from tests.conftest import assert_one_line_error, require_tensorrt_rtx

F = TensorProto.FLOAT


def graph(nodes, inputs, outputs, inits=(), opset=18) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def vi(name, shape, t=F):
    return helper.make_tensor_value_info(name, t, shape)


def const(name, values, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(values, dtype), name)


def one_node(op, inputs=("x",), outputs=("y",), inits=(), shape=(1, 3, 8, 8), opset=18, **attrs):
    """A graph of one ``op`` on a float input ``x`` of ``shape``."""
    node = helper.make_node(op, list(inputs), list(outputs), name=f"{op.lower()}_0", **attrs)
    outs = [vi(o, None, TensorProto.INT64 if i else F) for i, o in enumerate(outputs)]
    return graph([node], [vi("x", list(shape))], outs, inits, opset)


def conv_resize(h="H", w="W") -> onnx.ModelProto:
    """Conv + bilinear x2 Resize: what every zoo decoder looks like to TensorRT."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Resize", ["c", "", "scales"], ["y"], mode="linear",
                              coordinate_transformation_mode="half_pixel")]
    return graph(nodes, [vi("x", [1, 3, h, w])], [vi("y", None)],
                 [const("w", np.ones((2, 3, 3, 3))), const("scales", [1, 1, 2, 2])])


def qdq_conv(zp: int = 0, zp_dtype=np.int8, h=16, w=16) -> onnx.ModelProto:
    """Symmetric INT8 Q/DQ on activation and weights around a Conv (what `calibrate` writes)."""
    inits = [const("s", 0.05), const("zp", zp, zp_dtype), const("w", np.full((4, 3, 3, 3), 0.1)),
             const("ws", [0.01] * 4), const("wzp", [0] * 4, np.int8)]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q_x"),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq_x"),
             helper.make_node("QuantizeLinear", ["w", "ws", "wzp"], ["wq"], axis=0, name="q_w"),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wzp"], ["wd"], axis=0, name="dq_w"),
             helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1], name="conv")]
    return graph(nodes, [vi("x", [1, 3, h, w])], [vi("y", None)], inits)


def codes(report):
    return {(f.severity, f.code) for f in report.findings}


# (graph, the finding it must produce). One row per check; each row's graph is otherwise clean.
CASES = {
    "maxpool-indices": (lambda: one_node("MaxPool", outputs=("y", "i"), kernel_shape=[2, 2]),
                        ("error", "maxpool-indices")),
    "maxunpool": (lambda: one_node("MaxUnpool", inputs=("x", "idx"), kernel_shape=[2, 2],
                                   inits=[const("idx", np.zeros((1, 3, 8, 8)), np.int64)]),
                  ("error", "unsupported-op")),
    "unique": (lambda: one_node("Unique", shape=(4,)), ("error", "unsupported-op")),
    "col2im": (lambda: one_node("Col2Im", inputs=("x", "isz", "bsz"), shape=(1, 4, 4),
                                inits=[const("isz", [2, 2], np.int64), const("bsz", [1, 1], np.int64)]),
               ("error", "unsupported-op")),
    "custom-domain": (lambda: graph([helper.make_node("Foo", ["x"], ["y"], domain="my.ops")], [vi("x", [4])],
                                    [vi("y", None)]), ("error", "custom-op")),
    "pool-dilation": (lambda: one_node("MaxPool", kernel_shape=[2, 2], dilations=[2, 2]),
                      ("error", "pool-dilation")),
    "resize-antialias": (lambda: one_node("Resize", ("x", "", "sc"), inits=[const("sc", [1, 1, 2, 2])],
                                          mode="linear", antialias=1), ("error", "resize-antialias")),
    "resize-cubic": (lambda: one_node("Resize", ("x", "", "sc"), inits=[const("sc", [1, 1, 2, 2])], mode="cubic"),
                     ("warning", "resize-cubic")),
    "resize-crop": (lambda: one_node("Resize", ("x", "", "sc"), inits=[const("sc", [1, 1, 2, 2])], mode="linear",
                                     coordinate_transformation_mode="tf_crop_and_resize"), ("error", "resize-coord")),
    "resize-symmetric": (lambda: one_node("Resize", ("x", "", "sc"), inits=[const("sc", [1, 1, 2, 2])],
                                          coordinate_transformation_mode="half_pixel_symmetric"),
                         ("error", "resize-coord")),
    "resize-nearest-mode": (lambda: one_node("Resize", ("x", "", "sc"), inits=[const("sc", [1, 1, 2, 2])],
                                             mode="nearest", nearest_mode="round_half_even"),
                            ("error", "resize-nearest-mode")),
    "resize-aspect": (lambda: one_node("Resize", ("x", "", "", "sz"), inits=[const("sz", [1, 3, 16, 8], np.int64)],
                                       keep_aspect_ratio_policy="not_larger"), ("error", "resize-aspect")),
    "resize-axes": (lambda: graph([helper.make_node("Shape", ["x"], ["s"]),
                                   helper.make_node("Cast", ["s"], ["sf"], to=F),
                                   helper.make_node("Slice", ["sf", "b", "e"], ["hw"]),
                                   helper.make_node("Resize", ["x", "", "hw"], ["y"], axes=[2, 3])],
                                  [vi("x", [1, 3, 8, 8])], [vi("y", None)],
                                  [const("b", [2], np.int64), const("e", [4], np.int64)]), ("error", "resize-axes")),
    "scatternd-add": (lambda: one_node("ScatterND", ("x", "i", "u"), shape=(4,), reduction="add",
                                       inits=[const("i", [[1]], np.int64), const("u", [1.0])]),
                      ("error", "scatter-reduction")),
    "scatterelements-max": (lambda: one_node("ScatterElements", ("x", "i", "u"), shape=(4, 4), reduction="max",
                                             inits=[const("i", np.zeros((1, 4)), np.int64), const("u", np.ones((1, 4)))]),
                            ("error", "scatter-reduction")),
    "scatterelements": (lambda: one_node("ScatterElements", ("x", "i", "u"), shape=(4, 4),
                                         inits=[const("i", np.zeros((1, 4)), np.int64), const("u", np.ones((1, 4)))]),
                        ("warning", "scatter")),
    # an index table built from the input's size alone (HF BEiT's relative position index, dynamic)
    "scatter-of-size": (lambda: graph([helper.make_node("Shape", ["x"], ["s"]),
                                       helper.make_node("ScatterND", ["s", "i", "u"], ["y"], name="scatter_size")],
                                      [vi("x", [1, 3, "H", "W"])], [vi("y", None, TensorProto.INT64)],
                                      [const("i", [[1]], np.int64), const("u", [7], np.int64)]),
                        ("info", "scatter-size")),
    "qdq-zero-point": (lambda: qdq_conv(zp=5), ("error", "qdq-zero-point")),
    "qdq-uint8": (lambda: qdq_conv(zp=0, zp_dtype=np.uint8), ("error", "qdq-type")),
    "topk-unsorted": (lambda: one_node("TopK", ("x", "k"), ("y", "i"), shape=(1, 8), sorted=0,
                                       inits=[const("k", [2], np.int64)]), ("error", "topk-unsorted")),
    "topk-large-k": (lambda: one_node("TopK", ("x", "k"), ("y", "i"), shape=(1, 8),
                                      inits=[const("k", [4096], np.int64)]), ("error", "topk-k")),
    "squeeze-axes": (lambda: graph([helper.make_node("Shape", ["x"], ["s"]),
                                    helper.make_node("Slice", ["s", "b", "e"], ["ax"]),
                                    helper.make_node("Squeeze", ["x", "ax"], ["y"])],
                                   [vi("x", [1, 1, 8])], [vi("y", None)],
                                   [const("b", [0], np.int64), const("e", [1], np.int64)]),
                     ("error", "axes-not-constant")),
    "int64-too-big": (lambda: one_node("Reshape", ("x", "shape"), shape=(4,),
                                       inits=[const("shape", [2**40], np.int64)]), ("warning", "int64-narrowed")),
    "int64-fits": (lambda: one_node("Reshape", ("x", "shape"), shape=(4,), inits=[const("shape", [2, 2], np.int64)]),
                   ("info", "int64")),
    "opset-too-old": (lambda: one_node("Relu", opset=8), ("warning", "opset")),
    "dynamic-no-profile": (lambda: conv_resize(), ("warning", "dynamic-no-profile")),
    "profile-mismatch": (lambda: with_profile(conv_resize(16, 16)), ("error", "profile-mismatch")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_check_fires(case):
    make, expected = CASES[case]
    report = lint_model(make(), parser="none")
    assert expected in codes(report), report.findings
    finding = next(f for f in report.findings if (f.severity, f.code) == expected)
    assert finding.message and finding.severity in ("error", "warning", "info")
    if expected[0] == "warning":  # a warning alone must not fail an export
        assert not report.errors, report.errors


@pytest.mark.parametrize("graph_fn", [lambda: conv_resize(16, 16), lambda: qdq_conv(0),
                                      lambda: one_node("MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
                                      lambda: one_node("ScatterND", ("x", "i", "u"), shape=(4,),
                                                       inits=[const("i", [[1]], np.int64), const("u", [1.0])])],
                         ids=["conv-resize", "qdq-int8", "maxpool", "scatternd"])
def test_clean_graphs_have_no_errors(graph_fn):
    assert not lint_model(graph_fn(), parser="none").errors


def test_clean_static_conv_has_no_findings_at_all():
    assert lint_model(conv_resize(16, 16), parser="none").findings == []


def test_finding_names_the_pytorch_module():
    m = one_node("MaxPool", outputs=("y", "i"), kernel_shape=[2, 2])
    m.graph.node[0].metadata_props.add(key="pkg.torch.onnx.name_scopes",
                                       value="['', 'encoder', 'encoder.pools.0', 'aten.max_pool2d_with_indices']")
    finding = lint_model(m, parser="none").errors[0]
    assert (finding.node, finding.op, finding.module) == ("maxpool_0", "MaxPool", "encoder.pools.0")


def test_not_an_onnx_file(tmp_path, run_cli):
    bogus = tmp_path / "x.onnx"
    bogus.write_text("hello")
    assert_one_line_error(run_cli("lint", bogus), "is not an ONNX model")
    assert_one_line_error(run_cli("lint", tmp_path / "missing.onnx"), "not found")
    assert_one_line_error(run_cli("lint", bogus, "--parser", "tensorflow"), "--parser")


def test_cli_exit_codes_and_json(tmp_path, run_cli):
    ok, bad = tmp_path / "ok.onnx", tmp_path / "bad.onnx"
    onnx.save(conv_resize(16, 16), ok)
    onnx.save(one_node("MaxPool", outputs=("y", "i"), kernel_shape=[2, 2]), bad)
    result = run_cli("lint", ok, "--json", "--parser", "none")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["errors"] == 0 and doc["findings"] == [] and doc["parser"] is None
    result = run_cli("lint", bad, "--parser", "none")
    assert result.exit_code == 1 and "maxpool-indices" in result.stdout and "1 error" in result.stdout
    result = run_cli("lint", bad, "--parser", "none", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["findings"][0]["code"] == "maxpool-indices"


# ---- NVIDIA's real parser and builder (TensorRT-RTX builds ahead of time without a GPU) ----

def with_profile(model: onnx.ModelProto, lo=(16, 16), opt=(32, 48), hi=(64, 64)) -> onnx.ModelProto:
    """Attach the segexport export record with a dynamic H/W range, as `segexport onnx --dynamic hw` does."""
    from segexport.data.contract import DynamicRange, ExportRecord, PreprocessContract
    from segexport.exporter.metadata import write_record

    model.graph.input[0].name = "input"
    for n in model.graph.node:
        n.input[:] = ["input" if i == "x" else i for i in n.input]
    record = ExportRecord(model="handmade", num_classes=2, class_names=("a", "b"),
                          preprocess=PreprocessContract((0.5,) * 3, (0.25,) * 3, opt), batch=1, opset=18,
                          unpool="mask", argmax=False, segexport_version="test", weights_sha256=None,
                          dynamic={"height": DynamicRange(lo[0], opt[0], hi[0]),
                                   "width": DynamicRange(lo[1], opt[1], hi[1])})
    write_record(model, record)
    return model


def test_real_parser_rejects_maxpool_indices():
    require_tensorrt_rtx()
    report = lint_model(one_node("MaxPool", outputs=("y", "i"), kernel_shape=[2, 2]), parser="rtx")
    assert report.parser and "TensorRT-RTX" in report.parser
    parser_errors = [f for f in report.errors if f.code == "trt-parser"]
    assert parser_errors and parser_errors[0].op == "MaxPool" and parser_errors[0].node == "maxpool_0"


def test_real_parser_agrees_on_scatter_reductions():
    require_tensorrt_rtx()
    make, _ = CASES["scatterelements-max"]
    assert any(f.code == "trt-parser" for f in lint_model(make(), parser="rtx").errors)
    make, _ = CASES["scatterelements"]
    assert not any(f.code == "trt-parser" for f in lint_model(make(), parser="rtx").findings)


def test_real_builder_builds_dynamic_hw_with_the_recorded_profile():
    require_tensorrt_rtx()
    report = lint_model(with_profile(conv_resize()), parser="rtx", build=True)
    assert not report.errors and not report.warnings, report.findings
    assert report.engine_bytes > 0 and report.build_seconds is not None


def test_build_without_a_profile_is_a_finding_not_a_crash():
    require_tensorrt_rtx()
    report = lint_model(conv_resize(), parser="rtx", build=True)
    assert ("error", "trt-build") in codes(report) and report.engine_bytes is None


def test_real_builder_builds_int8_qdq_strongly_typed():
    require_tensorrt_rtx()
    report = lint_model(qdq_conv(0), parser="rtx", build=True)
    assert not report.errors and report.engine_bytes > 0


def test_cli_build_reports_engine(tmp_path, run_cli):
    require_tensorrt_rtx()
    path = tmp_path / "dyn.onnx"
    onnx.save(with_profile(conv_resize()), path)
    result = run_cli("lint", path, "--build", "--parser", "rtx", "--json")
    assert result.exit_code == 0, result.stdout
    doc = json.loads(result.stdout)
    assert doc["engine_bytes"] > 0 and doc["parser"].startswith("TensorRT-RTX")


def test_a_scatter_of_the_size_is_not_warned_as_unpooling_but_one_of_pixels_is():
    """BEiT's per-size index tables are bookkeeping (info); a scatter of the image's values stays a warning."""
    size_only = lint_model(CASES["scatter-of-size"][0](), parser="none")
    assert ("warning", "scatter") not in codes(size_only)  # (its one warning: H, W dynamic with no profile)
    assert "1 scatter(s) build tables from the input's size alone" in \
        next(f.message for f in size_only.findings if f.code == "scatter-size")
    pixels = lint_model(CASES["scatterelements"][0](), parser="none")
    assert ("warning", "scatter") in codes(pixels) and ("info", "scatter-size") not in codes(pixels)
