"""``segexport debug``: the first PyTorch module whose output a reduced model gets wrong.

The question users of every deployment tool ask ("the fastest way to find the first layer with
a large accuracy error") is usually answered by marking every tensor an output and comparing
them all: that runs out of memory on big models, changes fusion on TensorRT, and names layers
``/Conv_213_output_0``. This answers it by *module*, in the PyTorch model's own dotted names
(the exporter keeps them in each node's metadata), in bounded memory:

1. Module outputs. Nodes are grouped by the innermost module they came from; a module's outputs
   are the tensors its nodes write that another module (or the graph output) reads. Modules are
   ordered by where their last output is computed.
2. Exact modules, then a frontier and bisection. Modules that hold comparisons (an unpool mask,
   an argmax) are all compared first: their error is discrete and shows up modules later, not
   in the next layer. Then ``frontier`` modules spread over the order are compared at once
   (their outputs marked with Polygraphy's ``ModifyOutputs`` in both graphs, run in ONNX
   Runtime); the first one past the precision's noise bounds an interval that is searched the
   same way, until the interval is one module. At most ``frontier`` modules' tensors exist at a
   time; about ``frontier x log_frontier(modules)`` module comparisons in all. Like any
   bisection it assumes error does not vanish once it has appeared (a spike that later layers
   undo can be stepped over; the table shows every module that was measured).
3. What it does to the labels. The first diverging module's reduced outputs are spliced into
   the fp32 graph (its outputs become inputs fed with the reduced values) and the fp32 graph's
   labels are compared with its own: the share of labels that module alone changes.

Error of a float tensor: ||ref - cand|| / ||ref|| (relative L2), its noise bound per precision
in ``NOISE``; of a bool tensor (a mask): the share of elements that differ. Written by hand
because no library maps ONNX tensors to PyTorch modules or bisects by them; marking outputs is
Polygraphy's and running them ONNX Runtime's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from segexport.errors import UserError

# relative L2 a module output may drift by before it counts as diverged (a bool tensor: share of
# elements that flip). fp16 keeps ~3 decimal digits; int8 moves activations by a few percent per
# layer and accumulates: these bounds sit above what trained fixtures show (docs/precision.md, debug).
NOISE = {"fp16": 1e-2, "int8": 0.2, "fp32": 1e-4}
BOOL_NOISE = {"fp16": 1e-3, "int8": 1e-2, "fp32": 0.0}


@dataclass
class ModuleError:
    module: str
    ops: list[str]
    tensors: list[str]
    error: float  # worst relative L2 (or bool mismatch share) over the module's outputs
    kind: str  # "rel-L2" or "mask mismatch"
    diverged: bool
    label_agreement: float | None = None  # final labels of fp32 with only this module reduced


@dataclass
class Localization:
    reference: str
    candidate: str
    precision: str
    inputs: str
    modules: int  # modules with comparable outputs
    measured: list[ModuleError] = field(default_factory=list)  # in graph order
    first: ModuleError | None = None
    final_agreement: float | None = None  # labels of the whole reduced model vs fp32
    fix: str = ""

    def to_dict(self) -> dict:
        return {"schema": 1, **asdict(self)}


@dataclass
class _Module:
    name: str
    ops: list[str]
    outputs: list[str]
    exact: bool  # holds comparisons (Equal, ArgMax...): an error here is a broken exact region


def module_outputs(model: onnx.ModelProto, candidate: onnx.ModelProto) -> list[_Module]:
    """Modules of ``model`` in graph order with their outputs that ``candidate`` also computes."""
    from segexport.core.exact import EXACT_OPS
    from segexport.core.graph import module_of

    graph = model.graph
    owner: dict[str, str] = {}
    nodes_of: dict[str, list] = {}
    for node in graph.node:
        m = module_of(node)
        if not m:
            continue
        nodes_of.setdefault(m, []).append(node)
        for o in node.output:
            owner[o] = m
    readers: dict[str, set[str]] = {}
    for node in graph.node:
        m = module_of(node) or "<graph>"
        for i in node.input:
            readers.setdefault(i, set()).add(m)
    for o in graph.output:
        readers.setdefault(o.name, set()).add("<output>")
    types = {vi.name: vi.type.tensor_type.elem_type for vi in
             list(graph.value_info) + list(graph.output) + list(graph.input)}
    in_candidate = {o for n in candidate.graph.node for o in n.output}
    position = {o: k for k, n in enumerate(graph.node) for o in n.output}
    comparable = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BOOL)
    found = []
    for name, nodes in nodes_of.items():
        outs = [o for n in nodes for o in n.output
                if o and readers.get(o, set()) - {name} and o in in_candidate and types.get(o) in comparable]
        if outs:
            found.append(_Module(name, sorted({n.op_type for n in nodes}), outs,
                                 any(n.op_type in EXACT_OPS for n in nodes)))
    found.sort(key=lambda m: max(position[o] for o in m.outputs))
    return found


def localize(reference: str | Path, candidate: str | Path, *, data: str = "synthetic", count: int = 4,
             seed: int = 0, frontier: int = 8, progress=None) -> Localization:
    """The first module of ``reference`` (fp32) whose output ``candidate`` (fp16/int8) gets wrong."""
    from segexport.calib.data import load_calibration_data
    from segexport.core.limits import check_count, check_seed
    from segexport.core.onnx_io import load_onnx
    from segexport.exporter.metadata import read_record

    say = progress or (lambda *_a, **_k: None)
    check_count(count)
    check_seed(seed)
    if frontier < 2:
        raise UserError(f"--frontier must be >= 2 (modules compared at once), got {frontier}")
    ref_model, cand_model = load_onnx(reference), load_onnx(candidate)
    ref_record, cand_record = read_record(ref_model), read_record(cand_model)
    if ref_record.precision != "fp32":
        raise UserError(f"{Path(reference).name} is {ref_record.precision}: the reference must be the fp32 export")
    from segexport.core.hashing import sha256_file

    if cand_record.source_onnx_sha256 and cand_record.source_onnx_sha256 != sha256_file(reference):
        raise UserError(f"{Path(candidate).name} was not made from {Path(reference).name} (SHA-256 differs): "
                        "pass the fp32 export it was calibrated from")
    ref_model = onnx.shape_inference.infer_shapes(ref_model)
    cand_model = onnx.shape_inference.infer_shapes(cand_model)
    modules = module_outputs(ref_model, cand_model)
    if not modules:
        raise UserError(f"{Path(reference).name} carries no PyTorch module names in its nodes: re-export it with "
                        "`segexport onnx` (which keeps them)")
    inputs = load_calibration_data(data, ref_record.preprocess, count=count, seed=seed + 1000 if data == "synthetic"
                                   else seed, num_classes=ref_record.num_classes).inputs
    rec = ref_record
    from segexport.core.comparison import pad_batch

    feeds = [{rec.input_name: pad_batch(inputs[i:i + rec.batch], rec.batch)} for i in range(0, len(inputs), rec.batch)]
    precision = cand_record.precision
    result = Localization(str(reference), str(candidate), precision,
                          f"{len(inputs)} {'synthetic images' if data == 'synthetic' else 'samples of ' + str(data)}",
                          len(modules))
    measured: dict[int, ModuleError] = {}

    def measure(indices: list[int]) -> None:
        todo = [i for i in indices if i not in measured]
        if not todo:
            return
        say(f"comparing {len(todo)} module output(s)", len(measured), len(modules))
        names = [t for i in todo for t in modules[i].outputs]
        ref_out = _run_marked(ref_model, names, feeds)
        cand_out = _run_marked(cand_model, names, feeds)
        for i in todo:
            m = modules[i]
            worst, kind = 0.0, "rel-L2"
            for t in m.outputs:
                e, k = _error(ref_out[t], cand_out[t])
                if e > worst or (k != "rel-L2" and worst == 0.0):
                    worst, kind = e, k
            bound = BOOL_NOISE[precision] if kind != "rel-L2" else NOISE[precision]
            measured[i] = ModuleError(m.name, m.ops, m.outputs, worst, kind, bool(worst > bound))

    # modules holding comparisons first, all of them: their outputs are masks and indices, small, and an
    # error there does not grow through the next layers (the encoder runs on while the decoder reads a
    # wrong mask later), so bisection over the float path would step over it
    exact = [i for i, m in enumerate(modules) if m.exact]
    for k in range(0, len(exact), frontier):
        measure(exact[k:k + frontier])
    lo, hi = 0, len(modules) - 1  # bisection: the first float output past the noise lies in [lo, hi]
    while True:
        span = list(range(lo, hi + 1))
        if len(span) <= frontier:
            picks = span
        else:
            step = (len(span) - 1) / (frontier - 1)
            picks = sorted({lo + round(k * step) for k in range(frontier)})
        measure(picks)
        hit = next((i for i in picks if measured[i].diverged), None)
        if hit is None:
            break
        prev = max((i for i in picks if i < hit), default=lo - 1)
        if hit == prev + 1 or len(span) <= frontier:
            break
        lo, hi = prev + 1, hit
    first = min((i for i, m in measured.items() if m.diverged), default=None)
    result.measured = [measured[i] for i in sorted(measured)]
    ref_labels = _labels(_run_marked(ref_model, [rec.output_name], feeds)[rec.output_name])
    cand_labels = _labels(_run_marked(cand_model, [rec.output_name], feeds)[rec.output_name])
    result.final_agreement = float((ref_labels == cand_labels).mean())
    if first is not None:
        m = modules[first]
        say(f"splicing {m.name}'s reduced output into the fp32 graph")
        cand_values = _run_marked(cand_model, m.outputs, feeds)
        spliced = _run_spliced(ref_model, m.outputs, cand_values, feeds, rec.output_name)
        measured[first].label_agreement = float((_labels(spliced) == ref_labels).mean())
        result.first = measured[first]
        from segexport.core.exact import exact_violations

        broken = {v.module for v in exact_violations(cand_model)}
        result.fix = _fix(m, precision, Path(reference).name, Path(candidate).name, m.name in broken)
    return result


def _run_marked(model: onnx.ModelProto, names: list[str], feeds: list[dict]) -> dict[str, np.ndarray]:
    """``names`` of ``model`` over every feed (concatenated on the batch axis), marked as outputs
    with Polygraphy's ModifyOutputs: only these tensors are kept."""
    from polygraphy.backend.onnx import ModifyOutputs

    from segexport.core.sessions import ort_session, quiet_polygraphy

    quiet_polygraphy()
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    marked = ModifyOutputs(copy, outputs=list(dict.fromkeys(names)))()
    sess = ort_session(marked)
    wanted = list(dict.fromkeys(names))
    got: dict[str, list[np.ndarray]] = {n: [] for n in wanted}
    for feed in feeds:
        for n, v in zip(wanted, sess.run(wanted, feed)):
            got[n].append(np.asarray(v))
    return {n: np.concatenate(v) if v[0].ndim else v[0] for n, v in got.items()}


