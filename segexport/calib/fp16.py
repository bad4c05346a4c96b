"""FP16 ONNX with float32 inputs/outputs, after an overflow/underflow analysis.

The conversion itself is onnxconverter-common's ``convert_float_to_float16`` (keep_io_types:
the application keeps feeding and reading float32). Before converting, every intermediate
tensor is measured on the calibration data in ONNX Runtime (FP32): a node whose output
exceeds half of FP16's range (65504; the margin leaves room for the larger inputs calibration
did not see) would overflow to inf, and one whose non-zero values mostly sit below FP16's
smallest normal (6.1e-5) would flush to zero. Those nodes stay in FP32 (``node_block_list``),
reported with the PyTorch module each came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from segexport.exporter.first_max import PADDING_MAGNITUDE

FP16_MAX = 65504.0
FP16_MIN_NORMAL = 6.103515625e-05
OVERFLOW_MARGIN = 0.5
UNDERFLOW_FRACTION = 0.5
# Ops whose float outputs are shapes/indices or that must not be converted.
_NON_NUMERIC = {"Shape", "Size", "Constant", "ConstantOfShape", "Range", "NonZero", "ArgMax", "ArgMin"}


@dataclass
class RangeRisk:
    node: str
    op: str
    module: str
    max_abs: float
    reason: str


def tensor_ranges(model: onnx.ModelProto, inputs: np.ndarray, input_name: str = "input", batch: int = 1) -> dict[str, tuple[float, float]]:
    """Output tensor -> (max |x|, fraction of non-zeros below FP16's smallest normal)."""
    from segexport.core.sessions import ort_session

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    value_types = {vi.name: vi.type.tensor_type.elem_type for vi in onnx.shape_inference.infer_shapes(probe).graph.value_info}
    names = []
    for node in probe.graph.node:
        if node.op_type in _NON_NUMERIC:
            continue
        for out in node.output:
            if out and out not in known and value_types.get(out) == onnx.TensorProto.FLOAT:
                probe.graph.output.append(onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None))
                names.append(out)
    names += [o.name for o in model.graph.output]
    sess = ort_session(probe)
    stats: dict[str, list[float]] = {n: [0.0, 0.0, 0.0] for n in names}  # max, tiny count, nonzero count
    for i in range(0, len(inputs), batch):
        chunk = inputs[i:i + batch]
        if len(chunk) < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
        outs = sess.run(names, {input_name: chunk})
        for name, value in zip(names, outs):
            # float32 masks, no copies: every intermediate of every image passes through here, and
            # the float64 copy and fancy-indexed subsets this once made were most of fp16's time
            a = np.abs(np.asarray(value, dtype=np.float32))
            s = stats[name]
            top = float(a.max(initial=0.0))
            if top < PADDING_MAGNITUDE:  # the usual case, every value usable: four passes over the tensor, not nine
                nonzero = np.count_nonzero(a)
                s[0] = max(s[0], top)
                s[1] += float(np.count_nonzero(a < FP16_MIN_NORMAL) - (a.size - nonzero))
                s[2] += float(nonzero)
                continue
            usable = a < PADDING_MAGNITUDE  # False for NaN/inf; pool padding is intended (it becomes -inf in FP16)
            s[0] = max(s[0], float(np.max(a, where=usable, initial=0.0)))
            s[1] += float(np.count_nonzero((a > 0) & (a < FP16_MIN_NORMAL)))
            s[2] += float(np.count_nonzero((a > 0) & usable))
    return {n: (s[0], s[1] / s[2] if s[2] else 0.0) for n, s in stats.items()}


def find_risks(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]]) -> list[RangeRisk]:
    from segexport.core.graph import module_of

    risks = []
    for node in model.graph.node:
        for out in node.output:
            if out not in ranges:
                continue
            max_abs, tiny = ranges[out]
            if max_abs > FP16_MAX * OVERFLOW_MARGIN:
                risks.append(RangeRisk(node.name, node.op_type, module_of(node), max_abs,
                                       f"max |x| {max_abs:.3g} > {OVERFLOW_MARGIN:g} x FP16 max: would overflow"))
            elif tiny > UNDERFLOW_FRACTION and node.op_type not in ("Relu",):
                risks.append(RangeRisk(node.name, node.op_type, module_of(node), max_abs,
                                       f"{100 * tiny:.0f}% of non-zero values below FP16's smallest normal: would flush to 0"))
            break
    return risks


