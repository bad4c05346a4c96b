"""Questions asked of an ONNX graph by several steps: is it quantized, must it build strongly
typed, which PyTorch module did a node come from. Graph-only (no torch, no TensorRT), so
calib, engines and lint ask them the same way.
"""

from __future__ import annotations


def has_qdq(onnx_model) -> bool:
    """The graph quantizes activations (a QuantizeLinear node): an INT8 model, TensorRT 11 style."""
    return any(n.op_type == "QuantizeLinear" for n in onnx_model.graph.node)


def needs_strong_typing(onnx_model) -> bool:
    """An ONNX whose precision is explicit (Q/DQ or FP16 tensors) must be built strongly typed."""
    import onnx

    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in onnx_model.graph.node):
        return True
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in onnx_model.graph.initializer)


def held_precision(onnx_model) -> str:
    """The precision an ONNX holds, read from the graph (never from metadata, which a file may
    misstate): Q/DQ is INT8, FP16 tensors FP16, else FP32."""
    if has_qdq(onnx_model):
        return "int8"
    return "fp16" if needs_strong_typing(onnx_model) else "fp32"


def module_of(node) -> str:
    """The qualified name of the PyTorch module ``node`` came from ("" when unknown).

    The exporter's ``name_scopes`` lists the module path from the root (qualified names,
    e.g. ``encoder.pools.0``) and ends with the aten op; the last module entry is the one.
    """
    import ast

    # node metadata comes from the file: a hostile one (100,000 characters, nested a thousand
    # levels deep) must neither crash the parser nor flood the one-line findings
    meta = {p.key: p.value for p in node.metadata_props if len(p.value) <= MAX_SCOPE_CHARS}
    try:
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
        scopes = []
    if not isinstance(scopes, (list, tuple)) or not all(isinstance(s, str) for s in scopes):
        scopes = []
    if len(scopes) >= 2:
        return next((s for s in reversed(scopes[:-1]) if s), "")[:200]
    segments = [seg.split(":")[0].strip() for seg in meta.get("namespace", "").split("/")]
    return segments[-2][:200] if len(segments) >= 2 else ""


MAX_SCOPE_CHARS = 10_000


def attribute(node, name: str, default=None):
    """The value of ``node``'s attribute ``name`` (``default`` when absent), as onnx.helper reads it."""
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def constant_values(onnx_model) -> dict:
    """Tensor name -> numpy value of every initializer and ``Constant(value=...)`` output."""
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in onnx_model.graph.initializer}
    for n in onnx_model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    values[n.output[0]] = numpy_helper.to_array(a.t)
    return values


def as_text(v) -> str:
    """A string attribute as text (onnx gives bytes)."""
    return v.decode() if isinstance(v, bytes) else str(v)


# Ops that never fold: their output differs run to run even from constant inputs.
_NOT_FOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
                 "If", "Loop", "Scan"}


def folded_constants(model) -> set[str]:
    """Tensors whose value is known before any input arrives: initializers, Constant outputs,
    and (transitively) the outputs of any deterministic node whose inputs are all such tensors.

    TensorRT's parser folds those subgraphs itself (a GroupNorm's ``Unsqueeze`` axes computed by
    ``Range(0, 2, 1)`` build fine in TensorRT-RTX), so "must be constant" is judged after that
    folding; only a value that depends on the input (e.g. through ``Shape`` of a dynamic tensor)
    is reported.
    """
    return _closure(model, {i.name for i in model.graph.initializer}, sources=("Constant",))


def size_only_tensors(model) -> set[str]:
    """Tensors whose value depends on the input's *size* at most, never on its pixels: the folded
    constants, the outputs of ``Shape``/``Size``, and (transitively) of any deterministic node whose
    inputs are all such tensors.

    Why: a dynamic export of a transformer builds per-size index tables in the graph (Hugging Face
    BEiT's relative position index is written with in-place index assignments, lowered to
    ScatterND / ScatterElements). Those scatters are not the unpooling lowering lint warns about:
    their work is set by the size, whatever the image holds.
    """
    return _closure(model, {i.name for i in model.graph.initializer}, sources=("Constant", "Shape", "Size"))


def _closure(model, known: set[str], sources: tuple[str, ...]) -> set[str]:
    """``known`` grown, in graph order (ONNX graphs are topologically sorted), by the outputs of every
    ``sources`` node and of every deterministic node whose inputs are all known."""
    for node in model.graph.node:
        if node.op_type in _NOT_FOLDABLE or node.domain not in ("", "ai.onnx"):
            continue
        ins = [i for i in node.input if i]
        if node.op_type in sources or (ins and all(i in known for i in ins)):
            known.update(o for o in node.output if o)
    return known
