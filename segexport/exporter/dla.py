"""DLA pre-flight on the CPU: which layers of an ONNX the Deep Learning Accelerator takes.

A static reading of what NVIDIA documents, per TensorRT version of the target (``Target.matrix``:
"8.5" JetPack 5.1, "8.6" JetPack 6.0, "10" JetPack 6.1+) and board (Xavier or Orin). The rules
are our own summary, one a row (``RULES``), each naming where it was checked:

- ``NvInfer.h`` of NVIDIA/TensorRT at tag ``8.5.2`` and branches ``release/8.6`` and
  ``release/10.3``: the "If executing this layer on DLA ..." notes of every layer class. Unless a
  row says otherwise, the limits below read the same in all three.
- NVIDIA/Deep-Learning-Accelerator-SW ``operators/README.md`` ("Supported ONNX Operators on Orin
  DLA"), commit 1da860c (Jetson Orin, JetPack 5.1.1 = TensorRT 8.5.2) and ea61780 (adds
  JetPack 6.0 = TensorRT 8.6.2, and DRIVE OS TensorRT 8.6.12): which ONNX operators reach Orin's
  DLA through TensorRT. It documents Orin only.
- The TensorRT 10.3 Operators reference (docs.nvidia.com/deeplearning/tensorrt/archives/
  tensorrt-1030/operators/docs/ElementWise.html, "DLA Support").
- The TensorRT Developer Guide, "DLA Supported Layers and Restrictions", in its current edition
  (docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/dla-layer-restrictions.html).
  The per-version editions (tensorrt-853, tensorrt-861, 10.3) could not be read for this check.
- onnx-tensorrt (branches 8.5-GA, 8.6-GA, 10.0-GA, 10.1-GA): which TensorRT layer an ONNX
  operator becomes (GlobalAveragePool/GlobalMaxPool become Reduce layers, not Pooling; Resize's
  modes map to the coordinate/selector/rounding triples DLA lists).

General (all versions, the current Developer Guide): FP16/INT8 only, no dynamic dimensions,
batch (the product of all dimensions but C, H, W) <= 4096, non-batch dimensions <= 8192, at most
16 loadables per core.

What it cannot know: whether TensorRT fuses a layer away before placement (BatchNorm and
activations into the convolution, a Pad into a convolution's padding, an element-wise op with a
constant into a Scale layer), INT8 scale constraints that depend on calibration (pooling and
concatenation want equal input/output scales), the DLA compiler's own refusals (memory, loadable
size), what ``canRunOnDLA`` says for layers the sources leave open, and where the sources disagree
(they are named in the reason). Those placements are marked ``checked=False``; only ``trtexec
--useDLACore=N --allowGPUFallback --verbose`` on the board proves placement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from math import prod

import onnx

from segexport.core.graph import attribute as _attr, constant_values, module_of
from segexport.core.targets import Target
from segexport.core.graph import as_text as _text, folded_constants

DOC = "TensorRT Developer Guide, DLA Supported Layers and Restrictions"
HDR = "NvInfer.h (TensorRT 8.5.2, 8.6, 10.3)"
ORIN_OPS = "NVIDIA Deep-Learning-Accelerator-SW, Supported ONNX Operators on Orin DLA"
OPREF = "TensorRT 10.3 Operators reference, ElementWise, DLA Support"
PARSER = "onnx-tensorrt 8.5-GA..10.1-GA"
RULES = {  # code -> where the rule was checked (our summary of what it says)
    "general": f"{DOC}, General Restrictions: FP16/INT8 only, static shapes, batch <= 4096, non-batch dims <= 8192, "
               "16 loadables/core",
    "conv": f"{DOC}, Convolution; {HDR}, IConvolutionLayer: 2-D, kernel 1..32, padding 0..31 and below the kernel, "
            "stride 1..8, dilation 1..32, groups and output maps <= 8192",
    "deconv": f"{DOC}, Deconvolution; {HDR}, IDeconvolutionLayer: 2-D, kernel and stride 1..32 (or 64/96/128 by 1), "
              "padding 0, groups 1, no dilation",
    "pool": f"{DOC}, Pooling; {HDR}, IPoolingLayer: 2-D max/average, window 1..8, padding 0..7, stride 1..16; "
            "on Xavier average pooling must count padding (count_include_pad=1)",
    "reduce": f"{PARSER}: GlobalAveragePool/GlobalMaxPool become Reduce layers; {ORIN_OPS}: not through TensorRT "
              "8.5.2, GlobalMaxPool from TensorRT 8.6.12 (DRIVE OS); TensorRT Operators reference, Reduce: DLA "
              "runs MAX over C/H/W only",
    "resize": f"{DOC}, Resize; {HDR}, IResizeLayer: 4 scales, batch and channel 1, integer H/W scales 1..32 (nearest: "
              "asymmetric+floor or half-pixel+round) or 1..4 (bilinear, half-pixel coordinates)",
    "activation": f"{DOC}, Activation; {HDR}, IActivationLayer: ReLU, Sigmoid, TanH, Clip (the guide and {ORIN_OPS} "
                  "add Leaky ReLU)",
    "eltwise": f"{HDR}, IElementWiseLayer: Sum, Prod, Max, Min, Sub; Div and Pow: {ORIN_OPS} (not in TensorRT 8.5.2, "
               f"TensorRT 8.6.12 on DRIVE OS) and {OPREF} (Pow with one constant input, Div with at most one)",
    "compare": f"{ORIN_OPS}: Equal from TensorRT 8.5.2, Greater/Less from 8.6.12 (DRIVE OS); {OPREF}: at most one "
               f"constant input, broadcast NCHW/NC11/N111; {DOC}: INT8 only, Orin",
    "unary": f"{HDR}, IUnaryLayer: DLA runs Abs only",
    "scale": f"{DOC}, Scale: uniform, per-channel or element-wise scale and shift (BatchNorm lowers to it)",
    "concat": f"{DOC}, Concatenation; {HDR}, IConcatenationLayer: along the channel axis (third from last) only",
    "softmax": f"{HDR}, ISoftMaxLayer: not on Xavier; axis channel or spatial, axis size <= 8192 (other dims 1) "
               "or <= 1024",
    "shuffle": f"{DOC}, Shuffle: Orin only, 4-D tensors; {ORIN_OPS}: Reshape/Transpose native, Flatten/Squeeze/"
               "Unsqueeze not through TensorRT",
    "slice": f"{HDR}, ISliceLayer: static start/size/stride, stride 1, first dimension not sliced, 4-D input; "
             f"{ORIN_OPS}: Split becomes Slice",
    "not-a-dla-layer": f"{DOC}: the layer type is not in the DLA layer list",
    "lrn": f"{DOC}, LRN; {HDR}, ILRNLayer: window 3, 5, 7 or 9, across channels",
    "prelu": f"{DOC}, Parametric ReLU; {HDR}, IParametricReLULayer: slope a build-time constant",
    "fc": f"{DOC}, Fully Connected; {ORIN_OPS}: MatMul/Gemm with a constant second input",
}
ACTIVATIONS = {"Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu"}
# NvInfer.h 8.5.2/8.6/10.3, IElementWiseLayer: "DLA supports only kSUM, kPROD, kMAX, kMIN, and kSUB"
ELTWISE_ALL = {"Add", "Sub", "Mul", "Max", "Min"}
ELTWISE_NEW = {"Div", "Pow"}  # TensorRT 10.3 Operators reference; not in 8.5.2 (Orin operator matrix)
COMPARE = {"Equal", "Greater", "Less"}
SHUFFLE = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"}
SHUFFLE_NOT_VIA_TRT = {"Flatten", "Squeeze", "Unsqueeze"}  # Orin operator matrix (ea61780): "See RFE" through TensorRT
UNARY_GPU = {"Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Sin", "Cos", "Erf", "Sign", "Round", "Not"}
# Nodes that are no layer of their own: TensorRT folds them into constants or shape math.
NOT_LAYERS = {"Constant", "Identity", "Shape", "Size", "ConstantOfShape", "Range", "Dropout"}
MAX_LOADABLES = 16
MAX_DIM = 8192
MAX_BATCH = 4096  # "The maximum supported batch size is 4096" (current Developer Guide, General Restrictions)


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
    "rules where NVIDIA's sources disagree or are silent for this TensorRT version (named in each reason)",
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

    def __init__(self, model: onnx.ModelProto, target: Target, constants: set[str],
                 precision: str | None = None) -> None:
        self.orin = target.dla == "orin"
        self.board = "Orin" if self.orin else "Xavier"
        self.trt = target.matrix  # "8.5" | "8.6" | "10"
        self.version = target.trt_version
        self.precision = precision  # "fp16" | "int8" | None (not known before the build)
        self.shapes = _shapes(model)
        self.constants = constants
        self.values = constant_values(model)

    def __call__(self, node: onnx.NodeProto) -> tuple[str, str, str, bool]:
        op = node.op_type
        for name in list(node.input[:1]) + list(node.output[:1]):
            dims = self.shapes.get(name) or []
            if any(d is not None and d > MAX_DIM for d in dims[1:]):
                return "GPU", f"a dimension of {name!r} exceeds {MAX_DIM}: tile the input", "general", True
            lead = [d for d in dims[:-3] if d is not None]  # DLA's batch: every dimension but C, H, W
            if len(dims) >= 4 and len(lead) == len(dims) - 3 and prod(lead) > MAX_BATCH:
                return "GPU", f"batch {prod(lead)} of {name!r} (all dims but C, H, W) exceeds {MAX_BATCH}", \
                    "general", True
        if op == "Conv":
            return self._conv(node)
        if op == "ConvTranspose":
            return self._deconv(node)
        if op in ("MaxPool", "AveragePool"):
            return self._pool(node)
        if op in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMax", "ReduceMean"):
            return self._reduce(node)
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
        if op in ELTWISE_ALL | ELTWISE_NEW | COMPARE:
            if node.input and all(i in self.constants for i in node.input if i):
                return "DLA", "folded to a constant", "eltwise", False
            if op in COMPARE:
                return self._compare(node)
            if op in ELTWISE_NEW:
                return self._div_pow(node)
            if op == "Min":  # NvInfer.h lists kMIN; the Orin operator matrix lists Min as not through TensorRT
                return "DLA", "element-wise Min (NvInfer.h lists it for DLA, NVIDIA's Orin operator matrix does not)", \
                    "eltwise", False
            return "DLA", "element-wise", "eltwise", True
        if op == "Concat":
            rank = len(self.shapes.get(node.output[0]) or [0] * 4)
            axis = _attr(node, "axis", 1) % max(rank, 1)
            if axis != max(rank - 3, 0):
                return "GPU", (f"Concat on axis {axis}: DLA concatenates along the channel axis (third from last, 1 in "
                               "NCHW) only"), "concat", True
            return "DLA", "channel concatenation", "concat", rank == 4  # the sources' examples are NCHW
        if op == "Softmax":
            return self._softmax(node)
        if op in SHUFFLE:
            if not self.orin:
                return "GPU", f"{op} (a Shuffle layer) is not on Xavier's DLA: keep reshapes out of the DLA part", \
                    "shuffle", False
            if op in SHUFFLE_NOT_VIA_TRT:
                return "GPU", (f"{op}: NVIDIA's Orin operator matrix lists it as not supported through TensorRT "
                               "(TensorRT may still make it a Shuffle layer DLA takes)"), "shuffle", False
            rank = len(self.shapes.get(node.output[0]) or [])
            if rank != 4:
                return "GPU", f"{op} gives a {rank}-D tensor: DLA shuffles only 4-D tensors", "shuffle", True
            return "DLA", "4-D shuffle on Orin", "shuffle", False
        if op in ("Slice", "Split"):
            return self._slice(node)
        if op == "Abs":
            return "DLA", "unary Abs", "unary", True
        if op in UNARY_GPU:
            return "GPU", f"unary {op}: DLA runs Abs only", "unary", True
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

    def _n_const(self, node) -> int:
        return sum(1 for i in node.input if i and i in self.constants)

    def _div_pow(self, node):
        op = node.op_type
        if self.trt == "8.5":  # NvInfer.h 8.5.2 lists Sum/Prod/Max/Min/Sub only; the Orin matrix: Div/Pow "See RFE"
            return "GPU", (f"{op} is not a DLA operation in TensorRT {self.version} (Sum, Sub, Prod, Max, Min only): "
                           "keep it out of the DLA part, or fold it into a constant"), "eltwise", \
                self._n_const(node) == 0  # with a constant operand TensorRT may fuse it into a Scale layer
        if self.trt == "8.6":  # the Orin matrix dates Div to TensorRT 8.6.12 (DRIVE OS); JetPack 6.0 has 8.6.2
            return "GPU", (f"{op}: NVIDIA documents DLA {op} from TensorRT 8.6.12 (DRIVE OS); for "
                           f"TensorRT {self.version} it is not stated, and NvInfer.h 8.6 lists Sum/Sub/Prod/Max/Min "
                           "only"), "eltwise", False
        n = self._n_const(node)
        if op == "Pow" and n != 1:
            return "GPU", "Pow on DLA needs exactly one constant input (TensorRT 10.3 Operators reference)", \
                "eltwise", True
        return "DLA", f"element-wise {op} ({'one constant input' if n else 'no constant input'})", "eltwise", True

    def _compare(self, node):
        op = node.op_type
        if not self.orin:  # the comparison rows of the sources are Orin's (operator matrix, Developer Guide)
            return "GPU", f"{op}: documented for Orin's DLA only, not Xavier's", "compare", False
        if self.trt == "8.5" and op != "Equal":
            return "GPU", (f"{op} is not a DLA operation in TensorRT {self.version} (NVIDIA's Orin operator matrix "
                           "lists Equal only)"), "compare", True
        if self.trt == "8.6" and op != "Equal":
            return "GPU", (f"{op}: NVIDIA documents DLA {op} from TensorRT 8.6.12 (DRIVE OS); for TensorRT "
                           f"{self.version} it is not stated"), "compare", False
        if self.trt == "10":
            shapes = [self.shapes.get(i) for i in node.input[:2]]
            if all(shapes) and shapes[0] != shapes[1]:
                big, small = sorted(shapes, key=lambda s: sum(d or 0 for d in s), reverse=True)
                fits = len(big) == len(small) == 4 and small[0] == big[0] and (
                    small[1:] == [1, 1, 1] or (small[1] == big[1] and small[2:] == [1, 1]))
                if not fits:
                    return "GPU", (f"{op} broadcasting {small} against {big}: DLA broadcasts comparisons only as "
                                   "NCHW, NC11 or N111 (TensorRT 10.3 Operators reference)"), "compare", True
        if self.precision == "fp16":
            return "GPU", f"{op} runs on DLA in INT8 only (Developer Guide); this build is FP16", "compare", \
                self.trt == "10"
        return "DLA", f"{op} on Orin (INT8 builds only; its output is cast right after)", "compare", \
            self.precision == "int8" and self.trt == "10"

    def _softmax(self, node):
        if not self.orin:
            return "GPU", "SoftMax is not on Xavier's DLA: drop it (argmax of logits is the same)", "softmax", True
        dims = self.shapes.get(node.input[0]) or []
        if not dims or None in dims:
            return "DLA", "SoftMax on Orin (shape unknown here)", "softmax", False
        axis = _attr(node, "axis", -1) % len(dims)
        if axis == 0 or len(dims) < 2:
            return "GPU", "SoftMax over the batch axis: DLA needs a channel or spatial axis", "softmax", True
        others = [d for i, d in enumerate(dims[1:], 1) if i != axis]
        limit = 8192 if all(d == 1 for d in others) else 1024
        if dims[axis] > limit:
            return "GPU", f"SoftMax over {dims[axis]} values: DLA takes at most {limit} here", "softmax", True
        return "DLA", "SoftMax on Orin", "softmax", True

    def _slice(self, node):
        op = node.op_type
        if not self.orin:
            return "GPU", f"{op} is not on Xavier's DLA", "slice", False
        dims = self.shapes.get(node.input[0]) or []
        if len(dims) != 4:
            return "GPU", f"{op} of a {len(dims)}-D tensor: DLA slices 4-D inputs only", "slice", bool(dims)
        if op == "Split":
            axis = _attr(node, "axis", 0) % 4
            if axis == 0:
                return "GPU", "Split along the first dimension: DLA does not slice it", "slice", True
            return "DLA", "Split (a Slice in TensorRT) on Orin", "slice", False
        if not all(i in self.constants for i in node.input[1:] if i):
            return "GPU", "Slice parameters computed at run time: DLA needs them static", "slice", True
        val = self.values
        starts, ends = (val.get(node.input[k]) for k in (1, 2))
        axes = val.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        steps = val.get(node.input[4]) if len(node.input) > 4 and node.input[4] else None
        if steps is not None and any(int(v) != 1 for v in steps.ravel()):
            return "GPU", f"Slice steps {steps.ravel().tolist()}: DLA needs stride 1", "slice", True
        if starts is not None and ends is not None:
            sliced = [int(a) % 4 for a in (axes.ravel() if axes is not None else range(starts.size))]
            for a, b, e in zip(sliced, starts.ravel(), ends.ravel()):
                if a == 0 and dims[0] is not None and not (int(b) == 0 and int(e) >= dims[0]):
                    return "GPU", "Slice of the first dimension: DLA does not slice it", "slice", True
        return "DLA", "static slice on Orin", "slice", False

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
        if not _deconv_size(k):
            return "GPU", f"deconvolution kernel {list(k)} outside 1..32 (or 64/96/128 by 1)", "deconv", True
        if any(pads) or any(_attr(node, "output_padding", [])):
            return "GPU", (f"deconvolution padding {list(pads)}: DLA needs 0 (ConvTranspose2d(padding=0, "
                           "output_padding=0), crop afterwards, or Upsample + Conv)"), "deconv", True
        if not _deconv_size(strides):
            return "GPU", f"deconvolution stride {list(strides)} outside 1..32 (or 64/96/128 by 1)", "deconv", True
        if any(d != 1 for d in dil) or _attr(node, "group", 1) != 1:
            return "GPU", "dilated or grouped deconvolution: DLA needs dilation 1 and groups 1", "deconv", True
        return "DLA", "deconvolution within limits", "deconv", True

    def _pool(self, node):
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
        if node.op_type == "AveragePool" and not self.orin and not _attr(node, "count_include_pad", 0):
            # NvInfer.h 8.5.2/8.6: "On Xavier, DLA supports only inclusive padding"; onnx-tensorrt sets
            # averageCountExcludesPadding from count_include_pad (default 0: exclusive)
            return "GPU", ("average pooling that excludes padding (ONNX count_include_pad=0): Xavier's DLA counts "
                           "padding (AvgPool2d(count_include_pad=True))"), "pool", any(pads)
        return "DLA", "pooling within limits", "pool", True

    def _reduce(self, node):
        op = node.op_type
        is_max = op in ("GlobalMaxPool", "ReduceMax")
        if self.trt == "8.5":
            return "GPU", (f"{op} becomes a Reduce layer in TensorRT's ONNX parser, which TensorRT "
                           f"{self.version} does not run on DLA: use AveragePool/MaxPool with a window of the map "
                           "(<= 8) instead"), "reduce", True
        if self.trt == "8.6" or not is_max:
            return "GPU", (f"{op} becomes a Reduce layer{' (average)' if not is_max else ''}; DLA's Reduce is "
                           f"{'MAX only' if not is_max else 'documented from TensorRT 8.6.12 (DRIVE OS)'}: use "
                           "AveragePool/MaxPool with a window of the map (<= 8) instead"), "reduce", not is_max
        return "DLA", "Reduce MAX over C/H/W", "reduce", False

    def _resize(self, node):
        mode = _text(_attr(node, "mode", b"nearest"))
        coord = _text(_attr(node, "coordinate_transformation_mode", b"half_pixel"))
        nearest = _text(_attr(node, "nearest_mode", b"round_prefer_floor"))
        ins, outs = self.shapes.get(node.input[0]), self.shapes.get(node.output[0])
        scales, from_sizes = None, False
        if len(node.input) > 2 and node.input[2] in self.values and self.values[node.input[2]].size:
            scales = [float(s) for s in self.values[node.input[2]].ravel()]
        elif ins and outs and len(ins) == len(outs) and None not in ins + outs and all(ins):
            scales, from_sizes = [o / i for o, i in zip(outs, ins)], True
        if scales is None:
            return "GPU", "Resize scales unknown before the build (dynamic size): DLA needs fixed scales", "resize", \
                False
        if len(scales) != 4 or scales[0] != 1 or scales[1] != 1:
            return "GPU", f"Resize scales {scales}: DLA needs 4 scales with batch and channel at 1", "resize", True
        hw = scales[2:]
        integral = all(float(s).is_integer() for s in hw)
        # NvInfer.h notes "setOutputDimensions() is not supported" on DLA: whether the parser turns a
        # constant sizes input into scales was not checked, so a size-given Resize stays unchecked
        sure = not from_sizes
        if mode == "nearest":
            # onnx-tensorrt: asymmetric -> kASYMMETRIC, half_pixel -> kHALF_PIXEL (selector kFORMULA),
            # floor -> kFLOOR, round_prefer_floor/ceil -> kHALF_DOWN/kHALF_UP; DLA lists exactly
            # (kASYMMETRIC, kFORMULA, kFLOOR) and (kHALF_PIXEL, kFORMULA, kHALF_DOWN | kHALF_UP)
            if (coord, nearest) not in {("asymmetric", "floor"), ("half_pixel", "round_prefer_floor"),
                                        ("half_pixel", "round_prefer_ceil")}:
                return "GPU", (f"nearest Resize with {coord!r} coordinates and {nearest!r} rounding: DLA takes "
                               "asymmetric+floor (PyTorch's nearest) or half_pixel+round_prefer_*"), "resize", True
            if not integral or not _range(hw, 1, 32):
                return "GPU", (f"nearest Resize by {hw}: DLA needs integer scales 1..32 (resize to a multiple of the "
                               "input size)"), "resize", True
            return "DLA", "nearest, integer scale", "resize", sure
        if mode == "linear":
            if coord not in ("half_pixel", "pytorch_half_pixel"):  # kHALF_PIXEL with kFORMULA or kUPPER
                return "GPU", (f"bilinear Resize with {coord!r} coordinates: DLA needs half-pixel "
                               "(interpolate(..., align_corners=False))"), "resize", True
            if not integral or not _range(hw, 1, 4):
                return "GPU", f"bilinear Resize by {hw}: DLA needs integer scales 1..4 (upsample in x2/x4 steps)", \
                    "resize", True
            return "DLA", "bilinear, half-pixel, integer scale", "resize", sure
        return "GPU", f"Resize mode {mode!r}: DLA has nearest and bilinear only", "resize", True


def _deconv_size(values) -> bool:
    """Deconvolution kernel/stride on DLA: each 1..32, or 64/96/128 in one dimension and 1 in the
    other (NvInfer.h 8.5.2/8.6/10.3, IDeconvolutionLayer::setKernelSizeNd/setStrideNd)."""
    v = [int(x) for x in values]
    return _range(v, 1, 32) or (len(v) == 2 and sorted(v)[0] == 1 and sorted(v)[1] in (64, 96, 128))


def dla_preflight(model: onnx.ModelProto, target: Target, precision: str | None = None
                 ) -> tuple[DlaReport, list[tuple[str, str, str, str]]]:
    """Place every layer of ``model`` on DLA or GPU for ``target`` (a DLA board), by the rules of
    the target's TensorRT version. ``precision`` ("fp16"/"int8") is the build's when known: DLA
    runs comparisons in INT8 only; None leaves those placements unchecked.

    Returns the report and findings as (severity, code, node name, message) for lint to add.
    """
    report = DlaReport(board=target.dla or "", trt_version=target.trt_version, unchecked=list(UNCHECKED))
    findings: list[tuple[str, str, str, str]] = []
    constants = folded_constants(model)
    inits = {i.name for i in model.graph.initializer}
    dynamic = [i.name for i in model.graph.input if i.name not in inits
               and any(not d.HasField("dim_value") for d in i.type.tensor_type.shape.dim)]
    judge = _Judge(model, target, constants, precision)
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