def convert_fp16(model: onnx.ModelProto, block: list[str]) -> onnx.ModelProto:
    """FP16 weights and activations, float32 I/O, the ``block`` nodes kept in FP32.

    The graph is converted with FP16 inputs/outputs and then wrapped in float32 casts here:
    onnxconverter-common's own ``keep_io_types`` path fails on graphs whose input also feeds
    a ``Shape`` node (DeepLab's interpolate-to-input-size) in its cast clean-up.
    """
    from onnxconverter_common import float16

    from segexport.core.exact import exact_region, restore_exact_inputs

    # comparisons and what they compare stay in float32: a first-max or argmax over values some
    # of which were rounded to FP16 and some not is not the comparison PyTorch made
    block = list(block) + [n.name for n in exact_region(model) if n.name and n.name not in block]
    model = _unshare_initializers(model, set(block))
    del model.graph.value_info[:]  # stale FP32 types would contradict the casts around blocked nodes
    converted = float16.convert_float_to_float16(model, keep_io_types=False, node_block_list=list(block),
                                                 disable_shape_infer=False)
    _float32_io(converted)
    restore_exact_inputs(converted)
    del converted.graph.value_info[:]
    converted = onnx.shape_inference.infer_shapes(converted)
    del converted.metadata_props[:]
    converted.metadata_props.extend(model.metadata_props)
    return converted


def _unshare_initializers(model: onnx.ModelProto, block: set[str]) -> onnx.ModelProto:
    """Give FP32-kept nodes their own copy of initializers they share with FP16 nodes.

    onnxslim merges identical initializers (e.g. the all-zero biases of untrained layers); the
    converter then keeps the shared tensor in FP32 for *every* user and breaks the FP16 ones.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if not block:
        return out
    inits = {i.name: i for i in out.graph.initializer}
    users: dict[str, set[str]] = {}
    for node in out.graph.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.name)
    taken = set(inits) | {o for n in out.graph.node for o in n.output} | {i.name for i in out.graph.input}
    for node in out.graph.node:
        if node.name not in block:
            continue
        copies: dict[str, str] = {}  # one copy per tensor per node: a node may read one initializer twice
        for k, name in enumerate(node.input):
            if name in inits and users[name] - block:
                if name not in copies:
                    copy = onnx.TensorProto()
                    copy.CopyFrom(inits[name])
                    copy.name = _unique(f"{name}__{node.name}_fp32", taken)
                    out.graph.initializer.append(copy)
                    copies[name] = copy.name
                node.input[k] = copies[name]
    return out


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... whichever is free; marks it taken."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def _float32_io(model: onnx.ModelProto) -> None:
    """Make FP16 graph inputs/outputs float32 again with Cast nodes at the edges."""
    from onnx import TensorProto, helper

    graph = model.graph
    casts_in = []
    for inp in graph.input:
        if inp.type.tensor_type.elem_type != TensorProto.FLOAT16:
            continue
        inner = f"{inp.name}_fp16"
        for node in graph.node:
            node.input[:] = [inner if i == inp.name else i for i in node.input]
        casts_in.append(helper.make_node("Cast", [inp.name], [inner], to=TensorProto.FLOAT16, name=f"{inp.name}_to_fp16"))
        inp.type.tensor_type.elem_type = TensorProto.FLOAT
    casts_out = []
    for out in graph.output:
        if out.type.tensor_type.elem_type != TensorProto.FLOAT16:
            continue
        inner = f"{out.name}_fp16"
        for node in graph.node:
            node.output[:] = [inner if o == out.name else o for o in node.output]
            node.input[:] = [inner if i == out.name else i for i in node.input]
        casts_out.append(helper.make_node("Cast", [inner], [out.name], to=TensorProto.FLOAT, name=f"{out.name}_to_fp32"))
        out.type.tensor_type.elem_type = TensorProto.FLOAT
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)
