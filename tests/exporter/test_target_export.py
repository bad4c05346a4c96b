"""``segexport onnx --target``: the target's opset (17 for TensorRT 8), recorded, verified against
PyTorch after the conversion, linted for that target; a graph needing a newer opset is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from segexport.errors import UserError
from segexport.exporter.export import ExportOptions, export_onnx
from segexport.exporter.metadata import read_record
from segexport.exporter.opset import convert_to_opset
from segexport.models.registry import list_models
from tests.conftest import TINY_WIDTH, assert_one_line_error, small_size
from tests.exporter.test_lint import const, graph, vi
from tests.exporter.test_third_party import STATIC as THIRD_PARTY_STATIC
from tests.exporter.test_third_party import ref

ZOO = [s.name for s in list_models()]
MISH = str(Path(__file__).with_name("mish_net.py")) + ":build"


@pytest.mark.parametrize("name", ZOO)
def test_zoo_exports_for_jetpack5_at_opset_17(name, tmp_path):
    out = tmp_path / f"{name}.onnx"
    result = export_onnx(ExportOptions(model=name, out=out, width=TINY_WIDTH, input_size=small_size(name),
                                       target="jetpack5"))
    model = onnx.load(str(out))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    record = read_record(model)
    assert (record.opset, record.target) == (17, "jetpack5")
    assert result.verify and all(row.passed for row in result.verify)  # ONNX Runtime on the converted file
    assert result.lint is not None and result.lint.target == "jetpack5" and not result.lint.errors
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(n.metadata_props for n in convs)  # module scopes survive the conversion
    from segexport.core.tensorrt import available

    if available("rtx"):  # TensorRT-RTX (opset 9+) still parses the opset-17 file
        from segexport.exporter.lint import lint_model

        assert not lint_model(out, parser="rtx").errors


def test_newer_op_is_refused_with_its_module(run_cli, tmp_path):
    result = run_cli("onnx", "--model", MISH, "--input-size", "32x32", "--out", tmp_path / "m.onnx",
                     "--target", "jetpack5")
    assert_one_line_error(result, "Mish exists from opset 18", "module act", "jetpack5")
    assert not (tmp_path / "m.onnx").exists()


def test_same_net_exports_for_tensorrt_10(run_cli, tmp_path):
    result = run_cli("onnx", "--model", MISH, "--input-size", "32x32", "--out", tmp_path / "m.onnx",
                     "--target", "jetpack6")
    assert result.exit_code == 0, result.stderr
    assert read_record(tmp_path / "m.onnx").target == "jetpack6"


def test_explicit_opset_above_the_target_is_refused(run_cli, tmp_path):
    assert_one_line_error(run_cli("onnx", "--model", "fcn8s", "--opset", "19", "--target", "jetpack5",
                                  "--out", tmp_path / "m.onnx"), "--opset 19", "jetpack5")


def test_dla_target_refuses_dynamic(run_cli, tmp_path):
    assert_one_line_error(run_cli("onnx", "--model", "fcn8s", "--dynamic", "hw", "--target", "orin-dla",
                                  "--out", tmp_path / "m.onnx"), "DLA", "--dynamic")


def _run(model, x):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_pad_axes_and_reduce_axes_are_rewritten_with_the_same_numbers():
    nodes = [helper.make_node("Pad", ["x", "pads", "", "axes"], ["p"], name="pad"),
             helper.make_node("ReduceMean", ["p", "raxes"], ["y"], keepdims=1, name="mean")]
    m = graph(nodes, [vi("x", [1, 2, 4, 5])], [vi("y", None)],
              [const("pads", [1, 2, 0, 3], np.int64), const("axes", [2, 3], np.int64),
               const("raxes", [1], np.int64)], opset=18)
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 5)).astype(np.float32)
    low = convert_to_opset(m, 17, target="jetpack5")
    assert low.opset_import[0].version == 17
    assert len(next(n for n in low.graph.node if n.op_type == "Pad").input) == 2
    np.testing.assert_array_equal(_run(low, x), _run(m, x))


def test_computed_axes_is_refused():
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Slice", ["s", "a", "b"], ["ax"]),
             helper.make_node("ReduceMax", ["x", "ax"], ["y"], name="rmax")]
    m = graph(nodes, [vi("x", [1, 2, 4, 5])], [vi("y", None)],
              [const("a", [0], np.int64), const("b", [1], np.int64)], opset=18)
    with pytest.raises(UserError, match="rmax.*computed at run time"):
        convert_to_opset(m, 17, target="jetpack5")


def test_old_files_without_a_target_still_read(tmp_path):
    from segexport.exporter.metadata import PREFIX

    out = tmp_path / "m.onnx"
    export_onnx(ExportOptions(model="fcn8s", out=out, width=TINY_WIDTH, input_size=(64, 64), verify=False))
    model = onnx.load(str(out))
    kept = [p for p in model.metadata_props if p.key != PREFIX + "target"]  # as written before targets
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    assert read_record(model).target is None
    model.metadata_props.add(key=PREFIX + "target", value='"jetpack4"')
    with pytest.raises(UserError, match="damaged.*jetpack4"):
        read_record(model)


# The third-party look-alikes (their output containers, upsampling and pooling idioms) for the
# TensorRT 8.5 of JetPack 5, as the zoo above: opset 17, verified after conversion, linted for it.
LOOK_ALIKES = [(f, flags) for f, flags, *_ in THIRD_PARTY_STATIC] + [
    ("hf_upernet", ["--input-size", "64x64"]),
    ("smp_dpt", ["--input-size", "48x40"]),
    ("monai_basicunetplusplus", ["--input-size", "33x37", "--output", "0"]),
]


@pytest.mark.parametrize("factory, flags", LOOK_ALIKES, ids=[f for f, _ in LOOK_ALIKES])
def test_third_party_look_alikes_export_for_jetpack5_at_opset_17(run_cli, tmp_path, factory, flags):
    out = tmp_path / f"{factory}.onnx"
    result = run_cli("onnx", "--model", ref(factory), *flags, "--target", "jetpack5", "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "lint: 0 errors" in result.stdout  # linted against TensorRT 8.5's support matrix
    model = onnx.load(str(out))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert (read_record(model).opset, read_record(model).target) == (17, "jetpack5")


def test_castlike_becomes_cast_with_the_same_numbers():
    """torch.onnx writes CastLike for a Python scalar in arithmetic; TensorRT 8.5 has only Cast."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    half = helper.make_tensor("half", onnx.TensorProto.DOUBLE, [], [0.5])
    nodes = [helper.make_node("CastLike", ["half", "x"], ["h"], name="scalar"),
             helper.make_node("Mul", ["x", "h"], ["y"], name="mul")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [half]), opset_imports=[helper.make_opsetid("", 18)])
    converted = convert_to_opset(model, 17, target="jetpack5")
    assert [n.op_type for n in converted.graph.node] == ["Cast", "Mul"]
    assert helper.get_attribute_value(converted.graph.node[0].attribute[0]) == onnx.TensorProto.FLOAT
    feed = {"x": np.arange(4, dtype=np.float32).reshape(1, 4)}
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]  # noqa: E731
    assert np.array_equal(run(converted), run(model))


