"""DLA pre-flight: one small graph that breaks each rule, the rules that differ per TensorRT
version (8.5 / 8.6 / 10.x) and board, transitions and loadables counted, and a report on every
zoo model. Where each rule was checked: segexport/exporter/dla.py (RULES)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from onnx import helper

from segexport.core.targets import get_target
from segexport.exporter.dla import MAX_LOADABLES, dla_preflight
from segexport.exporter.lint import lint_model
from tests.exporter.test_lint import const, graph, vi

ORIN, XAVIER = get_target("orin-dla"), get_target("xavier-dla")  # TensorRT 10.3 and 8.5.2
# Orin on JetPack 5.1 (TensorRT 8.5.2) and JetPack 6.0 (8.6.2): no named target, the rules exist
ORIN85 = replace(ORIN, name="orin-dla-jp5", trt_version="8.5.2", matrix="8.5")
ORIN86 = replace(ORIN, name="orin-dla-jp6.0", trt_version="8.6.2", matrix="8.6")


def single(op, inputs=("x",), inits=(), shape=(1, 4, 16, 16), opset=17, **attrs):
    node = helper.make_node(op, list(inputs), ["y"], name="n", **attrs)
    return graph([node], [vi("x", list(shape))], [vi("y", None)], inits, opset)


def conv(k=3, **attrs):
    return single("Conv", ("x", "w"), [const("w", np.ones((4, 4, k, k)))], kernel_shape=[k, k], **attrs)


def deconv(k=2, **attrs):
    return single("ConvTranspose", ("x", "w"), [const("w", np.ones((4, 4, k, k)))], kernel_shape=[k, k], **attrs)


def resize(scales, mode="nearest", coord="asymmetric", nearest="floor"):  # PyTorch's nearest by default
    return single("Resize", ("x", "", "sc"), [const("sc", scales)], mode=mode, coordinate_transformation_mode=coord,
                  nearest_mode=nearest)


def placement(model, target=ORIN, precision=None):
    report, _ = dla_preflight(model, target, precision)
    (p,) = [p for p in report.placements if p.node == "n"]
    return p


# rule -> (graph breaking it, the same layer within the limit); each must flip DLA -> GPU
RULES = {
    "conv-kernel": (lambda: conv(33), lambda: conv(3)),
    "conv-stride": (lambda: conv(3, strides=[9, 9]), lambda: conv(3, strides=[8, 8])),
    "conv-dilation": (lambda: conv(3, dilations=[33, 33]), lambda: conv(3, dilations=[2, 2])),
    "conv-padding": (lambda: conv(3, pads=[3, 3, 3, 3]), lambda: conv(3, pads=[1, 1, 1, 1])),
    "deconv-padding": (lambda: deconv(4, strides=[2, 2], pads=[1, 1, 1, 1]), lambda: deconv(2, strides=[2, 2])),
    "deconv-dilation": (lambda: deconv(2, dilations=[2, 2]), lambda: deconv(2)),
    "deconv-kernel": (lambda: deconv(33), lambda: deconv(2)),
    "pool-window": (lambda: single("MaxPool", kernel_shape=[9, 9]), lambda: single("MaxPool", kernel_shape=[8, 8])),
    "pool-stride": (lambda: single("AveragePool", kernel_shape=[2, 2], strides=[17, 17], shape=(1, 4, 64, 64)),
                    lambda: single("AveragePool", kernel_shape=[2, 2], strides=[2, 2])),
    "pool-global-as-window": (lambda: single("GlobalAveragePool", shape=(1, 4, 8, 8)),
                              lambda: single("AveragePool", kernel_shape=[8, 8], shape=(1, 4, 8, 8))),
    "resize-nearest-integer": (lambda: resize([1, 1, 1.5, 1.5]), lambda: resize([1, 1, 2, 2])),
    "resize-nearest-coord": (lambda: resize([1, 1, 2, 2], coord="align_corners"),
                             lambda: resize([1, 1, 2, 2], coord="half_pixel", nearest="round_prefer_ceil")),
    "resize-nearest-rounding": (lambda: resize([1, 1, 2, 2], nearest="round_prefer_floor"),
                                lambda: resize([1, 1, 2, 2], nearest="floor")),
    "resize-bilinear-coord": (lambda: resize([1, 1, 2, 2], "linear", "align_corners"),
                              lambda: resize([1, 1, 2, 2], "linear", "half_pixel")),
    "resize-bilinear-scale": (lambda: resize([1, 1, 8, 8], "linear", "half_pixel"),
                              lambda: resize([1, 1, 4, 4], "linear", "half_pixel")),
    "resize-channel": (lambda: resize([1, 2, 2, 2]), lambda: resize([1, 1, 2, 2])),
    "concat-axis": (lambda: single("Concat", ("x", "x"), axis=2), lambda: single("Concat", ("x", "x"), axis=1)),
    "max-dim": (lambda: single("Relu", shape=(1, 4, 2, 9000)), lambda: single("Relu", shape=(1, 4, 2, 8000))),
    "max-batch": (lambda: single("Relu", shape=(4097, 1, 2, 2)), lambda: single("Relu", shape=(4096, 1, 2, 2))),
    "softmax-axis-size": (lambda: single("Softmax", shape=(1, 2000, 2, 2), axis=1),
                          lambda: single("Softmax", shape=(1, 2000, 1, 1), axis=1)),
    "softmax-batch-axis": (lambda: single("Softmax", axis=0), lambda: single("Softmax", axis=1)),
    "slice-step": (lambda: slice_(steps=[2]), lambda: slice_(steps=[1])),
    "slice-first-dim": (lambda: slice_(axes=[0], shape=(2, 4, 16, 16), start=1, end=2),
                        lambda: slice_(axes=[1], shape=(2, 4, 16, 16), start=1, end=2)),
    "slice-rank": (lambda: slice_(shape=(4, 16, 16)), lambda: slice_()),
    "unary": (lambda: single("Exp"), lambda: single("Abs")),
    "pow-constant": (lambda: single("Pow", ("x", "x")), lambda: single("Pow", ("x", "e"), [const("e", 2.0)])),
    "compare-broadcast": (lambda: single("Equal", ("x", "b"), [const("b", np.ones((1, 4, 16, 1)))]),
                          lambda: single("Equal", ("x", "b"), [const("b", np.ones((1, 4, 1, 1)))])),
    "not-a-layer": (lambda: single("ArgMax", axis=1), lambda: single("Relu")),
}


def slice_(steps=None, axes=(2,), shape=(1, 4, 16, 16), start=0, end=8):
    inits = [const("st", [start], np.int64), const("en", [end], np.int64), const("ax", list(axes), np.int64)]
    inputs = ["x", "st", "en", "ax"]
    if steps is not None:
        inits.append(const("sp", steps, np.int64))
        inputs.append("sp")
    return single("Slice", inputs, inits, shape=shape)


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_sends_the_layer_to_the_gpu(rule):
    broken, within = RULES[rule]
    bad = placement(broken())
    assert bad.device == "GPU" and bad.reason, bad
    assert placement(within()).device == "DLA", placement(within())


def test_orin_only_layers_fall_back_on_xavier():
    for model in (single("Div", ("x", "x")), single("Softmax", axis=1)):
        assert placement(model, XAVIER).device == "GPU"
        assert placement(model, ORIN).device == "DLA"


def verdicts(model, *targets, precision=None):
    return [(p.device, p.checked) for p in (placement(model, t, precision) for t in targets)]


def test_div_and_pow_reach_dla_only_from_tensorrt_10():
    """NvInfer.h 8.5.2/8.6: Sum, Prod, Max, Min, Sub only; NVIDIA's Orin operator matrix dates Div to
    TensorRT 8.6.12 (DRIVE OS), which is not JetPack 6.0's 8.6.2; the 10.3 Operators reference has
    Div (at most one constant input) and Pow (exactly one)."""
    div, pow_ = single("Div", ("x", "x")), single("Pow", ("x", "e"), [const("e", 2.0)])
    for model in (div, pow_):
        assert verdicts(model, XAVIER, ORIN85, ORIN86, ORIN) == [("GPU", False if model is pow_ else True),
                                                                 ("GPU", False if model is pow_ else True),
                                                                 ("GPU", False), ("DLA", True)]
    assert placement(single("Min", ("x", "x"))).checked is False  # NvInfer.h has kMIN, the Orin matrix does not


def test_comparisons_per_version_board_and_precision():
    """Equal on Orin from 8.5.2, Greater/Less from 10.x (8.6.12 is DRIVE OS); INT8 only (Developer
    Guide); the sources document Orin only."""
    equal, greater = single("Equal", ("x", "x")), single("Greater", ("x", "x"))
    assert verdicts(equal, XAVIER, ORIN85, ORIN86, ORIN) == [("GPU", False), ("DLA", False), ("DLA", False),
                                                            ("DLA", False)]
    assert verdicts(greater, ORIN85, ORIN86, ORIN) == [("GPU", True), ("GPU", False), ("DLA", False)]
    assert verdicts(greater, ORIN, precision="int8") == [("DLA", True)]
    assert verdicts(greater, ORIN, precision="fp16") == [("GPU", True)]
    assert "INT8" in placement(equal).reason


def test_global_pooling_becomes_a_reduce_layer():
    """onnx-tensorrt imports GlobalAveragePool/GlobalMaxPool as Reduce layers: not on DLA in 8.5.2
    (Orin operator matrix), MAX only later (Operators reference, Reduce)."""
    gap, gmp = single("GlobalAveragePool", shape=(1, 4, 4, 4)), single("GlobalMaxPool", shape=(1, 4, 4, 4))
    assert verdicts(gap, XAVIER, ORIN85, ORIN86, ORIN) == [("GPU", True)] * 4
    assert verdicts(gmp, XAVIER, ORIN85, ORIN86, ORIN) == [("GPU", True), ("GPU", True), ("GPU", False),
                                                          ("DLA", False)]


def test_xavier_average_pooling_must_count_padding():
    """NvInfer.h 8.5.2: "On Xavier, DLA supports only inclusive padding"; ONNX's default
    count_include_pad=0 is exclusive."""
    pads = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    assert verdicts(single("AveragePool", **pads), XAVIER, ORIN) == [("GPU", True), ("DLA", True)]
    assert verdicts(single("AveragePool", count_include_pad=1, **pads), XAVIER) == [("DLA", True)]
    assert verdicts(single("AveragePool", kernel_shape=[2, 2]), XAVIER) == [("GPU", False)]  # no padding: unsure


def test_deconvolution_long_kernels():
    from segexport.exporter.dla import _deconv_size

    assert _deconv_size([1, 64]) and _deconv_size([128, 1]) and _deconv_size([32, 32])
    assert not _deconv_size([64, 64]) and not _deconv_size([1, 65]) and not _deconv_size([33, 1])


def test_squeeze_and_flatten_are_unsure_on_orin():
    """NVIDIA's Orin operator matrix lists Flatten/Squeeze/Unsqueeze as not through TensorRT."""
    model = single("Flatten", axis=1)
    assert verdicts(model, ORIN) == [("GPU", False)]


