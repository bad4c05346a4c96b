"""Plain-torch look-alikes of the Hugging Face size constructs that froze ``--dynamic hw`` exports
(issue 23), at tiny widths: each reproduces its library's export-relevant code, not its weights.

- BEiT: a relative position bias table resized to ``(torch_int(2*gh - 1), torch_int(2*gw - 1))``
  for the ``gh x gw`` patch grid, through HF's own ``torch_int`` (``int()`` outside jit tracing).
- DPT: tokens reshaped to the patch grid by ``torch_int(seq_len ** 0.5)`` (square grids only,
  as in transformers' DPTForSemanticSegmentation), the position embedding resized to the grid.
- MobileViT: ``unfolding`` to 2x2 patches with ``int(math.ceil(h / 2) * 2)`` and a resize only
  when the map is not a multiple of 2, ``folding`` resizing back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def torch_int(x):
    """transformers.utils.torch_int, as written there."""
    return x.to(torch.int64) if torch.jit.is_tracing() and isinstance(x, torch.Tensor) else int(x)


@dataclass
class _Output:
    """Stands in for transformers' SemanticSegmenterOutput (``.logits``)."""

    logits: torch.Tensor


class _BeitLike(nn.Module):
    def __init__(self, num_labels: int = 3, grid: int = 4, dim: int = 8):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, 16, 16)
        self.window = (grid, grid)
        self.table = nn.Parameter(torch.randn(1, dim, 2 * grid - 1, 2 * grid - 1))
        self.head = nn.Conv2d(dim, num_labels, 1)

    def forward(self, pixel_values):
        x = self.embed(pixel_values)
        gh, gw = pixel_values.shape[2] // 16, pixel_values.shape[3] // 16
        table = F.interpolate(self.table, size=(torch_int(2 * gh - 1), torch_int(2 * gw - 1)), mode="bilinear")
        x = x + table[:, :, gh - 1:, gw - 1:]
        logits = self.head(x)
        return _Output(logits=F.interpolate(logits, size=pixel_values.shape[2:], mode="bilinear", align_corners=False))


def hf_beit_like(num_labels: int = 3) -> nn.Module:
    return _BeitLike(num_labels)


class _DptLike(nn.Module):
    def __init__(self, num_labels: int = 3, grid: int = 4, dim: int = 8):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, 16, 16)
        self.pos = nn.Parameter(torch.randn(1, grid * grid + 1, dim))
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.head = nn.Conv2d(dim, num_labels, 3, padding=1)

    def _resize_pos_embed(self, posemb, gh, gw):
        tok, grid = posemb[:, :1], posemb[0, 1:]
        old = torch_int(grid.size(0) ** 0.5)
        grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bilinear")
        return torch.cat([tok, grid.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)], dim=1)

    def forward(self, pixel_values):
        b, _, h, w = pixel_values.shape
        pos = self._resize_pos_embed(self.pos, h // 16, w // 16)
        tokens = self.embed(pixel_values).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(b, -1, -1), tokens], dim=1) + pos
        hidden = tokens[:, 1:]
        batch, seq, channels = hidden.shape
        size = torch_int(seq ** 0.5)  # transformers' DPT neck without patch_height/width: square grids
        x = hidden.reshape(batch, size, size, channels).permute(0, 3, 1, 2)
        logits = self.head(x)
        return _Output(logits=F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False))


def hf_dpt_like(num_labels: int = 3) -> nn.Module:
    return _DptLike(num_labels)


class _MobileViTLayerLike(nn.Module):
    def __init__(self, dim: int, patch: int = 2):
        super().__init__()
        self.patch_width = self.patch_height = patch
        self.mix = nn.Linear(dim, dim)

    def unfolding(self, features):  # transformers' MobileViTLayer.unfolding (not tracing)
        patch_width, patch_height = self.patch_width, self.patch_height
        patch_area = int(patch_width * patch_height)
        batch_size, channels, orig_height, orig_width = features.shape
        new_height = int(math.ceil(orig_height / patch_height) * patch_height)
        new_width = int(math.ceil(orig_width / patch_width) * patch_width)
        interpolate = False
        if new_width != orig_width or new_height != orig_height:
            features = F.interpolate(features, size=(new_height, new_width), mode="bilinear", align_corners=False)
            interpolate = True
        num_patch_width = new_width // patch_width
        num_patch_height = new_height // patch_height
        num_patches = num_patch_height * num_patch_width
        patches = features.reshape(batch_size * channels * num_patch_height, patch_height, num_patch_width, patch_width)
        patches = patches.transpose(1, 2).reshape(batch_size, channels, num_patches, patch_area).transpose(1, 3)
        patches = patches.reshape(batch_size * patch_area, num_patches, -1)
        return patches, {"orig_size": (orig_height, orig_width), "batch_size": batch_size, "channels": channels,
                         "interpolate": interpolate, "num_patches": num_patches,
                         "num_patches_width": num_patch_width, "num_patches_height": num_patch_height}

    def folding(self, patches, info):
        patch_width, patch_height = self.patch_width, self.patch_height
        patch_area = int(patch_width * patch_height)
        b, c, n = info["batch_size"], info["channels"], info["num_patches"]
        nph, npw = info["num_patches_height"], info["num_patches_width"]
        features = patches.contiguous().view(b, patch_area, n, -1).transpose(1, 3)
        features = features.reshape(b * c * nph, npw, patch_height, patch_width).transpose(1, 2)
        features = features.reshape(b, c, nph * patch_height, npw * patch_width)
        if info["interpolate"]:
            features = F.interpolate(features, size=info["orig_size"], mode="bilinear", align_corners=False)
        return features

    def forward(self, x):
        patches, info = self.unfolding(x)
        return x + self.folding(self.mix(patches), info)


class _MobileViTLike(nn.Module):
    def __init__(self, num_labels: int = 3, dim: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 8, 8)
        self.layer = _MobileViTLayerLike(dim)
        self.head = nn.Conv2d(dim, num_labels, 1)

    def forward(self, pixel_values):
        logits = self.head(self.layer(self.stem(pixel_values)))
        return _Output(logits=F.interpolate(logits, size=pixel_values.shape[2:], mode="bilinear",
                                            align_corners=False))


def hf_mobilevit_like(num_labels: int = 3) -> nn.Module:
    return _MobileViTLike(num_labels)
