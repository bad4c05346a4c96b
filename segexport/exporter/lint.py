"""Lint an ONNX graph against TensorRT's ONNX parser, before anyone touches a GPU.

Two layers:
1. A static check against the support matrix of onnx-tensorrt's ``docs/operators.md`` for
   TensorRT 10.x (read at commit 96e7811, June 2024; the table below is our own summary of
   it): unsupported operators, and the restrictions that bite segmentation exports most --
   MaxPool ``Indices``, Resize modes, coordinate modes and antialiasing, Scatter reductions,
   Q/DQ zero points and types, ``axes`` inputs that must be constant, pool dilations, TopK,
   INT64 values TensorRT narrows, dynamic dimensions without (or contradicting) the recorded
   optimisation profile, the opset range. Where the matrix and the parser's code disagree
   (cubic Resize is listed as unsupported yet implemented) the finding is a warning.
2. When ``tensorrt`` or ``tensorrt_rtx`` is importable, the *real* parser runs on the model,
   and with ``build=True`` a serialized engine is built: the only proof that counts.

Every finding names the node, the PyTorch module it came from (the exporter keeps module
scopes in node metadata) and the fix.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from segexport.core.graph import as_text, attribute, folded_constants, module_of, size_only_tensors  # noqa: F401  (module_of re-exported)
from segexport.core.targets import Target
from segexport.errors import UserError

# Operators the TensorRT 10 ONNX parser does not implement (support matrix, "N" rows).
UNSUPPORTED_OPS = frozenset({
    "AffineGrid", "Bernoulli", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor",
    "BlackmanWindow", "CenterCropPad", "Col2Im", "Compress", "ConcatFromSequence", "ConvInteger", "DFT", "Det",
    "DynamicQuantizeLinear", "HammingWindow", "HannWindow", "ImageDecoder", "MatMulInteger", "MaxRoiPool",
    "MaxUnpool", "MelWeightMatrix", "Multinomial", "NegativeLogLikelihoodLoss", "Optional",
    "OptionalGetElement", "OptionalHasElement", "QLinearConv", "QLinearMatMul", "RegexFullMatch", "STFT",
    "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength",
    "SequenceMap", "SoftmaxCrossEntropyLoss", "SplitToSequence", "StringConcat", "StringNormalizer",
    "StringSplit", "TfIdfVectorizer", "Unique",
})
# Operators whose ``axes`` (``axis`` for CumSum) input, at this index, must be a constant.
AXES_MUST_BE_CONSTANT = {"Pad": 3, "Slice": 3, "ReduceMax": 1, "ReduceMin": 1, "ReduceMean": 1, "ReduceSum": 1,
                         "ReduceProd": 1, "ReduceL1": 1, "ReduceL2": 1, "ReduceLogSumExp": 1, "ReduceSumSquare": 1,
                         "ReduceLogSum": 1, "Squeeze": 1, "Unsqueeze": 1, "CumSum": 1}
# Pools whose ``dilations`` must be empty or all ones.
POOLS_NO_DILATION = {"MaxPool", "AveragePool", "LpPool"}
RESIZE_COORD_MODES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
# The 10.0 support matrix lists nearest and linear only; the parser also implements cubic
# (on the last two dims), and TensorRT-RTX 1.7 accepts it, so cubic is a warning, not an error.
RESIZE_MODES = {"nearest", "linear"}
TOPK_MAX_K = 3840
RESIZE_NEAREST_MODES = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}
OPSET_RANGE = (9, 20)  # TensorRT 10.0; later 10.x and 11 accept newer opsets
INT32_MAX = 2**31 - 1

MODULE_KEYS = ("namespace", "pkg.torch.onnx.name_scopes")


SEVERITIES = ("error", "warning", "info")


@dataclass
class Finding:
    severity: str  # "error" | "warning" | "info"
    code: str
    message: str
    node: str = ""
    op: str = ""
    module: str = ""


@dataclass
class LintReport:
    path: str
    findings: list[Finding] = field(default_factory=list)
    parser: str | None = None  # e.g. "TensorRT-RTX 1.7.1.116", None when no parser ran
    parser_skipped: str | None = None
    engine_bytes: int | None = None
    build_seconds: float | None = None
    target: str | None = None  # the --target (or the recorded one) the matrix was chosen for
    dla: dict | None = None  # segexport.exporter.dla.DlaReport.to_dict() for a DLA target

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["errors"], d["warnings"] = len(self.errors), len(self.warnings)
        d["infos"] = len(self.findings) - d["errors"] - d["warnings"]
        return d


# --unpool mask rewrites nn.MaxPool2d/nn.MaxUnpool2d *modules*; functional calls are out of its reach.
UNPOOL_FIX = (" (export with --unpool mask, the default; it rewrites nn.MaxPool2d(return_indices=True) and "
              "nn.MaxUnpool2d modules, so use those instead of F.max_pool2d / F.max_unpool2d)")


_attr = attribute


def _resize_findings(node: onnx.NodeProto, constants: set[str], add) -> None:
    """The Resize restrictions of the support matrix (attributes default as in the ONNX spec)."""
    mode = as_text(_attr(node, "mode", b"nearest"))
    coord = as_text(_attr(node, "coordinate_transformation_mode", b"half_pixel"))
    nearest = as_text(_attr(node, "nearest_mode", b"round_prefer_floor"))
    if _attr(node, "antialias", 0):
        add("error", "resize-antialias", node, "Resize with antialias=1 is not supported by TensorRT: "
                                               "interpolate with antialias=False")
    if mode == "cubic":
        add("warning", "resize-cubic", node, "Resize mode 'cubic' is missing from TensorRT 10's support matrix "
                                             "(the parser implements it on the last two dims): prefer bilinear, "
                                             "or prove it with `segexport lint --build`")
    elif mode not in RESIZE_MODES:
        add("error", "resize-mode", node, f"Resize mode {mode!r} is not supported (only nearest, linear): "
                                          "use bilinear or nearest interpolation")
    if coord not in RESIZE_COORD_MODES:
        add("error", "resize-coord", node, f"Resize coordinate_transformation_mode {coord!r} is not supported: use "
                                           f"one of {', '.join(sorted(RESIZE_COORD_MODES))}")
    if mode == "nearest" and nearest not in RESIZE_NEAREST_MODES:
        add("error", "resize-nearest-mode", node, f"Resize nearest_mode {nearest!r} is not supported: use one of "
                                                  f"{', '.join(sorted(RESIZE_NEAREST_MODES))}")
    if as_text(_attr(node, "keep_aspect_ratio_policy", b"stretch")) != "stretch":
        add("error", "resize-aspect", node, "Resize keep_aspect_ratio_policy must be 'stretch' for TensorRT: "
                                            "resize to an explicit size instead")
    axes = _attr(node, "axes")
    scales = node.input[2] if len(node.input) > 2 else ""
    if axes and scales and scales not in constants and list(axes) != list(range(len(axes))):
        add("error", "resize-axes", node, f"Resize axes {list(axes)} with computed scales is not supported by "
                                          "TensorRT: give scales for every axis (drop `axes`) or make them constant")


def _all_nodes(graph: onnx.GraphProto):
    """Every node, including those in If/Loop/Scan bodies, where TensorRT needs the same ops."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                yield from _all_nodes(sub)