@pytest.mark.parametrize("axis, bias", [(-1, True), (1, False)])
def test_layer_norm_is_decomposed_for_tensorrt_85_only(axis, bias):
    """TensorRT 8.5's parser has no LayerNormalization (8.6 has): for jetpack5 it becomes the
    spec's own ReduceMean/Sub/Mul/.../Div formula, the same numbers to float rounding."""
    rng = np.random.default_rng(0)
    shape = [2, 3, 4, 5]
    norm = shape[axis:]
    inits = [onnx.numpy_helper.from_array(rng.standard_normal(norm).astype(np.float32), "scale")]
    inputs = ["x", "scale"]
    if bias:
        inits.append(onnx.numpy_helper.from_array(rng.standard_normal(norm).astype(np.float32), "bias"))
        inputs.append("bias")
    node = helper.make_node("LayerNormalization", inputs, ["y"], name="ln", axis=axis, epsilon=1e-3)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    old = convert_to_opset(model, 17, target="jetpack5")
    assert "LayerNormalization" not in {n.op_type for n in old.graph.node}
    assert {n.op_type for n in convert_to_opset(model, 17, target="jetpack6.0").graph.node} == {"LayerNormalization"}
    feed = {"x": (rng.standard_normal(shape) * 3 + 1).astype(np.float32)}
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]  # noqa: E731
    assert np.allclose(run(old), run(model), rtol=1e-5, atol=1e-5)
