"""`segexport deploy`: DeepStream and Triton bundles for every zoo model (tiny width) and a user model.

Each bundle is parsed the way its consumer would: config.pbtxt with Triton's own ModelConfig
schema, the nvinfer config against the documented Gst-nvinfer keys and value ranges. The baked
normalisation is checked here again, independently of the library's own check, on fresh images:
the bundle ONNX fed nvinfer-style raw 0..255 pixels against the export with exact preprocessing.
"""

from __future__ import annotations

import json
import re
import shlex
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

from segexport.data.images import preprocess
from segexport.deploy.deepstream import CONFIG_NAME, deploy_deepstream
from segexport.deploy.nvinfer_keys import NVINFER_PROPERTIES, check_config
from segexport.deploy.triton import deploy_triton
from segexport.exporter.export import ExportOptions, export_onnx
from segexport.exporter.metadata import read_record
from segexport.models.registry import list_models
from tests.conftest import TINY_WIDTH

ZOO = [s.name for s in list_models()]


def _ort(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _labels(y: np.ndarray) -> np.ndarray:
    return (y[:, 0] > 0).astype(np.int64) if y.shape[1] == 1 else y.argmax(axis=1)


def _fresh_images(record, count: int = 3) -> np.ndarray:
    """Images the library's own check never saw: another seed, a gradient, a checkerboard."""
    h, w = record.preprocess.input_size
    rng = np.random.default_rng(1234)
    noise = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    ramp = np.broadcast_to(np.linspace(0, 255, w, dtype=np.float32)[None, None, :, None], (1, h, w, 3)).astype(np.uint8)
    board = ((np.indices((h, w)).sum(axis=0) % 2) * 255).astype(np.uint8)[None, ..., None].repeat(3, axis=3)
    return np.concatenate([noise, ramp, board])[:count]


def assert_baked_agrees(onnx_path: Path, bundle_onnx: Path) -> float:
    """Labels of the bundle graph on raw pixels vs the export on exactly preprocessed pixels, taken at
    the export's output tensor inside the bundle (the Softmax after it may only move float ties)."""
    from segexport.checks.metrics import top2_margin

    record, baked = read_record(onnx_path), read_record(bundle_onnx)
    assert baked.input_name != record.input_name and baked.preprocess.scale == 1.0
    rgb = _fresh_images(record)
    exact = np.stack([preprocess(im, record.preprocess) for im in rgb])
    raw = rgb.astype(np.float32)
    if record.preprocess.color == "BGR":
        raw = raw[..., ::-1]
    raw = np.ascontiguousarray(raw.transpose(0, 3, 1, 2))
    probe = onnx.load(str(bundle_onnx))
    if baked.output_name != record.output_name:
        probe.graph.output.append(onnx.ValueInfoProto(name=record.output_name))
    import onnxruntime as ort

    ref_s = _ort(onnx_path)
    got_s = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = np.concatenate([ref_s.run(None, {record.input_name: exact[i:i + 1]})[0] for i in range(len(rgb))])
    got = [got_s.run([record.output_name, baked.output_name], {baked.input_name: raw[i:i + 1]}) for i in range(len(rgb))]
    logits, final = np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])
    agreement = float((_labels(ref) == _labels(logits)).mean())
    assert agreement >= 0.9999, agreement
    flips = _labels(final) != _labels(logits)
    assert (top2_margin(logits)[flips] < 1e-6).all()  # the Softmax only ever moves exact float ties
    return agreement


def nvinfer_properties(config: Path) -> dict[str, str]:
    import configparser

    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(config.read_text())
    return dict(parser["property"])


