"""Tensors built from sizes (SFNet's ``torch.tensor([[[[w, h]]]])``, ``torch.linspace(-1, 1, h)``)
keep the size symbolic while a dynamic export traces, and are the original calls otherwise."""

from __future__ import annotations

import torch
from torch.export import Dim

from segexport.exporter.size_tensors import _linspace, tensors_of_sizes


def test_linspace_of_a_size_agrees_with_pytorch_to_one_ulp():
    for n in (2, 3, 17, 64, 101):
        want = torch.linspace(-1.0, 1.0, n)
        got = _linspace(-1.0, 1.0, n, torch.float32, None)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert (got - want).abs().max() <= 6e-8, n


def test_size_tensors_stay_symbolic_under_torch_export_and_are_restored():
    class Grid(torch.nn.Module):
        def forward(self, x):
            h, w = x.shape[2:]
            norm = torch.tensor([[[[w, h]]]]).type_as(x)
            ys = torch.linspace(-1.0, 1.0, h).view(-1, 1)
            return x * norm.sum() + ys

    plain_tensor, plain_linspace = torch.tensor, torch.linspace
    dims = ({2: Dim("h", min=16, max=64), 3: Dim("w", min=16, max=80)},)
    with tensors_of_sizes():
        program = torch.export.export(Grid(), (torch.rand(1, 3, 32, 40),), dynamic_shapes=dims, strict=False)
        assert torch.tensor([1, 2]).dtype == torch.int64 and torch.tensor([1.5]).dtype == torch.float32
    assert torch.tensor is plain_tensor and torch.linspace is plain_linspace
    x = torch.rand(1, 3, 20, 50)
    assert torch.allclose(program.module()(x), Grid()(x), atol=1e-6)
