"""DLA pre-flight on the CPU: which layers of an ONNX the Deep Learning Accelerator takes.

A static reading of NVIDIA's "DLA Supported Layers and Restrictions" (TensorRT Developer Guide;
the TensorRT 8.5/8.6 and 10.x editions, docs.nvidia.com/deeplearning/tensorrt/.../
dla-layer-restrictions.html) and of its general restrictions: FP16/INT8 only, no dynamic
dimensions, non-batch dimensions <= 8192, at most 16 loadables per core. The limits below are
our own summary, one rule a row, each with the section it comes from (``RULES``).

What it cannot know: whether TensorRT fuses a layer away before placement (BatchNorm and
activations into the convolution, a Pad into a convolution's padding), INT8 scale constraints
that depend on calibration (pooling and concatenation want equal input/output scales), the DLA
compiler's own refusals (memory, loadable size) and what ``canRunOnDLA`` says for layers the
document leaves open. Those placements are marked ``checked=False``; only ``trtexec
--useDLACore=N --allowGPUFallback --verbose`` on the board proves placement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import onnx

from segexport.core.graph import attribute as _attr, constant_values, module_of
from segexport.core.targets import Target
from segexport.core.graph import as_text as _text, folded_constants

DOC = "TensorRT Developer Guide, DLA Supported Layers and Restrictions"
RULES = {  # code -> the document's section (our summary of what it says)
    "general": f"{DOC}, General Restrictions: FP16/INT8 only, static shapes, non-batch dims <= 8192, 16 loadables/core",
    "conv": f"{DOC}, Convolution: kernel 1..32, padding 0..31 and below the kernel, stride 1..8, dilation 1..32, "
            "groups and output maps <= 8192",
    "deconv": f"{DOC}, Deconvolution: kernel 1..32, padding 0, stride 1..32, no dilation, no groups",
    "pool": f"{DOC}, Pooling: 2D max/average, window 1..8, padding 0..7, stride 1..16",
    "resize": f"{DOC}, Resize: 4 scales, batch and channel 1, integer H/W scales 1..32 (nearest) or 1..4 "
              "(bilinear, half-pixel coordinates)",
    "activation": f"{DOC}, Activation: ReLU, Sigmoid, TanH, clipped and leaky ReLU",
    "eltwise": f"{DOC}, ElementWise: Sum, Sub, Prod, Max, Min; Div, Pow, Equal, Greater, Less on Orin only",
    "scale": f"{DOC}, Scale: uniform, per-channel or element-wise scale and shift (BatchNorm lowers to it)",
    "concat": f"{DOC}, Concatenation: along the channel axis only",
    "softmax": f"{DOC}, SoftMax: Orin only, one non-batch axis",
    "shuffle": f"{DOC}, Shuffle: Orin only, 4-D tensors, no batch-axis moves",
    "slice": f"{DOC}, Slice: Orin only, FP16, 4-D, static parameters",
    "not-a-dla-layer": f"{DOC}: the layer type is not in the DLA layer list",
    "lrn": f"{DOC}, LRN: window 3, 5, 7 or 9, across channels",
    "prelu": f"{DOC}, Parametric ReLU: slope a build-time constant",
    "fc": f"{DOC}, Fully Connected (TensorRT may lower MatMul/Gemm to a 1x1 convolution)",
}
ACTIVATIONS = {"Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu"}
ELTWISE_ALL = {"Add", "Sub", "Mul", "Max", "Min"}
ELTWISE_ORIN = {"Div", "Pow", "Equal", "Greater", "Less"}
SHUFFLE = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"}
# Nodes that are no layer of their own: TensorRT folds them into constants or shape math.
NOT_LAYERS = {"Constant", "Identity", "Shape", "Size", "ConstantOfShape", "Range", "Dropout"}
MAX_LOADABLES = 16
MAX_DIM = 8192


@dataclass
class Placement:
    node: str
    op: str
    module: str
    device: str  # "DLA" | "GPU"
    reason: str  # why (for GPU: which rule failed and what to change)
    rule: str  # the document section the verdict rests on
    checked: bool = True  # False: the document leaves it open or it depends on the build


@dataclass
class DlaReport:
    board: str
    trt_version: str
    placements: list[Placement] = field(default_factory=list)
    transitions: int = 0  # edges between a GPU layer and a DLA layer (each a reformat + a sync)
    dla_segments: int = 0  # connected DLA subgraphs: each becomes one loadable
    unchecked: list[str] = field(default_factory=list)  # what only the board can tell

    @property
    def on_dla(self) -> int:
        return sum(p.device == "DLA" for p in self.placements)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["on_dla"], d["layers"] = self.on_dla, len(self.placements)
        return d


UNCHECKED = (
    "layer fusion before placement (BatchNorm/activations into convolutions, Pad into convolution padding)",
    "INT8 scale constraints that depend on the calibration (pooling, concatenation)",
    "the DLA compiler's own limits (on-chip memory, loadable size) and canRunOnDLA for layers the document leaves open",
    "the actual number of loadables TensorRT makes (segments counted here are an estimate)",
)


def _shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # an unusual graph: judge without shapes (rules needing them say so)
        inferred = model
    out: dict[str, list[int | None]] = {}
    g = inferred.graph
    for v in list(g.value_info) + list(g.input) + list(g.output):
        if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
            out[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
    for init in g.initializer:
        out[init.name] = list(init.dims)
    return out


def _range(values, lo: int, hi: int) -> bool:
    return all(lo <= int(v) <= hi for v in values)


class _Judge:
    """One verdict per node: ("DLA"|"GPU", reason, rule, checked)."""

    def __init__(self, model: onnx.ModelProto, target: Target, constants: set[str]) -> None:
        self.orin = target.dla == "orin"
        self.board = "Orin" if self.orin else "Xavier"
        self.shapes = _shapes(model)
        self.constants = constants
        self.values = constant_values(model)

    def __call__(self, node: onnx.NodeProto) -> tuple[str, str, str, bool]:
        op = node.op_type
        for name in list(node.input[:1]) + list(node.output[:1]):
            dims = self.shapes.get(name) or []
            if any(d is not None and d > MAX_DIM for d in dims[1:]):
                return "GPU", f"a dimension of {name!r} exceeds {MAX_DIM}: tile the input", "general", True
        if op == "Conv":
            return self._conv(node)
        if op == "ConvTranspose":
            return self._deconv(node)
        if op in ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"):
            return self._pool(node)
        if op == "Resize":
            return self._resize(node)
        if op in ACTIVATIONS:
            return "DLA", "activation", "activation", True
        if op == "PRelu":
            ok = len(node.input) > 1 and node.input[1] in self.constants
            return ("DLA", "constant slope", "prelu", True) if ok else \
                ("GPU", "PReLU slope is computed at run time: make it a parameter", "prelu", True)
        if op == "BatchNormalization":
            return "DLA", "lowered to a Scale layer (usually fused into the convolution)", "scale", False
        if op in ELTWISE_ALL | ELTWISE_ORIN:
            if node.input and all(i in self.constants for i in node.input if i):
                return "DLA", "folded to a constant", "eltwise", False
            if op in ELTWISE_ORIN and not self.orin:
                return "GPU", f"{op} runs on Orin's DLA only, not Xavier's: avoid it in the DLA part", "eltwise", True
            return "DLA", "element-wise", "eltwise", True
        if op == "Concat":
            rank = len(self.shapes.get(node.output[0]) or [0] * 4)
            axis = _attr(node, "axis", 1) % max(rank, 1)
            if axis != 1:
                return "GPU", f"Concat on axis {axis}: DLA concatenates channels (axis 1) only", "concat", True
            return "DLA", "channel concatenation", "concat", True
        if op == "Softmax":
            if not self.orin:
                return "GPU", "SoftMax is not on Xavier's DLA: drop it (argmax of logits is the same)", "softmax", True
            return "DLA", "SoftMax on Orin", "softmax", False
        if op in SHUFFLE:
            if not self.orin:
                return "GPU", f"{op} (a Shuffle layer) is not on Xavier's DLA: keep reshapes out of the DLA part", \
                    "shuffle", True
            rank = len(self.shapes.get(node.output[0]) or [])
            if rank != 4:
                return "GPU", f"{op} gives a {rank}-D tensor: DLA shuffles only 4-D tensors", "shuffle", True
            return "DLA", "4-D shuffle on Orin", "shuffle", False
        if op == "Slice":
            if not self.orin:
                return "GPU", "Slice is not on Xavier's DLA", "slice", True
            static = all(i in self.constants for i in node.input[1:] if i)
            if not static:
                return "GPU", "Slice parameters computed at run time: DLA needs them static", "slice", True
            return "DLA", "static slice on Orin (FP16 only)", "slice", False
        if op == "LRN":
            size = _attr(node, "size", 0)
            ok = size in (3, 5, 7, 9)
            return ("DLA", "LRN", "lrn", True) if ok else ("GPU", f"LRN size {size}: use 3, 5, 7 or 9", "lrn", True)
        if op in ("MatMul", "Gemm"):
            if len(node.input) > 1 and node.input[1] in self.constants:
                return "DLA", "fully connected with constant weights", "fc", False
            return "GPU", f"{op} of two activations: not a DLA layer", "not-a-dla-layer", True
        if op in ("QuantizeLinear", "DequantizeLinear"):
            return "GPU", ("explicit Q/DQ: the DLA section documents implicit INT8 (a calibration cache); calibrate "
                           "with `--trt-cache` and build from the fp32 ONNX"), "general", False
        fix = {"ArgMax": "export without --argmax and take the argmax after the engine",
               "Pad": "use the convolution's own padding", "Cast": "keep the graph in one float type"}.get(op, "")
        return "GPU", f"{op} is not a DLA layer" + (f": {fix}" if fix else ""), "not-a-dla-layer", True

    def _conv(self, node):
        k = _attr(node, "kernel_shape") or (self.shapes.get(node.input[1]) or [0, 0, 0, 0])[2:]
        pads = _attr(node, "pads", [0] * 2 * len(k))
        strides = _attr(node, "strides", [1] * len(k))
        dil = _attr(node, "dilations", [1] * len(k))
        groups = _attr(node, "group", 1)
        if len(k) != 2:
            return "GPU", f"a {len(k)}-D convolution: DLA runs 2-D only", "conv", True
        if _text(_attr(node, "auto_pad", b"NOTSET")) not in ("NOTSET", "VALID"):
            return "GPU", "auto_pad SAME_*: give explicit pads", "conv", False
        if not _range(k, 1, 32):
            return "GPU", f"kernel {list(k)} outside 1..32: split the kernel", "conv", True
        if not _range(pads, 0, 31) or any(p >= k[i % 2] for i, p in enumerate(pads)):
            return "GPU", f"padding {list(pads)} must be 0..31 and smaller than the kernel {list(k)}", "conv", True
        if not _range(strides, 1, 8):
            return "GPU", f"stride {list(strides)} outside 1..8: stride 8 at most, or add a pool", "conv", True
        if not _range(dil, 1, 32):
            return "GPU", f"dilation {list(dil)} outside 1..32", "conv", True
        out_c = (self.shapes.get(node.input[1]) or [0])[0]
        if groups > MAX_DIM or (out_c and out_c > MAX_DIM):
            return "GPU", f"groups {groups} / output maps {out_c} above {MAX_DIM}", "conv", True
        return "DLA", "convolution within limits", "conv", True

    def _deconv(self, node):
        k = _attr(node, "kernel_shape") or (self.shapes.get(node.input[1]) or [0, 0, 0, 0])[2:]
        pads = _attr(node, "pads", [0] * 2 * len(k))
        strides = _attr(node, "strides", [1] * len(k))
        dil = _attr(node, "dilations", [1] * len(k))
        if len(k) != 2:
            return "GPU", f"a {len(k)}-D deconvolution: DLA runs 2-D only", "deconv", True
        if not _range(k, 1, 32):
            return "GPU", f"deconvolution kernel {list(k)} outside 1..32", "deconv", True
        if any(pads) or any(_attr(node, "output_padding", [])):
            return "GPU", (f"deconvolution padding {list(pads)}: DLA needs 0 (ConvTranspose2d(padding=0, "
                           "output_padding=0), crop afterwards, or Upsample + Conv)"), "deconv", True
        if not _range(strides, 1, 32):
            return "GPU", f"deconvolution stride {list(strides)} outside 1..32", "deconv", True
        if any(d != 1 for d in dil) or _attr(node, "group", 1) != 1:
            return "GPU", "dilated or grouped deconvolution: DLA needs dilation 1 and groups 1", "deconv", True
        return "DLA", "deconvolution within limits", "deconv", True

    def _pool(self, node):
        op = node.op_type
        if op.startswith("Global"):
            dims = self.shapes.get(node.input[0]) or []
            k = dims[2:] if len(dims) == 4 else []
            if not k or None in k:
                return "GPU", "global pooling over an unknown window: DLA windows are 1..8", "pool", False
            pads, strides = [0, 0, 0, 0], [1, 1]
        else:
            k = _attr(node, "kernel_shape", [])
            pads = _attr(node, "pads", [0] * 2 * len(k))
            strides = _attr(node, "strides", [1] * len(k))
        if len(k) != 2:
            return "GPU", f"{len(k)}-D pooling: DLA pools 2-D only", "pool", True
        if not _range(k, 1, 8):
            return "GPU", (f"pooling window {list(k)} outside 1..8 (adaptive/global pooling over a large map): pool "
                           "in steps of <= 8, or keep this block on the GPU"), "pool", True
        if not _range(pads, 0, 7):
            return "GPU", f"pooling padding {list(pads)} outside 0..7", "pool", True
        if not _range(strides, 1, 16):
            return "GPU", f"pooling stride {list(strides)} outside 1..16", "pool", True
        if len([o for o in node.output if o]) > 1:
            return "GPU", "MaxPool with indices: export with --unpool mask", "pool", True
        return "DLA", "pooling within limits", "pool", True

    def _resize(self, node):
        mode = _text(_attr(node, "mode", b"nearest"))
        coord = _text(_attr(node, "coordinate_transformation_mode", b"half_pixel"))
        ins, outs = self.shapes.get(node.input[0]), self.shapes.get(node.output[0])
        scales = None
        if len(node.input) > 2 and node.input[2] in self.values and self.values[node.input[2]].size:
            scales = [float(s) for s in self.values[node.input[2]].ravel()]
        elif ins and outs and len(ins) == len(outs) and None not in ins + outs and all(ins):
            scales = [o / i for o, i in zip(outs, ins)]
        if scales is None:
            return "GPU", "Resize scales unknown before the build (dynamic size): DLA needs fixed scales", "resize", \
                False
        if len(scales) != 4 or scales[0] != 1 or scales[1] != 1:
            return "GPU", f"Resize scales {scales}: DLA needs 4 scales with batch and channel at 1", "resize", True
        hw = scales[2:]
        integral = all(float(s).is_integer() for s in hw)
        if mode == "nearest":
            if not integral or not _range(hw, 1, 32):
                return "GPU", (f"nearest Resize by {hw}: DLA needs integer scales 1..32 (resize to a multiple of the "
                               "input size)"), "resize", True
            return "DLA", "nearest, integer scale", "resize", True
        if mode == "linear":
            if coord not in ("half_pixel", "pytorch_half_pixel"):
                return "GPU", (f"bilinear Resize with {coord!r} coordinates: DLA needs half-pixel "
                               "(interpolate(..., align_corners=False))"), "resize", True
            if not integral or not _range(hw, 1, 4):
                return "GPU", f"bilinear Resize by {hw}: DLA needs integer scales 1..4 (upsample in x2/x4 steps)", \
                    "resize", True
            return "DLA", "bilinear, half-pixel, integer scale", "resize", coord == "half_pixel"
        return "GPU", f"Resize mode {mode!r}: DLA has nearest and bilinear only", "resize", True


def dla_preflight(model: onnx.ModelProto, target: Target) -> tuple[DlaReport, list[tuple[str, str, str, str]]]:
    """Place every layer of ``model`` on DLA or GPU for ``target`` (a DLA board).

    Returns the report and findings as (severity, code, node name, message) for lint to add.
    """
    report = DlaReport(board=target.dla or "", trt_version=target.trt_version, unchecked=list(UNCHECKED))
    findings: list[tuple[str, str, str, str]] = []
    constants = folded_constants(model)
    inits = {i.name for i in model.graph.initializer}
    dynamic = [i.name for i in model.graph.input if i.name not in inits
               and any(not d.HasField("dim_value") for d in i.type.tensor_type.shape.dim)]
    judge = _Judge(model, target, constants)
    layers = [n for n in model.graph.node if n.op_type not in NOT_LAYERS
              and not (n.output and all(o in constants for o in n.output if o))]
    for n in layers:
        if dynamic:
            verdict = ("GPU", f"input(s) {', '.join(dynamic)} have dynamic dims: DLA needs a static export "
                              "(drop --dynamic)", "general", True)
        else:
            verdict = judge(n)
        report.placements.append(Placement(n.name, n.op_type, module_of(n), *verdict))
    if dynamic:
        findings.append(("error", "dla-dynamic", "", f"dynamic input dims ({', '.join(dynamic)}): DLA runs static "
                         f"shapes only [{RULES['general']}]; re-export without --dynamic"))
    device = {o: p.device for n, p in zip(layers, report.placements) for o in n.output}
    producers = {o: n for n in layers for o in n.output}
    # union-find over DLA-DLA edges: each connected DLA part is a loadable
    parent = {n.name: n.name for n, p in zip(layers, report.placements) if p.device == "DLA"}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    seen: set[tuple[str, str]] = set()
    for n, p in zip(layers, report.placements):
        for i in n.input:
            if i not in device or (i, p.device) in seen:
                continue
            seen.add((i, p.device))  # a tensor is reformatted once per consuming device
            if device[i] != p.device:
                report.transitions += 1
            elif p.device == "DLA":
                parent[root(producers[i].name)] = root(n.name)
    report.dla_segments = len({root(x) for x in parent})
    for p in report.placements:
        if p.device == "GPU" and not dynamic:
            findings.append(("warning" if p.checked else "info", "dla-fallback", p.node,
                             f"{p.op} falls back to the GPU on {target.dla} DLA: {p.reason} [{RULES[p.rule]}; "
                             f"TensorRT {target.trt_version}]" + ("" if p.checked else " (not certain statically)")))
    if report.dla_segments > MAX_LOADABLES:
        findings.append(("error", "dla-loadables", "", f"{report.dla_segments} separate DLA parts but a DLA core loads "
                         f"at most {MAX_LOADABLES} [{RULES['general']}]: move the layers between them onto DLA, or "
                         "build for the GPU"))
    findings.append(("info", "dla-summary", "", f"{report.on_dla} of {len(report.placements)} layers on {target.dla} "
                     f"DLA, {report.transitions} GPU<->DLA transition(s), {report.dla_segments} DLA part(s); "
                     "DLA runs FP16/INT8 only (build_engine.sh passes --fp16/--int8); placement is proven only by "
                     "trtexec --useDLACore=0 --allowGPUFallback --verbose on the board"))
    return report, findings


