"""Building blocks shared by the zoo families.

Kept deliberately small: only what two or more families use. Cropping is written with
tensor slicing on sizes read from the input so that the exported ONNX graph computes
the crop from the runtime shape (``Shape`` -> ``Slice``) and works with dynamic H/W.
"""

from __future__ import annotations

import torch
from torch import nn


def scaled(channels: int, width: float) -> int:
    """Channel count under the width multiplier (never below 1)."""
    return max(1, int(round(channels * width)))


# VGG16's thirteen 3x3 convolutions, grouped by stage (Simonyan & Zisserman, 2015).
VGG16_STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)


def conv_relu(cin: int, cout: int, kernel: int = 3, padding: int = 1, dilation: int = 1) -> nn.Sequential:
    """Conv + ReLU, the plain VGG unit (FCN, DeepLab, DilatedNet have no BatchNorm)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation),
        nn.ReLU(inplace=True),
    )


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, padding: int = 1) -> nn.Sequential:
    """Conv + BN + ReLU, the VGG16-BN unit of DeconvNet and SegNet ("CBR" in the note)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=padding),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def vgg_stage_widths(width: float) -> list[list[int]]:
    """VGG16 stage channel lists under the width multiplier."""
    return [[scaled(c, width) for c in stage] for stage in VGG16_STAGES]


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights that make a ``ConvTranspose2d`` a per-channel bilinear upsampler.

    FCN initialises its upsampling deconvolutions this way (Long et al., 2015, sec. 3.3):
    a separable triangle filter on the channel diagonal, zero elsewhere.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=torch.float64)
    idx = torch.arange(channels)
    weight[idx, idx] = filt
    return weight.float()


def crop_to(x: torch.Tensor, like: torch.Tensor, offset: int | tuple[int, int] = 0) -> torch.Tensor:
    """Crop ``x`` spatially to the size of ``like``, starting at ``offset`` (Caffe ``Crop``)."""
    oy, ox = (offset, offset) if isinstance(offset, int) else offset
    h, w = like.shape[-2], like.shape[-1]
    return x[..., oy : oy + h, ox : ox + w]


def center_crop_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Crop ``x`` to ``like``'s spatial size around the centre (Lasagne's ``'center'`` crop)."""
    h, w = like.shape[-2], like.shape[-1]
    oy = (x.shape[-2] - h) // 2
    ox = (x.shape[-1] - w) // 2
    return x[..., oy : oy + h, ox : ox + w]


def he_init(module: nn.Module) -> None:
    """He (Kaiming) normal init for every convolution below ``module``, zero biases.

    Plain VGG stacks without BatchNorm (DeepLab, DilatedNet) barely train from scratch with
    PyTorch's default init; the papers start from ImageNet weights, users without them need this.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


__all__ = [
    "VGG16_STAGES",
    "bilinear_kernel",
    "ceil_div",
    "center_crop_to",
    "conv_bn_relu",
    "conv_relu",
    "count_parameters",
    "he_init",
    "crop_to",
    "vgg_stage_widths",
]