def static_findings(model: onnx.ModelProto, target: Target | None = None) -> list[Finding]:
    """Findings that need no TensorRT: the support matrix and its restrictions, for ``target``'s
    TensorRT (None: TensorRT 10). The per-version differences are segexport.exporter.support_matrix."""
    from segexport.exporter.support_matrix import EXTRA_UNSUPPORTED, QDQ_TYPES, TOPK_K_MUST_BE_INITIALIZER

    matrix = target.matrix if target is not None else "10"
    unsupported = UNSUPPORTED_OPS | EXTRA_UNSUPPORTED[matrix]
    trt = f"TensorRT {target.trt_version} ({target.name})" if target is not None else "TensorRT"
    out: list[Finding] = []
    inits = {i.name: i for i in model.graph.initializer}
    # Constant nodes hold tensors too (a zero point may be one); value_* attributes are left out
    const_tensors = {n.output[0]: a.t for n in model.graph.node if n.op_type == "Constant"
                     for a in n.attribute if a.name == "value"}
    constants = folded_constants(model)
    size_only = size_only_tensors(model)
    size_scatters: list[onnx.NodeProto] = []  # scatters of index tables built from the input's size alone
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def add(sev: str, code: str, node: onnx.NodeProto | None, msg: str) -> None:
        out.append(Finding(sev, code, msg, node.name if node else "", node.op_type if node else "",
                           module_of(node) if node else ""))

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and target is not None and target.strict_opset and opset > target.opset_max:
        add("error", "opset", None, f"opset {opset} is newer than {trt} parses (<= {target.opset_max}): re-export with "
                                    f"`segexport onnx --target {target.name}`")
    elif opset is not None and target is not None and not OPSET_RANGE[0] <= opset <= target.opset_max:
        add("warning", "opset", None, f"opset {opset} is outside what {trt} is documented to parse "
                                      f"({OPSET_RANGE[0]}..{target.opset_max}): re-export with --opset 18")
    elif opset is not None and target is None and not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        add("warning", "opset", None, f"opset {opset} is outside TensorRT 10.0's {OPSET_RANGE[0]}..{OPSET_RANGE[1]} "
                                      "(newer 10.x/11 releases accept more); re-export with --opset 18 for older ones")
    for node in _all_nodes(model.graph):
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            add("error", "custom-op", node, f"{node.domain}::{op} is not a standard ONNX op: TensorRT needs a plugin for it")
            continue
        if op in unsupported:
            fix = UNPOOL_FIX if op == "MaxUnpool" else ""
            if op in EXTRA_UNSUPPORTED[matrix]:
                fix = (f" (missing from its support matrix; TensorRT 10 has it: target jetpack6 or trt10, "
                       "or replace the module)")
            add("error", "unsupported-op", node, f"{op} is not supported by {trt}'s ONNX parser{fix}")
        elif op == "MaxPool" and len([o for o in node.output if o]) > 1:
            add("error", "maxpool-indices", node, "MaxPool with an Indices output is not supported by TensorRT"
                                                  + UNPOOL_FIX)
        elif op == "Resize":
            _resize_findings(node, constants, add)
        elif op == "ScatterND" and as_text(_attr(node, "reduction", b"none")) != "none":
            add("error", "scatter-reduction", node, f"ScatterND reduction={as_text(_attr(node, 'reduction'))!r} is not "
                                                    "supported by TensorRT: scatter without a reduction")
        elif op == "ScatterElements" and as_text(_attr(node, "reduction", b"none")) != "none":
            add("error", "scatter-reduction", node, f"ScatterElements reduction={as_text(_attr(node, 'reduction'))!r} "
                "needs TensorRT's ScatterElements plugin (libnvinfer_plugin; TensorRT-RTX has none): scatter "
                "without a reduction, or for MaxUnpool export with --unpool mask")
        elif op in ("ScatterND", "ScatterElements", "Scatter") and all(i in size_only for i in node.input if i):
            size_scatters.append(node)
        elif op in ("ScatterND", "ScatterElements", "Scatter"):
            add("warning", "scatter", node, f"{op} runs in TensorRT but is slow and often an exporter's lowering of "
                                            "unpooling/indexing; for MaxUnpool export with --unpool mask")
        elif op == "TopK":
            k = inits.get(node.input[1]) if len(node.input) > 1 else None
            if not _attr(node, "sorted", 1):
                add("error", "topk-unsorted", node, "TopK with sorted=0 is not supported by TensorRT: use sorted=1")
            if matrix in TOPK_K_MUST_BE_INITIALIZER and len(node.input) > 1 and k is None:
                add("error", "topk-k-initializer", node, f"TopK K must be an initializer in {trt}: use a fixed k")
            if k is not None and int(numpy_helper.to_array(k).max()) >= TOPK_MAX_K:
                add("error", "topk-k", node, f"TopK K must be below {TOPK_MAX_K} in TensorRT: take a smaller K")
        if op in POOLS_NO_DILATION:
            dil = _attr(node, "dilations")
            if dil and any(d != 1 for d in dil):
                add("error", "pool-dilation", node, f"{op} dilations {list(dil)} are not supported by TensorRT "
                                                    "(only all ones): use an undilated pool")
        if op in ("QuantizeLinear", "DequantizeLinear"):
            zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
            if zp_name is None:
                continue  # zero point defaults to 0 (uint8!) -- but only with no explicit type; TRT reads it as int8 0
            zp = inits.get(zp_name) or const_tensors.get(zp_name)
            if zp is None:
                add("error", "qdq-zero-point", node, f"{op} zero point {zp_name!r} is not a constant: TensorRT needs a "
                                                     "constant zero point of 0")
                continue
            values = numpy_helper.to_array(zp)
            if zp.data_type not in QDQ_TYPES[matrix]:
                needs = "INT8 (symmetric)" if matrix != "10" else "INT8 (symmetric) or FP8"
                add("error", "qdq-type", node, f"{op} quantizes to {onnx.TensorProto.DataType.Name(zp.data_type)}: "
                                               f"{trt} needs {needs}")
            if np.any(values != 0):
                add("error", "qdq-zero-point", node, f"{op} zero point is {values.ravel()[:4].tolist()}: TensorRT needs 0 "
                                                     "(symmetric quantization)")
        if op in AXES_MUST_BE_CONSTANT:
            idx = AXES_MUST_BE_CONSTANT[op]
            if len(node.input) > idx and node.input[idx] and node.input[idx] not in constants:
                add("error", "axes-not-constant", node, f"{op} 'axes' input must be a constant for TensorRT")
    # INT64: TensorRT casts INT64 constants to INT32 where a layer lacks INT64 (shape math, indices).
    narrowed = 0
    for name, init in inits.items():
        if init.data_type != onnx.TensorProto.INT64:
            continue
        users = consumers.get(name, [])
        if users and all(u.op_type == "Slice" for u in users):
            continue  # Slice ends of INT64_MAX mean "to the end": clamping is exactly right
        values = numpy_helper.to_array(init)
        if values.size and (values.max() > INT32_MAX or values.min() < -INT32_MAX - 1):
            add("warning", "int64-narrowed", users[0] if users else None,
                f"INT64 constant {name!r} holds values beyond INT32 that TensorRT clamps: keep indices and "
                "sizes within INT32 in the model")
        else:
            narrowed += 1
    if size_scatters:
        modules = sorted({module_of(n) for n in size_scatters if module_of(n)})
        add("info", "scatter-size", size_scatters[0], f"{len(size_scatters)} scatter(s) build tables from the input's "
            f"size alone, never its pixels ({', '.join(modules[:3]) + (', ...' if len(modules) > 3 else '') or 'the graph'}"
            "): index bookkeeping, not an unpooling lowering; TensorRT runs them")
    if narrowed:
        add("info", "int64", None, f"{narrowed} INT64 constant(s) may be cast to INT32 by TensorRT; all their values "
                                   "fit, so nothing changes")
    # Dynamic dimensions need an optimisation profile: segexport records one in the metadata.
    from segexport.exporter.metadata import read_record

    try:
        profiles = read_record(model).profile_shapes()
    except UserError:
        profiles = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = [d.dim_value or None for d in inp.type.tensor_type.shape.dim]
        if None in dims and inp.name not in profiles:
            add("warning", "dynamic-no-profile", None, f"input {inp.name!r} has dynamic dims but no min/opt/max "
                "profile: export with `segexport onnx --dynamic ...` or pass shapes to trtexec")
        for shape in profiles.get(inp.name, ()):
            if len(shape) != len(dims) or any(d is not None and d != s for d, s in zip(dims, shape)):
                add("error", "profile-mismatch", None, f"the recorded profile shape {list(shape)} of {inp.name!r} "
                    f"contradicts its static dims {[d or '?' for d in dims]}: re-export with matching --dynamic")
                break
    from segexport.core.exact import exact_violations

    names = {n.name: n for n in model.graph.node}
    for v in exact_violations(model):  # TensorRT builds it; the labels it computes are wrong
        add("error", "exact-compare-reduced", names.get(v.node),
            f"{v.op} compares a {v.how} copy of {v.source!r} while other layers read it in float: an exact comparison "
            "(unpool mask, argmax, tie-break) now fails on values that were equal; recalibrate with `segexport "
            "calibrate`, which keeps the exact region in float")
    return out