def test_dynamic_dims_are_an_error():
    model = single("Relu", shape=(1, 4, "H", "W"))
    report = lint_model(model, parser="none", target="orin-dla")
    assert [f.code for f in report.errors] == ["dla-dynamic"]
    assert all(p["device"] == "GPU" for p in report.dla["placements"])


def _chain(n: int):
    """``n`` DLA convolutions, each followed by a GPU-only Floor: 2n-1 transitions, n DLA parts."""
    nodes, inits, x = [], [], "x"
    for i in range(n):
        inits.append(const(f"w{i}", np.ones((4, 4, 1, 1))))
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"conv{i}"),
                  helper.make_node("Floor", [f"c{i}"], [f"f{i}"], name=f"floor{i}")]
        x = f"f{i}"
    return graph(nodes, [vi("x", [1, 4, 8, 8])], [vi(x, None)], inits, 17)


def test_transitions_and_parts_are_counted():
    report, _ = dla_preflight(_chain(3), ORIN)
    assert (report.on_dla, report.transitions, report.dla_segments) == (3, 5, 3)


def test_more_parts_than_a_core_loads_is_an_error():
    ok = lint_model(_chain(MAX_LOADABLES), parser="none", target="orin-dla")
    assert "dla-loadables" not in {f.code for f in ok.errors}
    bad = lint_model(_chain(MAX_LOADABLES + 1), parser="none", target="orin-dla")
    assert "dla-loadables" in {f.code for f in bad.errors}


