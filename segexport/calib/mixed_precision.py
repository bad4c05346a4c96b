"""Accuracy-budgeted mixed precision: keep the most sensitive layers in float until the
INT8 model is within budget.

Budget: an mIoU drop in points against the FP32 ONNX on labelled held-out data, or, without
labels, a drop of label agreement with the FP32 ONNX (percent). Sensitivity of a layer is
measured, not guessed: quantize everything except that layer (re-using the one calibration)
and see how much of the loss comes back. Layers are then kept in float greedily, most
sensitive first, re-measuring after each, until the budget holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from segexport.calib.int8 import Calibration, quantizable_nodes, quantize_qdq
from segexport.core.metrics import labels_of, miou


@dataclass
class Evaluation:
    inputs: np.ndarray
    labels: np.ndarray | None
    num_classes: int
    reference_labels: np.ndarray  # labels (metrics.labels_of) of the FP32 ONNX on ``inputs``
    reference_miou: float | None
    input_name: str = "input"
    output_name: str = "logits"
    batch: int = 1
    # What a cost is: "miou" (drop in points, needs labels) or "agreement" (percent of labels
    # that change vs fp32). The budget decides: --max-agreement-drop measures agreement even
    # where labels exist.
    metric: str = "miou"
    # the fp32 reference's top-2 logit margin per pixel (calib.gate.confidence_margin): the agreement
    # cost counts the confident pixels, as the gate does, when the reference has enough of them
    reference_margin: np.ndarray | None = None

    def confident(self) -> np.ndarray | None:
        """The pixels the agreement is judged on, or None (every pixel) when too few are confident."""
        from segexport.calib.gate import confident_pixels

        if self.reference_margin is None:
            return None
        mask, enough = confident_pixels(self.reference_margin)
        return mask if enough else None

    # graph digest -> (labels, margins) of the candidates costed so far: the gate's report on the
    # written file reuses them when the file holds that very graph (saves one more pass over the data)
    predictions: dict = field(default_factory=dict)

    def cost(self, model: onnx.ModelProto) -> float:
        """mIoU drop in points, or label-agreement drop in percent (confident pixels), per ``metric``."""
        pred, margin = predict(model, self.inputs, self.input_name, self.output_name, self.batch, margins=True)
        self.predictions = {graph_digest(model): (pred, margin)}  # the latest only: a search costs hundreds
        if self.metric == "miou" and self.labels is not None:
            return float(self.reference_miou - miou(pred, self.labels, self.num_classes))
        agree = pred == self.reference_labels
        mask = self.confident()
        return float(100.0 * (1.0 - (agree[mask] if mask is not None else agree).mean()))


def graph_digest(model: onnx.ModelProto) -> str:
    """SHA-256 of the graph alone (nodes, weights), not of the metadata written after costing."""
    import hashlib

    return hashlib.sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()


def predict(model: onnx.ModelProto | str, inputs: np.ndarray, input_name: str, output_name: str, batch: int,
            *, margins: bool = False):
    """Label maps of ``model`` on ``inputs``; with ``margins``, also the top-2 confidence margins."""
    from segexport.calib.gate import confidence_margin
    from segexport.core.comparison import pad_batch
    from segexport.core.sessions import ort_session

    sess = ort_session(model)
    outs, gaps = [], []
    for i in range(0, len(inputs), batch):
        chunk = inputs[i:i + batch]
        out = np.asarray(sess.run([output_name], {input_name: pad_batch(chunk, batch)})[0])[:len(chunk)]
        outs.append(labels_of(out))
        if margins:
            gaps.append(confidence_margin(out) if out.ndim == 4 else np.full(out.shape, np.finfo(np.float32).max, np.float32))
    if margins:
        return np.concatenate(outs), np.concatenate(gaps)
    return np.concatenate(outs)


@dataclass
class KeptLayer:
    node: str
    module: str  # the PyTorch module the node came from (exporter's scope metadata)
    cost_if_only_this_kept: float
    recovered: float = 0.0  # all-INT8 cost minus the cost with only this layer in float
    reason: str = "budget"  # "budget" (the sensitivity search) or "--keep-float" (the user asked)


@dataclass
class MixedResult:
    model: onnx.ModelProto
    cost: float
    all_int8_cost: float
    kept_float: list[KeptLayer] = field(default_factory=list)
    evaluated: int = 0


def budgeted_int8(onnx_path: str, calibration: Calibration, evaluation: Evaluation, budget: float,
                  progress=None, keep: list[str] | None = None) -> MixedResult:
    from segexport.core.graph import module_of

    say = progress or (lambda *_a, **_k: None)
    keep = list(keep or [])  # nodes the user keeps in float (--keep-float): never quantized, never searched
    full = quantize_qdq(onnx_path, calibration, exclude=keep)
    base = evaluation.cost(full)
    result = MixedResult(full, base, base, evaluated=1)
    if base <= budget:
        return result
    nodes = [n for n in quantizable_nodes(onnx_path) if n.name not in keep]
    scores = []
    for i, node in enumerate(nodes):
        say(f"sensitivity of {module_of(node) or node.name}", i, len(nodes))
        cost = evaluation.cost(quantize_qdq(onnx_path, calibration, exclude=keep + [node.name]))
        scores.append((cost, node))
    result.evaluated += len(nodes)
    scores.sort(key=lambda t: t[0])  # lowest remaining cost = most sensitive layer
    kept: list[KeptLayer] = []
    for cost_alone, node in scores:
        kept.append(KeptLayer(node.name, module_of(node), cost_alone, base - cost_alone))
        model = quantize_qdq(onnx_path, calibration, exclude=keep + [k.node for k in kept])
        cost = evaluation.cost(model)
        result.evaluated += 1
        say(f"keeping {len(kept)} layer(s) in float: cost {cost:.3f}", len(kept), len(scores))
        if cost <= budget:
            result.model, result.cost, result.kept_float = model, cost, kept
            return result
    result.model, result.cost, result.kept_float = model, cost, kept  # everything kept: float model with Q/DQ nowhere
    return result