def _run_spliced(model: onnx.ModelProto, tensors: list[str], values: dict[str, np.ndarray], feeds: list[dict],
                 output: str) -> np.ndarray:
    """The fp32 graph's ``output`` with ``tensors`` replaced by ``values`` (new graph inputs)."""
    from segexport.core.sessions import ort_session

    if output in tensors:  # the module writes the graph's output: its reduced value is the answer
        return values[output]
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    types = {vi.name: vi for vi in list(copy.graph.value_info) + list(copy.graph.output)}
    for t in tensors:
        injected = f"{t}__segexport_injected"
        for node in copy.graph.node:
            if t in node.input and t not in node.output:
                node.input[:] = [injected if i == t else i for i in node.input]
        vi = onnx.ValueInfoProto()
        vi.CopyFrom(types[t]) if t in types else None
        vi.name = injected
        if t not in types:
            vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        copy.graph.input.append(vi)
    kept = [o for o in copy.graph.output if o.name == output]
    del copy.graph.output[:]
    copy.graph.output.extend(kept)
    sess = ort_session(copy)
    batch = next(iter(feeds[0].values())).shape[0]
    want = {i.name for i in sess.get_inputs()}
    outs = []
    for k, feed in enumerate(feeds):
        extra = {f"{t}__segexport_injected": _as_float32(values[t][k * batch:(k + 1) * batch]) for t in tensors}
        outs.append(np.asarray(sess.run([output], {n: v for n, v in {**feed, **extra}.items() if n in want})[0]))
    return np.concatenate(outs)


