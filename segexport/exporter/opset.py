"""Bring an export from opset 18 down to 17, the opset TensorRT 8.5/8.6 parse.

torch.onnx's dynamo exporter writes opset 18 or newer, so an older parser's opset is reached by
conversion. ONNX's own ``version_converter`` cannot do this step for the graphs segexport
writes (onnx 1.23 has no 18 -> 17 adapter for ``Pad``, which every padded decoder holds), so
the step is done here, op by op, for exactly the ops whose definition changed at opset 18:

* ``Pad``: the new optional ``axes`` input (constant: expanded into full ``pads``);
* ``Reduce{Max,Min,Mean,Prod,L1,L2,LogSum,LogSumExp,SumSquare}``: ``axes`` moved from an
  attribute to an input (constant: moved back);
* ``Resize``: new ``antialias``, ``axes``, ``keep_aspect_ratio_policy`` (only their defaults
  exist at 17);
* ``ScatterND`` / ``ScatterElements``: new ``max``/``min`` reductions;
* ``Split``: new ``num_outputs`` (opset 13-17 splits equally by the number of outputs);
* ``LpPool``: new ``dilations`` and ``ceil_mode`` (defaults only).

Any other op added at 18 (GroupNormalization, Mish, Col2Im, CenterCropPad, Bitwise*) has no
opset-17 form: the export is refused naming the node and its PyTorch module. A node that
cannot be rewritten (a computed ``axes``) is refused the same way. The caller verifies the
*converted* graph against PyTorch, so a rewrite that changed the numbers cannot pass.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from segexport.core.graph import attribute as _attr, constant_values, module_of
from segexport.errors import UserError

REDUCE_OPS = {"ReduceMax", "ReduceMin", "ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
              "ReduceLogSumExp", "ReduceSumSquare"}


def _drop_attrs(node: onnx.NodeProto, *names: str) -> None:
    kept = [a for a in node.attribute if a.name not in names]
    del node.attribute[:]
    node.attribute.extend(kept)


class _Refused(Exception):
    pass


def _constant(values: dict[str, np.ndarray], name: str, what: str) -> np.ndarray:
    if name not in values:
        raise _Refused(f"its {what} is computed at run time (opset 17 needs it fixed)")
    return values[name]


def _rewrite(node: onnx.NodeProto, values: dict[str, np.ndarray], ranks: dict[str, int], new_inits: list) -> None:
    """Rewrite ``node`` (an opset-18 op) into its opset-17 form in place, or raise _Refused."""
    op = node.op_type
    if op == "Pad":
        if len(node.input) > 3 and node.input[3]:
            axes = _constant(values, node.input[3], "axes").astype(int).tolist()
            pads = _constant(values, node.input[1], "pads").astype(int).tolist()
            rank = ranks.get(node.input[0])
            if rank is None:
                raise _Refused("its input rank is unknown, so its pads cannot be expanded")
            full = [0] * (2 * rank)
            for i, axis in enumerate(axes):
                axis %= rank
                full[axis], full[axis + rank] = pads[i], pads[i + len(axes)]
            name = f"{node.name or node.output[0]}_pads17"
            new_inits.append(numpy_helper.from_array(np.asarray(full, np.int64), name))
            node.input[1] = name
            del node.input[3:]
            while node.input and not node.input[-1]:  # no trailing empty optional inputs
                del node.input[-1]
    elif op in REDUCE_OPS:
        if len(node.input) > 1 and node.input[1]:
            axes = _constant(values, node.input[1], "axes").astype(int).tolist()
            del node.input[1:]
            node.attribute.append(helper.make_attribute("axes", axes))
        elif _attr(node, "noop_with_empty_axes", 0):
            raise _Refused("noop_with_empty_axes=1 has no opset-17 form")
        _drop_attrs(node, "noop_with_empty_axes")
    elif op == "Resize":
        if _attr(node, "antialias", 0) or _attr(node, "axes") is not None or \
                (_attr(node, "keep_aspect_ratio_policy", b"stretch") not in (b"stretch", "stretch")):
            raise _Refused("it uses antialias, axes or keep_aspect_ratio_policy (opset 18 only)")
        _drop_attrs(node, "antialias", "axes", "keep_aspect_ratio_policy")
    elif op in ("ScatterND", "ScatterElements"):
        if _attr(node, "reduction", b"none") in (b"max", b"min", "max", "min"):
            raise _Refused("its max/min reduction exists from opset 18")
    elif op == "Split":
        if _attr(node, "num_outputs") is not None:
            if _attr(node, "num_outputs") != len(node.output):
                raise _Refused("num_outputs differs from its outputs")
            _drop_attrs(node, "num_outputs")
    elif op == "LpPool":
        if _attr(node, "ceil_mode", 0) or any(d != 1 for d in (_attr(node, "dilations") or [])):
            raise _Refused("ceil_mode/dilations exist from opset 18")
        _drop_attrs(node, "ceil_mode", "dilations")
    else:
        raise _Refused(f"{op} exists from opset 18")


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every typed value (inputs, initializers, inferred intermediates)."""
    g = model.graph
    types = {t.name: t.data_type for t in g.initializer}
    for v in list(g.input) + list(g.value_info) + list(g.output):
        if v.type.tensor_type.elem_type:
            types[v.name] = v.type.tensor_type.elem_type
    return types


