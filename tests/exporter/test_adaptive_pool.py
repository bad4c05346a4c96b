"""Shape-following adaptive pooling against PyTorch's own kernels, bin layout by bin layout.

The cases that matter are the ones PyTorch's export lowering freezes: sizes not divisible by
the output (bins of two lengths), sizes below the output (bins repeat one input), and output
sizes given as tuples with ``None``.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segexport.exporter.adaptive_pool import shape_following_adaptive_pooling

SIZES = [1, 2, 3, 5, 6, 7, 12, 13, 31]
OUTPUTS = [2, 3, 6, (2, 3), (None, 4), (5, None)]


@pytest.mark.parametrize("output", OUTPUTS, ids=str)
def test_average_and_max_match_pytorch_at_every_size(output):
    torch.manual_seed(0)
    avg, mx = nn.AdaptiveAvgPool2d(output), nn.AdaptiveMaxPool2d(output)
    for h, w in itertools.product(SIZES, SIZES[::2]):
        x = torch.randn(2, 3, h, w)
        want_avg, want_max = avg(x), mx(x)
        with shape_following_adaptive_pooling():
            got_avg, got_max = avg(x), mx(x)
        assert got_avg.shape == want_avg.shape, (h, w)
        torch.testing.assert_close(got_avg, want_avg, rtol=1e-6, atol=1e-6)
        assert torch.equal(got_max, want_max), (h, w)  # a max of maxes is the max: exact


def test_functions_are_restored_and_global_pooling_and_indices_are_left_to_pytorch():
    avg, mx = F.adaptive_avg_pool2d, F.adaptive_max_pool2d
    x = torch.randn(1, 2, 7, 5)
    with shape_following_adaptive_pooling():
        assert F.adaptive_avg_pool2d is not avg
        assert torch.equal(F.adaptive_avg_pool2d(x, 1), avg(x, 1))  # bit-identical: PyTorch's own op
        values, indices = F.adaptive_max_pool2d(x, 3, True)
        assert torch.equal(indices, mx(x, 3, True)[1])
    assert F.adaptive_avg_pool2d is avg and F.adaptive_max_pool2d is mx
    with pytest.raises(RuntimeError), shape_following_adaptive_pooling():
        raise RuntimeError("an export that fails")
    assert F.adaptive_avg_pool2d is avg and F.adaptive_max_pool2d is mx