def check_triton(bundle, onnx_path: Path, parse_triton) -> None:
    cfg = parse_triton(bundle.config)  # Triton's own schema: an unknown field or bad enum raises here
    record = read_record(onnx_path)
    model = onnx.load(str(onnx_path))
    assert cfg.name == bundle.name and cfg.platform == "onnxruntime_onnx"
    dynamic_batch = "batch" in record.dynamic
    assert cfg.max_batch_size == (record.dynamic["batch"].max if dynamic_batch else 0)
    assert cfg.HasField("dynamic_batching") == dynamic_batch
    [inp], [out] = cfg.input, cfg.output
    onnx_dims = [[d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
                 for v in (model.graph.input[0], model.graph.output[0])]
    assert inp.name == record.input_name and out.name == record.output_name
    skip = 1 if dynamic_batch else 0
    assert list(inp.dims) == onnx_dims[0][skip:] and list(out.dims) == onnx_dims[1][skip:]
    fp32 = type(cfg).DESCRIPTOR.fields_by_name["input"].message_type.fields_by_name["data_type"].enum_type \
        .values_by_name["TYPE_FP32"].number
    assert inp.data_type == fp32 and out.data_type == fp32
    contract = json.loads(cfg.parameters["segexport.preprocess"].string_value)
    assert contract["mean"] == list(record.preprocess.mean) and contract["std"] == list(record.preprocess.std)
    assert json.loads(cfg.parameters["segexport.class_names"].string_value) == list(record.class_names)
    assert (bundle.model_file).read_bytes() == onnx_path.read_bytes()
    assert cfg.instance_group[0].count == bundle.instances
    # everything segexport writes for the model is inside its folder: the repository root holds models only
    assert [p.name for p in bundle.out.iterdir()] == [bundle.name]
    assert {"build_engine.sh", "bundle.json", "config.pbtxt", "labels.txt", "1", "selfcheck"} == {
        p.name for p in bundle.model_dir.iterdir()}
    manifest = json.loads((bundle.model_dir / "bundle.json").read_text())
    assert manifest["kind"] == "triton" and manifest["name"] == bundle.name
    assert "--onnx=1/model.onnx" in (bundle.model_dir / "build_engine.sh").read_text()  # the script cds to its folder


def check_deepstream(bundle, onnx_path: Path) -> dict[str, str]:
    text = bundle.config.read_text()
    assert check_config(text, bundle.out) == []
    props = nvinfer_properties(bundle.config)
    assert set(props) <= set(NVINFER_PROPERTIES)
    record = read_record(onnx_path)
    h, w = record.preprocess.input_size
    assert props["infer-dims"] == f"3;{h};{w}"
    assert props["num-detected-classes"] == str(record.num_classes)
    assert props["network-type"] == "2"
    assert props["model-engine-file"] == f"{props['onnx-file']}_b{bundle.batch}_gpu0_{bundle.precision}.engine"
    assert (bundle.out / "labels.txt").read_text().splitlines() == list(record.class_names)
    # every key has a comment line right above it saying where the value came from
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[i - 1].startswith("# "), line
    return props


@pytest.mark.parametrize("name", ZOO)
def test_zoo_bundles_parse_and_bake_exactly(exports, name, tmp_path, parse_triton):
    result = exports(name, False)
    ds = deploy_deepstream(result.path, tmp_path / "ds")
    props = check_deepstream(ds, result.path)
    assert props["net-scale-factor"] == "1" and props["offsets"] == "0;0;0"
    assert ds.agreement.agreement >= 0.9999
    assert_baked_agrees(result.path, ds.onnx)
    tr = deploy_triton(result.path, tmp_path / "tr")
    check_triton(tr, result.path, parse_triton)
    assert not (tmp_path / "ds" / "calib.cache").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folders left


USER_NET = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Binary(nn.Module):
        def __init__(self, num_classes=1):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3, padding=1)
            self.head = nn.Conv2d(6, num_classes, 3, padding=1)
            self.segexport_spec = {"default_input_size": (40, 56), "min_size": 8,
                                   "mean": (0.3, 0.5, 0.7), "std": (0.1, 0.2, 0.3)}

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)))

    def build(num_classes=1):
        torch.manual_seed(0)
        return Binary(num_classes)
    """
)


@pytest.fixture(scope="module")
def user_onnx(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("user")
    (root / "binarynet.py").write_text(USER_NET)
    out = root / "binary.onnx"
    export_onnx(ExportOptions(model=f"{root / 'binarynet.py'}:build", out=out, num_classes=1, input_size=(40, 56),
                              dynamic=("batch", "hw"), batch_range=(1, 4), hw_range=((32, 48), (64, 80)),
                              lint=False))
    return out


def test_user_binary_model_bundles(user_onnx, tmp_path, parse_triton):
    """A user model with one output channel and its own mean/std, exported with dynamic batch and H/W."""
    ds = deploy_deepstream(user_onnx, tmp_path / "ds", precision="fp16", batch=2)
    props = check_deepstream(ds, user_onnx)
    assert props["network-mode"] == "2" and props["batch-size"] == "2"
    assert props["segmentation-threshold"] == "0.0"
    bundle_model = onnx.load(str(ds.onnx))
    assert "Softmax" not in {n.op_type for n in bundle_model.graph.node}  # one channel: the logit itself
    assert [n.op_type for n in bundle_model.graph.node[:3]] == ["Div", "Sub", "Div"]
    assert_baked_agrees(user_onnx, ds.onnx)
    tr = deploy_triton(user_onnx, tmp_path / "tr", instances=2)
    assert tr.name == "binary"  # the record names a factory path: the ONNX's file name instead
    check_triton(tr, user_onnx, parse_triton)
    cfg = parse_triton(tr.config)
    assert cfg.max_batch_size == 4 and list(cfg.input[0].dims) == [3, -1, -1]


def _script_shapes(script: Path) -> dict[str, dict[str, tuple[int, ...]]]:
    """{--minShapes: {input: shape}, ...} from the trtexec command in build_engine.sh."""
    text = script.read_text().split("# The same build")[0].replace("\\\n", " ")
    args = shlex.split(text.split('"$TRTEXEC"')[1])
    out: dict[str, dict[str, tuple[int, ...]]] = {}
    for arg in args:
        m = re.fullmatch(r"--(min|opt|max)Shapes=(.+)", arg)
        if m:
            out[m.group(1)] = {name: tuple(int(d) for d in dims.split("x"))
                               for name, dims in (spec.rsplit(":", 1) for spec in m.group(2).split(","))}
    return out


def test_build_script_shapes_are_the_onnx_profile(user_onnx, tmp_path, exports):
    ds = deploy_deepstream(user_onnx, tmp_path / "ds")
    shapes = _script_shapes(ds.out / "build_engine.sh")
    (lo, opt, hi), = read_record(ds.onnx).profile_shapes().values()
    baked_input = onnx.load(str(ds.onnx)).graph.input[0].name
    assert shapes == {"min": {baked_input: lo}, "opt": {baked_input: opt}, "max": {baked_input: hi}}
    assert lo == (1, 3, 32, 48) and hi == (4, 3, 64, 80)  # what was exported, not re-derived
    text = (ds.out / "build_engine.sh").read_text()
    for flag in ("--onnx=", "--saveEngine=", "--timingCacheFile=", "--memPoolSize=workspace:", "segexport engine"):
        assert flag in text
    static = deploy_triton(exports("fcn8s", False).path, tmp_path / "tr")
    assert _script_shapes(static.model_dir / "build_engine.sh") == {}  # trtexec refuses shapes for a static input


def test_approximate_normalization_is_measured_and_configured(user_onnx, tmp_path):
    ds = deploy_deepstream(user_onnx, tmp_path / "ds", approximate_normalization=True)
    props = nvinfer_properties(ds.config)
    record = read_record(user_onnx)
    assert float(props["net-scale-factor"]) == pytest.approx(1 / (255 * np.mean(record.preprocess.std)))
    assert [float(v) for v in props["offsets"].split(";")] == pytest.approx([255 * m for m in record.preprocess.mean])
    assert 0.0 <= ds.agreement.agreement <= 1.0 and ds.agreement.pixels > 0
    assert "APPROXIMATION" in ds.config.read_text()
    assert read_record(ds.onnx).input_name == record.input_name  # the model still takes normalised input


def test_nvinfer_checker_can_fail():
    good = "[property]\nnetwork-type=2\nnet-scale-factor=1\noffsets=0;0;0\n"
    assert check_config(good) == []
    assert check_config("[property]\nnetwork-typ=2\n") == ["network-typ: not a documented Gst-nvinfer property"]
    assert check_config("[property]\nnetwork-mode=7\n")[0].startswith("network-mode:")
    assert check_config("[property]\noffsets=1;2\n")[0].startswith("offsets:")
    assert check_config("[property]\ninfer-dims=3;0;8\n")[0].startswith("infer-dims:")
    assert check_config("[other]\n")[0] == "unknown group [other]"