def parser_findings(path: Path, report: LintReport, *, parser: str, build: bool) -> None:
    """Run the real TensorRT / TensorRT-RTX parser (and builder) when one is importable."""
    from segexport.core.tensorrt import available, find_flavour, last_error, parse_onnx

    if parser == "none":
        report.parser_skipped = "disabled with --parser none"
        return
    flavour = find_flavour(parser) if parser != "auto" else (available("trt") or available("rtx"))
    if flavour is None:
        report.parser_skipped = "neither tensorrt nor tensorrt_rtx is installed (pip install tensorrt-rtx to run NVIDIA's parser)"
        return
    report.parser = flavour.label
    parsed = parse_onnx(path, flavour)
    if parsed.errors:
        graph = onnx.load(str(path), load_external_data=False).graph
        by_name = {n.name: n for n in graph.node if n.name}
    for label, msg in parsed.errors:
        node = by_name.get(label) or (graph.node[int(label[1:])] if label.startswith("#") else None)
        report.findings.append(Finding("error", "trt-parser", f"{flavour.label}: {msg}", node=label,
                                       op=node.op_type if node else "", module=module_of(node) if node else ""))
    if parsed.errors or not build:
        return
    from segexport.exporter.metadata import profile_from_onnx

    try:
        shapes = profile_from_onnx(path)
    except UserError as exc:
        report.findings.append(Finding("error", "trt-build", f"cannot build: {exc}"))
        return
    config = parsed.builder.create_builder_config()
    profile = parsed.builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    start = time.perf_counter()
    engine = parsed.builder.build_serialized_network(parsed.network, config)
    from segexport.core.interrupts import raise_if_interrupted

    raise_if_interrupted()  # a Ctrl-C swallowed inside a TensorRT callback: not "no findings"
    report.build_seconds = round(time.perf_counter() - start, 3)
    if engine is None:
        report.findings.append(Finding("error", "trt-build", f"{flavour.label} failed to build an engine: "
                                                             f"{last_error(parsed.logger)}"))
    else:
        report.engine_bytes = int(engine.nbytes)