def _castlike_as_cast(node: onnx.NodeProto, types: dict[str, int]) -> None:
    """``CastLike(x, like)`` (opset 15, what torch.onnx writes for a Python scalar in arithmetic)
    -> ``Cast(x, to=dtype(like))``: the same op once ``like``'s type is known, and TensorRT 8.5's
    parser has Cast but not CastLike (onnx-tensorrt 8.5-GA docs/operators.md). A ``like`` of no
    known type is left alone for lint to name."""
    to = types.get(node.input[1]) if len(node.input) > 1 else None
    if not to:
        return
    del node.input[1:]
    del node.attribute[:]  # saturate (opset 19) only matters for float8, which opset 17 has not
    node.op_type = "Cast"
    node.attribute.append(onnx.helper.make_attribute("to", to))


def _missing_ops(target: str) -> frozenset[str]:
    """Ops of opset 17 that the target's TensorRT parser lacks (its support matrix)."""
    from segexport.core.targets import get_target
    from segexport.exporter.support_matrix import EXTRA_UNSUPPORTED

    try:
        return EXTRA_UNSUPPORTED.get(get_target(target).matrix, frozenset())
    except UserError:
        return frozenset()


def _decompose_layer_norms(model: onnx.ModelProto, types: dict[str, int], ranks: dict[str, int],
                           new_inits: list) -> None:
    """``LayerNormalization`` (opset 17) as ReduceMean/Sub/Mul/ReduceMean/Add/Sqrt/Div/Mul/Add, the
    definition in the ONNX spec, for TensorRT 8.5, whose parser has no LayerNormalization
    (onnx-tensorrt 8.5-GA docs/operators.md); 8.6 parses it and keeps its own node. Export
    verification then runs the decomposed graph against PyTorch. A node whose Mean/InvStdDev
    outputs are used, or whose rank is unknown for a positive axis, is left for lint to name."""
    from onnx import helper, numpy_helper

    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.op_type != "LayerNormalization" or node.domain not in ("", "ai.onnx") or \
                any(o for o in node.output[1:]):
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axis, eps = int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5))
        x = node.input[0]
        if axis >= 0:
            if x not in ranks:
                nodes.append(node)
                continue
            axis -= ranks[x]
        axes = list(range(axis, 0))
        dtype = onnx.helper.tensor_dtype_to_np_dtype(types.get(x, onnx.TensorProto.FLOAT))
        stem = node.name or node.output[0]
        new_inits.append(numpy_helper.from_array(np.asarray(eps, dtype=dtype), f"{stem}/epsilon"))
        t = {k: f"{stem}/{k}" for k in ("mean", "centred", "square", "var", "var_eps", "std", "normed", "scaled")}
        out = node.output[0]
        has_bias = len(node.input) > 2 and bool(node.input[2])
        parts = [("ReduceMean", [x], t["mean"], {"axes": axes, "keepdims": 1}),
                 ("Sub", [x, t["mean"]], t["centred"], {}),
                 ("Mul", [t["centred"], t["centred"]], t["square"], {}),
                 ("ReduceMean", [t["square"]], t["var"], {"axes": axes, "keepdims": 1}),
                 ("Add", [t["var"], f"{stem}/epsilon"], t["var_eps"], {}),
                 ("Sqrt", [t["var_eps"]], t["std"], {}),
                 ("Div", [t["centred"], t["std"]], t["normed"], {}),
                 ("Mul", [t["normed"], node.input[1]], t["scaled"] if has_bias else out, {})]
        if has_bias:
            parts.append(("Add", [t["scaled"], node.input[2]], out, {}))
        for i, (op, inputs, output, kw) in enumerate(parts):
            made = helper.make_node(op, inputs, [output], name=f"{stem}/{op.lower()}_{i}", **kw)
            made.metadata_props.extend(node.metadata_props)  # lint and debug keep naming the module
            nodes.append(made)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def convert_to_opset(model: onnx.ModelProto, opset: int, *, target: str) -> onnx.ModelProto:
    """``model`` (opset 18) at ``opset`` (17); a UserError naming the node and PyTorch module
    that needs the newer opset."""
    current = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if current <= opset:
        return model
    if (current, opset) != (18, 17):
        raise UserError(f"segexport converts opset 18 to 17 only, not {current} to {opset}: export with the "
                        "default --opset 18")
    values = constant_values(model)
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in
             list(inferred.graph.value_info) + list(inferred.graph.input) if v.type.tensor_type.HasField("shape")}
    converted = onnx.ModelProto()
    converted.CopyFrom(model)
    new_inits: list = []
    refused: list[tuple[onnx.NodeProto, str]] = []
    types = _elem_types(inferred)
    for node in converted.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "CastLike":
            _castlike_as_cast(node, types)
            continue
        if onnx.defs.get_schema(node.op_type, current, "").since_version <= opset:
            continue  # the same definition holds at the target opset
        try:
            _rewrite(node, values, ranks, new_inits)
        except _Refused as refusal:
            refused.append((node, str(refusal)))
    if refused:
        first, why = refused[0]
        module = module_of(first) or "an unnamed module"
        raise UserError(f"--target {target} parses opset <= {opset}, but node {first.name!r} ({first.op_type}) from "
                        f"module {module} needs a newer one: {why} ({len(refused)} such node(s)); replace that "
                        "module, or choose a target with TensorRT 10 (jetpack6, trt10)")
    if "LayerNormalization" in _missing_ops(target):
        _decompose_layer_norms(converted, types, ranks, new_inits)
    converted.graph.initializer.extend(new_inits)
    for o in converted.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = opset
    del converted.graph.value_info[:]
    converted = onnx.shape_inference.infer_shapes(converted, strict_mode=True, data_prop=True)
    onnx.checker.check_model(converted, full_check=True)
    return converted
