"""Bilinear upsampling exports to the Resize TensorRT runs, follows dynamic sizes, matches
PyTorch; antialias/bicubic are refused before export with the module named."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

from segexport.errors import UserError
from segexport.exporter.resize import check_interpolation


class Up(nn.Module):
    def __init__(self, align_corners: bool, by: str, mode: str = "bilinear", antialias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.align_corners, self.by, self.mode, self.antialias = align_corners, by, mode, antialias

    def forward(self, x):
        y = self.conv(x)[:, :, ::2, ::2]
        if self.by == "size":
            return F.interpolate(y, size=x.shape[-2:], mode=self.mode, align_corners=self.align_corners,
                                 antialias=self.antialias)
        return F.interpolate(y, scale_factor=2.0, mode=self.mode, align_corners=self.align_corners)


def export(model: nn.Module, dynamic: bool) -> onnx.ModelProto:
    x = torch.randn(1, 3, 40, 48)
    shapes = ({2: Dim("h", min=8, max=256), 3: Dim("w", min=8, max=256)},) if dynamic else None
    with contextlib.redirect_stdout(io.StringIO()):
        return torch.onnx.export(model.eval(), (x,), dynamo=True, opset_version=18, dynamic_shapes=shapes).model_proto


@pytest.mark.parametrize("align_corners, coord", [(False, "half_pixel"), (True, "align_corners")])
@pytest.mark.parametrize("by", ["size", "scale"])
def test_bilinear_exports_to_matching_resize(align_corners, coord, by):
    model = Up(align_corners, by).eval()
    proto = export(model, dynamic=True)
    resizes = [n for n in proto.graph.node if n.op_type == "Resize"]
    assert len(resizes) == 1
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in resizes[0].attribute}
    assert attrs["mode"] == b"linear"
    assert attrs["coordinate_transformation_mode"].decode() in (coord, "pytorch_half_pixel" if coord == "half_pixel" else coord)
    assert not attrs.get("antialias", 0)
    sess = ort.InferenceSession(proto.SerializeToString())
    for h, w in ((40, 48), (66, 98), (18, 30)):  # sizes other than the export example
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        assert got.shape == ref.shape  # the output size follows the input
        assert np.abs(got - ref).max() <= 1e-5


def test_fcn_bilinear_deconvolution_matches():
    from segexport.models.layers import bilinear_kernel

    up = nn.ConvTranspose2d(3, 3, 16, stride=8, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(3, 16))
    proto = export(nn.Sequential(up), dynamic=True)
    sess = ort.InferenceSession(proto.SerializeToString())
    x = torch.randn(1, 3, 13, 9)
    with torch.no_grad():
        ref = up(x).numpy()
    assert np.abs(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0] - ref).max() <= 1e-5


@pytest.mark.parametrize("mode, antialias, fragment", [("bilinear", True, "antialias=True"), ("bicubic", False, "'bicubic'")])
def test_unsafe_interpolation_is_refused_with_module(mode, antialias, fragment):
    model = nn.Sequential(nn.Identity(), Up(False, "size", mode=mode, antialias=antialias))
    with pytest.raises(UserError, match=fragment) as info:
        check_interpolation(model, torch.randn(1, 3, 16, 16))
    assert "1:" in str(info.value)  # the submodule's qualified name ("1")


def test_safe_interpolation_passes_and_keeps_outputs():
    model = Up(True, "size").eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
    check_interpolation(model, x)
    with torch.no_grad():
        assert torch.equal(model(x), before)  # hooks removed, nothing altered
