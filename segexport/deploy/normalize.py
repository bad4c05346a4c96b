"""Per-channel normalisation baked into the ONNX, so nvinfer can hand the network raw pixels.

nvinfer computes ``y = net-scale-factor * (x - offsets[c])``: one scale for every channel, so
ImageNet's per-channel std cannot be expressed in its config. Folding the normalisation into
the first convolution is not exact either: that conv zero-pads, and a padded zero of the
normalised image is not a padded zero of the raw one. Here the contract's own arithmetic is
prepended as graph ops (``Div(scale) -> Sub(mean) -> Div(std)``, the same float32 operations
in the same order as :func:`segexport.data.images.preprocess`), so the baked graph computes
exactly what exact preprocessing feeds the original, borders included.

The DeepStream variant also ends in a Softmax (multi-class): nvinfer's segmentation parser
keeps a class only where its score exceeds ``segmentation-threshold`` *and* -1, so raw
logits below -1 would read as "no class". Softmax does not move the argmax.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from segexport.data.contract import ExportRecord
from segexport.errors import UserError

RAW_INPUT = "pixels"
PROBABILITIES = "probabilities"
MIN_AGREEMENT = 0.9999
VERIFY_IMAGES = 4


TIE = 1e-6  # top-2 logits closer than this are a tie at float32 precision


@dataclass(frozen=True)
class Agreement:
    """Label agreement of a deployment's preprocessing with exact preprocessing, on ``pixels`` pixels.

    ``softmax_ties``: pixels where the appended Softmax, whose float32 probabilities can round two
    logits closer than ``TIE`` to the same value, picks the other of the tied classes (only ever
    at such ties; any other change is a failed check)."""

    agreement: float
    pixels: int
    images: int
    softmax_ties: int = 0


def channel_order(record: ExportRecord, values: tuple[float, float, float]) -> tuple[float, float, float]:
    """Per-channel values (given in RGB order, as the contract is) in the order the network's channels
    arrive: ``preprocess`` normalises in RGB and then flips for a BGR contract."""
    return tuple(values[::-1]) if record.preprocess.color == "BGR" else tuple(values)  # type: ignore[return-value]


def deepstream_graph(model, record: ExportRecord, *, bake: bool, source_sha256: str):
    """A copy of ``model`` for nvinfer: normalisation prepended when ``bake``, a Softmax appended for
    multi-class scores, and its export record rewritten to describe what it now takes and gives."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if record.argmax:
        raise UserError("this ONNX ends in ArgMax (exported with --argmax): nvinfer's segmentation parser needs the "
                        "per-class scores; re-export without --argmax")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    if len(inputs) != 1 or inputs[0].name != record.input_name:
        raise UserError(f"expected one graph input named {record.input_name!r} as the export record says: "
                        "re-export the model with `segexport onnx`")
    outputs = [o for o in graph.output if o.name == record.output_name]
    if not outputs:
        raise UserError(f"the ONNX has no output {record.output_name!r} as its export record says: re-export it")
    taken = {n for node in graph.node for n in (*node.input, *node.output)} | {t.name for t in graph.initializer}
    for name in (RAW_INPUT, PROBABILITIES):
        if name in taken:
            raise UserError(f"the graph already has a tensor named {name!r}: rename it in the model before deploying")
    contract = record.preprocess
    new_record = replace(record, source_onnx_sha256=source_sha256)
    if bake:
        elem = inputs[0].type.tensor_type.elem_type
        np_type = helper.tensor_dtype_to_np_dtype(elem)

        def const(name: str, values) -> TensorProto:
            return numpy_helper.from_array(np.asarray(values, np_type).reshape(1, 3, 1, 1), name)

        graph.initializer.extend([
            const("segexport_pixel_scale", [contract.scale] * 3),
            const("segexport_mean", channel_order(record, contract.mean)),
            const("segexport_std", channel_order(record, contract.std)),
        ])
        raw = onnx.ValueInfoProto()
        raw.CopyFrom(inputs[0])
        raw.name = RAW_INPUT
        nodes = [
            helper.make_node("Div", [RAW_INPUT, "segexport_pixel_scale"], ["segexport_scaled"], name="segexport_scale"),
            helper.make_node("Sub", ["segexport_scaled", "segexport_mean"], ["segexport_centred"], name="segexport_sub_mean"),
            helper.make_node("Div", ["segexport_centred", "segexport_std"], [record.input_name], name="segexport_div_std"),
        ]
        existing = list(graph.node)
        del graph.node[:]
        graph.node.extend(nodes + existing)
        graph.input.remove(inputs[0])
        graph.input.insert(0, raw)
        new_record = replace(new_record, input_name=RAW_INPUT,
                             preprocess=replace(contract, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1.0))
    if record.num_classes > 1:
        graph.node.append(helper.make_node("Softmax", [record.output_name], [PROBABILITIES], axis=1,
                                           name="segexport_softmax"))
        prob = onnx.ValueInfoProto()
        prob.CopyFrom(outputs[0])
        prob.name = PROBABILITIES
        index = list(graph.output).index(outputs[0])
        graph.output.remove(outputs[0])
        graph.output.insert(index, prob)
        new_record = replace(new_record, output_name=PROBABILITIES)
    from segexport.exporter.metadata import write_record

    write_record(out, new_record)
    onnx.checker.check_model(out)
    return out, new_record