def _as_float32(v: np.ndarray) -> np.ndarray:
    """An FP16 candidate's tensor, fed to the fp32 graph (which reads float32 there)."""
    return v.astype(np.float32) if v.dtype == np.float16 else v


def _error(ref: np.ndarray, cand: np.ndarray) -> tuple[float, str]:
    if ref.dtype == np.bool_:
        return (float((ref != cand).mean()) if ref.size else 0.0), "mask mismatch"
    r = ref.astype(np.float64)
    c = cand.astype(np.float64)
    if not np.isfinite(c).all():
        return float("inf"), "rel-L2"
    norm = float(np.linalg.norm(r))
    diff = float(np.linalg.norm(r - c))
    return (diff / norm if norm > 0 else (0.0 if diff == 0 else float("inf"))), "rel-L2"


def _labels(x: np.ndarray) -> np.ndarray:
    from segexport.core.metrics import labels_of

    return labels_of(np.asarray(x, np.float32)) if x.ndim == 4 else x


def _fix(module: _Module, precision: str, source: str, candidate: str, reads_reduced_copy: bool) -> str:
    """The one thing to try: the flag that keeps ``module`` in float, or, for a comparison that reads a
    reduced copy of its own operand (a graph bug, not noise), the command that names it."""
    if module.exact and reads_reduced_copy:
        return (f"a comparison in {module.name} reads a reduced copy of its operand (a broken exact region, not "
                f"noise): `segexport lint {candidate}` names it; recalibrate with `segexport calibrate {source}`, "
                "which keeps exact regions in float")
    return f"segexport calibrate {source} --precision {precision} --keep-float '{module.name}'"