def test_fallbacks_cite_the_document_and_version():
    report = lint_model(conv(33), parser="none", target="xavier-dla")
    (f,) = [f for f in report.findings if f.code == "dla-fallback"]
    assert "DLA Supported Layers and Restrictions" in f.message and "TensorRT 8.5.2" in f.message
    assert report.dla["unchecked"]  # what the CPU cannot know is said


def test_no_dla_report_for_a_gpu_target():
    assert lint_model(conv(3), parser="none", target="jetpack6").dla is None


@pytest.mark.parametrize("target", ["orin-dla", "xavier-dla"])
def test_every_zoo_model_gets_a_report(exports, target):
    from segexport.models.registry import list_models

    for spec in list_models():
        result = exports(spec.name, False)
        report = lint_model(result.path, parser="none", target=target)
        dla = report.dla
        assert dla is not None and dla["layers"] > 0 and dla["on_dla"] > 0, spec.name
        named = [p for p in dla["placements"] if p["op"] == "Conv"]
        assert named and all(p["module"] for p in named), spec.name  # each conv names its PyTorch module
        # a static export has no dynamic dims; the only DLA error left is a true one: the masked
        # unpooling of SegNet/DeconvNet (comparisons, 5-D shuffles) splits DLA into > 16 parts
        errors = {f.code for f in report.errors if f.code.startswith("dla")}
        assert errors <= {"dla-loadables"}, (spec.name, errors)
        assert (dla["dla_segments"] > 16) == bool(errors), (spec.name, dla["dla_segments"])