def sample_images(record: ExportRecord, count: int = VERIFY_IMAGES) -> np.ndarray:
    """N x H x W x 3 uint8 RGB at the export size: synthetic scenes, plus pure noise and saturated
    0/255 extremes so every pixel value and the image borders are exercised."""
    from segexport.data.synth import synthetic_arrays

    h, w = record.preprocess.input_size
    images, _ = synthetic_arrays(max(count - 2, 1), (h, w), max(record.num_classes, 2), seed=0)
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    extremes = np.where(rng.random((1, h, w, 1)) > 0.5, 255, 0).astype(np.uint8).repeat(3, axis=3)
    return np.concatenate([images, noise, extremes])


def raw_tensor(rgb: np.ndarray, record: ExportRecord) -> np.ndarray:
    """What nvinfer feeds a ``net-scale-factor=1, offsets=0`` network: 0..255 as float, planar,
    in the ``model-color-format`` channel order (N x H x W x 3 uint8 RGB in)."""
    x = rgb.astype(np.float32)
    if record.preprocess.color == "BGR":
        x = x[..., ::-1]
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def nvinfer_approximation(record: ExportRecord) -> tuple[float, tuple[float, float, float]]:
    """(net-scale-factor, offsets) closest to the contract with one scale: offsets = mean * scale
    exactly, the scale from the mean std (the documented best single-scale choice is a compromise)."""
    contract = record.preprocess
    offsets = tuple(m * contract.scale for m in channel_order(record, contract.mean))
    factor = 1.0 / (contract.scale * float(np.mean(contract.std)))
    return factor, offsets  # type: ignore[return-value]


def _session(model):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _run(session, name: str, x: np.ndarray, batch: int) -> np.ndarray:
    from segexport.checks.metrics import labels_of

    labels = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        short = batch - len(chunk)
        if short:  # a static batch: pad with the last sample, drop its result
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], short, axis=0)])
        out = session.run(None, {name: chunk})[0]
        labels.append(labels_of(np.asarray(out, np.float32))[: batch - short])
    return np.concatenate(labels)


def _agreement(a: np.ndarray, b: np.ndarray) -> Agreement:
    return Agreement(float((a == b).mean()), int(a.size), int(a.shape[0]))


def verify_baked(original, baked, record: ExportRecord, baked_record: ExportRecord) -> Agreement:
    """Labels of the baked graph on raw pixels against the original on exactly preprocessed ones.

    Compared on the logits inside the bundle graph (the original output tensor, before the Softmax):
    that is where the normalisation is exact. The Softmax's own effect is counted apart: it may only
    change a label where the two top logits tie within float32 precision."""
    import onnx

    from segexport.checks.metrics import labels_of, top2_margin
    from segexport.data.images import preprocess
    from segexport.errors import CheckFailed

    rgb = sample_images(record)
    exact = np.stack([preprocess(im, record.preprocess) for im in rgb])
    batch = record.batch
    probe = onnx.ModelProto()
    probe.CopyFrom(baked)
    if baked_record.output_name != record.output_name:
        probe.graph.output.append(onnx.ValueInfoProto(name=record.output_name))
    ref_session, got_session = _session(original), _session(probe)
    raw = raw_tensor(rgb, record).astype(_input_type(baked))
    ref_all, logits_all, final_all = [], [], []
    for i in range(0, len(rgb), batch):
        ref_all.append(_run_raw(ref_session, record.input_name, exact[i:i + batch].astype(_input_type(original)),
                                batch, [record.output_name])[0])
        got = _run_raw(got_session, baked_record.input_name, raw[i:i + batch], batch,
                       [record.output_name, baked_record.output_name])
        logits_all.append(got[0])
        final_all.append(got[1])
    ref, logits, final = (np.concatenate(a).astype(np.float32) for a in (ref_all, logits_all, final_all))
    agreement = _agreement(labels_of(ref), labels_of(logits))
    flips = labels_of(final) != labels_of(logits)
    if flips.any() and (top2_margin(logits)[flips] >= TIE).any():
        raise CheckFailed("the Softmax appended for nvinfer changed labels away from ties: nothing written "
                          "(please report this model)")
    return Agreement(agreement.agreement, agreement.pixels, agreement.images, int(flips.sum()))


def _run_raw(session, name: str, x: np.ndarray, batch: int, outputs: list[str]) -> list[np.ndarray]:
    """``outputs`` for ``x`` (at most one batch), padding a short static batch and dropping the padding."""
    short = batch - len(x)
    if short:
        x = np.concatenate([x, np.repeat(x[-1:], short, axis=0)])
    return [np.asarray(y)[: batch - short] for y in session.run(outputs, {name: x})]


def measure_approximation(original, record: ExportRecord) -> Agreement:
    """What one ``net-scale-factor`` costs: labels with nvinfer's approximation against exact preprocessing."""
    from segexport.data.images import preprocess

    rgb = sample_images(record)
    exact = np.stack([preprocess(im, record.preprocess) for im in rgb])
    factor, offsets = nvinfer_approximation(record)
    approx = (raw_tensor(rgb, record) - np.asarray(offsets, np.float32).reshape(1, 3, 1, 1)) * np.float32(factor)
    session = _session(original)
    dtype = _input_type(original)
    ref = _run(session, record.input_name, exact.astype(dtype), record.batch)
    got = _run(session, record.input_name, approx.astype(dtype), record.batch)
    return _agreement(ref, got)


def _input_type(model) -> np.dtype:
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(model.graph.input[0].type.tensor_type.elem_type)


def save_onnx(model, path: Path) -> None:
    """Save ``model``; weights go to ``<name>.data`` beside it past protobuf's 2 GiB limit."""
    import onnx

    if model.ByteSize() > 1_800_000_000:
        onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data")
    else:  # the bytes hashed for engine checks are exactly the bytes written
        path.write_bytes(model.SerializeToString())
