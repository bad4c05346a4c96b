"""Targets: the registry, and lint against each TensorRT version's support matrix and opset."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from segexport.core.targets import TARGETS, get_target
from segexport.errors import UserError
from segexport.exporter.lint import lint_model
from tests.conftest import assert_one_line_error
from tests.exporter.test_lint import codes, const, graph, one_node, vi


def test_registry_names_the_tensorrt_each_board_has():
    assert (get_target("jetpack5").trt_version, get_target("jetpack5").opset_max) == ("8.5.2", 17)
    assert (get_target("jetpack6.0").trt_version, get_target("jetpack6.0").opset_max) == ("8.6.2", 17)
    assert get_target("jetpack6").trt_version == "10.3.0"
    assert get_target("xavier-dla").trt_version == "8.5.2" and get_target("xavier-dla").dla == "xavier"
    assert get_target("orin-dla").dla == "orin" and get_target("orin-dla").jetpack == "6.1"
    assert not any(TARGETS[n].dla for n in ("trt11", "rtx"))  # DLA ended with TensorRT 10.7
    assert get_target(None).name == "trt10"


def test_unknown_target_is_one_line_error():
    with pytest.raises(UserError, match="not a known target.*jetpack5"):
        get_target("jetpack4")


@pytest.mark.parametrize("target", ["jetpack5", "jetpack6.0", "xavier-dla"])
def test_opset_18_is_an_error_for_tensorrt_8(target):
    report = lint_model(one_node("Relu", opset=18), parser="none", target=target)
    assert ("error", "opset") in codes(report)
    assert not lint_model(one_node("Relu", opset=17), parser="none", target=target).errors


def test_opset_18_is_fine_for_tensorrt_10():
    assert not lint_model(one_node("Relu", opset=18), parser="none", target="jetpack6").errors


def _layernorm():
    return one_node("LayerNormalization", inputs=("x", "g", "b"), opset=17, axis=-1,
                    inits=[const("g", np.ones(8)), const("b", np.zeros(8))])


@pytest.mark.parametrize("target,error", [("jetpack5", True), ("jetpack6.0", False), ("jetpack6", False)])
def test_layer_normalization_only_from_tensorrt_8_6(target, error):
    report = lint_model(_layernorm(), parser="none", target=target)
    assert (("error", "unsupported-op") in codes(report)) is error


@pytest.mark.parametrize("target,error", [("jetpack5", True), ("jetpack6.0", True), ("trt10", False)])
def test_castlike_is_missing_before_tensorrt_10(target, error):
    m = one_node("CastLike", inputs=("x", "t"), opset=17, inits=[const("t", [1.0])])
    assert (("error", "unsupported-op") in codes(lint_model(m, parser="none", target=target))) is error


def test_topk_k_must_be_an_initializer_on_8_5():
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "i"], ["k1"], axis=0),
             helper.make_node("Unsqueeze", ["k1", "ax"], ["k"]),
             helper.make_node("TopK", ["x", "k"], ["v", "idx"], name="topk")]
    m = graph(nodes, [vi("x", [1, "N"])], [vi("v", None), vi("idx", None, TensorProto.INT64)],
              [const("i", 1, np.int64), const("ax", [0], np.int64)], opset=17)
    assert ("error", "topk-k-initializer") in codes(lint_model(m, parser="none", target="jetpack5"))
    assert ("error", "topk-k-initializer") not in codes(lint_model(m, parser="none", target="jetpack6.0"))


def test_fp8_qdq_needs_tensorrt_10():
    inits = [const("s", 0.05), const("zp", 0, np.int8)]
    m = graph([helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
               helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"])], [vi("x", [1, 3, 4, 4])],
              [vi("y", None)], inits, opset=17)
    fp8 = helper.make_tensor("zp", TensorProto.FLOAT8E4M3FN, [], [0])
    m.graph.initializer[1].CopyFrom(fp8)
    assert ("error", "qdq-type") in codes(lint_model(m, parser="none", target="jetpack6.0"))
    assert ("error", "qdq-type") not in codes(lint_model(m, parser="none", target="trt10"))


def test_lint_cli_takes_target(run_cli, tmp_path):
    import onnx

    path = tmp_path / "m.onnx"
    onnx.save(one_node("Relu", opset=18), str(path))
    bad = run_cli("lint", path, "--target", "jetpack5", "--parser", "none", "--json")
    assert bad.exit_code == 1 and '"target": "jetpack5"' in bad.stdout
    assert_one_line_error(run_cli("lint", path, "--target", "nope", "--parser", "none"), "not a known target")