def lint_model(model: onnx.ModelProto | str | Path, *, parser: str = "auto", build: bool = False,
               target: str | None = None) -> LintReport:
    """Static findings, plus the real parser's (and builder's, with ``build``) when available.

    ``target`` (a segexport.core.targets name) picks the TensorRT version's support matrix and,
    for a DLA board, adds the DLA pre-flight; None reads the target recorded at export, else
    TensorRT 10."""
    if isinstance(model, onnx.ModelProto):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            onnx.save(model, str(path))
            return lint_model(path, parser=parser, build=build, target=target)
    from segexport.core.onnx_io import load_onnx

    path = Path(model)
    proto = load_onnx(path, external_data=True)
    chosen = _target_of(proto, target)
    report = LintReport(path=str(path), findings=static_findings(proto, chosen),
                        target=chosen.name if chosen is not None else None)
    if chosen is not None and chosen.dla:
        from segexport.exporter.dla import dla_preflight

        from segexport.core.graph import held_precision

        held = held_precision(proto)  # an FP16/Q-DQ ONNX fixes the build's precision; an FP32 one does not
        dla, extra = dla_preflight(proto, chosen, None if held == "fp32" else held)
        report.dla = dla.to_dict()
        by_name = {n.name: n for n in proto.graph.node}
        for sev, code, node, msg in extra:
            n = by_name.get(node)
            report.findings.append(Finding(sev, code, msg, node, n.op_type if n else "", module_of(n) if n else ""))
    parser_findings(path, report, parser=parser, build=build)
    return report


def _target_of(model: onnx.ModelProto, name: str | None) -> Target | None:
    """The --target given, else the one the export recorded, else None (TensorRT 10)."""
    from segexport.core.targets import get_target

    if name is not None:
        return get_target(name)
    from segexport.exporter.metadata import read_record

    try:
        recorded = read_record(model).target
    except UserError:
        return None
    return get_target(recorded) if recorded else None


def summarize(findings: Iterable[Finding]) -> str:
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    return ", ".join(f"{v} {k}{'s' if v != 1 else ''}" for k, v in sorted(counts.items())) or "no findings"
