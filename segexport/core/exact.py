"""The exact region of a graph: the nodes whose result rests on exact float equality or order.

Why this exists: segexport's unpool rewrite marks each window's first maximum with
``Equal(slice, max)``, an argmax head picks a channel by order, a first-max tie-break compares
neighbours. Those comparisons are right only if every operand is the *same* float the others
were computed from. A precision pass that rewrites a tensor for all its consumers breaks that
silently: ONNX Runtime's QDQ quantizer gives the pooled maximum one Q/DQ pair for the Conv that
reads it, and the ``Equal`` beside that Conv then compares the float slices against a quantized
copy of their own maximum -- almost never equal, so the unpool mask is empty and the decoder
sees zeros (trained SegNet INT8: 93.9 -> 17.5 mIoU). FP16 conversion has the same shape of bug
with ``Cast`` round trips, and ModelOpt's Q/DQ placement too (it is a property of the graph,
not of one quantizer).

The rule, applied at the depth where it arises (after any precision pass, on any graph):

* the region starts at the comparison and order ops (``EXACT_OPS``) and grows backwards
  through ops that only *move* values (``VALUE_MOVING_OPS``: slices, max/min, pads, reshapes),
  since a comparison of moved values is a comparison of their sources;
* a node of the region never reads a *reduced copy* of a tensor: ``DequantizeLinear
  (QuantizeLinear(t))`` or ``Cast(Cast(t, lower), back)``; :func:`restore_exact_inputs` rewires
  such inputs to ``t`` itself, so the comparison sees the float its other operands came from,
  while the Conv that wanted the quantized copy keeps it;
* :func:`exact_violations` finds what is left (a graph from another tool, a pass added later)
  so the self-check of every reduced artefact can refuse it with the module named.

Graph-only (onnx protos, no runtime), like :mod:`segexport.core.graph`.
"""

from __future__ import annotations

from dataclasses import dataclass

# Comparisons and order: their output depends on exact equality/order of their float inputs.
EXACT_OPS = frozenset({"Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual",
                       "ArgMax", "ArgMin", "TopK"})
# Ops whose outputs are copies (or maxima/minima) of input values: the region extends through
# them, because comparing their outputs is comparing their inputs' values.
VALUE_MOVING_OPS = frozenset({"Slice", "Max", "Min", "Pad", "Reshape", "Transpose", "Concat", "Identity",
                              "Squeeze", "Unsqueeze", "Flatten", "Gather", "GatherElements", "Split",
                              "Expand", "Tile", "MaxPool", "ReduceMax", "ReduceMin", "DepthToSpace",
                              "SpaceToDepth"})
_FLOAT_RANK = {1: 32, 10: 16, 16: 16, 11: 64}  # FLOAT, FLOAT16, BFLOAT16, DOUBLE: bits of precision order


@dataclass(frozen=True)
class ReducedCopy:
    """``node`` (in the exact region) reads ``copy``, a reduced-precision copy of ``source``."""

    node: str
    op: str
    module: str
    copy: str
    source: str
    how: str  # "Q/DQ" or "Cast round trip"


def _producers(graph) -> dict:
    return {o: n for n in graph.node for o in n.output if o}


def exact_region(model) -> list:
    """The nodes of the exact region, in graph order (see the module docstring)."""
    graph = model.graph
    producer = _producers(graph)
    region: dict[int, object] = {}
    todo = [n for n in graph.node if n.op_type in EXACT_OPS]
    while todo:
        node = todo.pop()
        if id(node) in region:
            continue
        region[id(node)] = node
        for name in node.input:
            src = producer.get(name)
            while src is not None and _reduced_source(src, producer) is not None:
                src = producer.get(_reduced_source(src, producer)[0])  # look through the copy
            if src is not None and src.op_type in VALUE_MOVING_OPS:
                todo.append(src)
    return [n for n in graph.node if id(n) in region]


def _reduced_source(node, producer: dict) -> tuple[str, str] | None:
    """(source tensor, how) when ``node``'s output is a reduced copy of ``source``, else None."""
    if node.op_type == "DequantizeLinear":
        q = producer.get(node.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            return q.input[0], "Q/DQ"
        return None
    if node.op_type == "Cast":
        inner = producer.get(node.input[0])
        if inner is None or inner.op_type != "Cast":
            return None
        back, down = _cast_to(node), _cast_to(inner)
        if back in _FLOAT_RANK and down in _FLOAT_RANK and _FLOAT_RANK[down] < _FLOAT_RANK[back]:
            return inner.input[0], "Cast round trip"
    return None


def _cast_to(node) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)


def exact_violations(model) -> list[ReducedCopy]:
    """Every input of an exact-region node that is a reduced copy of another tensor."""
    from segexport.core.graph import module_of

    producer = _producers(model.graph)
    found = []
    for node in exact_region(model):
        for name in node.input:
            src = producer.get(name)
            got = _reduced_source(src, producer) if src is not None else None
            if got is not None:
                found.append(ReducedCopy(node.name, node.op_type, module_of(node), name, got[0], got[1]))
    return found


def restore_exact_inputs(model) -> int:
    """Rewire every exact-region input that reads a reduced copy to the copy's source, in place.

    Only the region's own reads change: the Conv (or FP16 node) that the copy was made for keeps
    reading it. Copies nobody reads any more are removed. Returns how many inputs were rewired.
    """
    graph = model.graph
    rewired = 0
    for _ in range(8):  # a copy of a copy (Q/DQ after a Cast round trip) unwinds in a few passes
        producer = _producers(graph)
        changed = 0
        for node in exact_region(model):
            for k, name in enumerate(node.input):
                src = producer.get(name)
                got = _reduced_source(src, producer) if src is not None else None
                if got is not None:
                    node.input[k] = got[0]
                    changed += 1
        rewired += changed
        if not changed:
            break
    _drop_unread(model)
    return rewired


def _drop_unread(model) -> None:
    """Remove Q/DQ and Cast nodes whose outputs nothing reads (left behind by the rewiring)."""
    graph = model.graph
    while True:
        read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Cast")
                and not any(o in read for o in n.output)]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)
