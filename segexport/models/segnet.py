"""SegNet (Badrinarayanan, Kendall, Cipolla, TPAMI 2017) and the VGG16-BN encoder that
remembers where its maxima were, shared with DeconvNet.

Every pool is its own ``nn.MaxPool2d(2, 2, return_indices=True)`` module and every unpool
its own ``nn.MaxUnpool2d(2, 2)`` called with ``output_size`` = the pre-pool size. Keeping
them as modules is what lets the exporter swap each pair for the TensorRT-safe masked
rewrite (``segexport.exporter.unpool``); ``output_size`` is what brings back odd sizes.

SegNet pools in floor mode as the Caffe reference does: on an odd side the last row or
column is never a maximum and comes back from unpooling as zeros.
"""

from __future__ import annotations

import torch
from torch import nn

from segexport.models.layers import conv_bn_relu, vgg_stage_widths
from segexport.models.registry import ModelSpec, register

PAPER = ("Badrinarayanan, Kendall, Cipolla. SegNet: A Deep Convolutional Encoder-Decoder Architecture "
         "for Image Segmentation. TPAMI 2017 (arXiv:1511.00561)")


class VGGBNEncoder(nn.Module):
    """VGG16-BN conv1..conv5, each stage ending in a max pool that returns its indices."""

    def __init__(self, width: float, ceil_mode: bool) -> None:
        super().__init__()
        self.widths = vgg_stage_widths(width)
        self.stages = nn.ModuleList()
        self.pools = nn.ModuleList()
        cin = 3
        for stage in self.widths:
            layers = []
            for cout in stage:
                layers.append(conv_bn_relu(cin, cout))
                cin = cout
            self.stages.append(nn.Sequential(*layers))
            self.pools.append(nn.MaxPool2d(2, 2, ceil_mode=ceil_mode, return_indices=True))
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Size]]]:
        """The pooled features and, per stage, (indices, pre-pool spatial size)."""
        memory = []
        for stage, pool in zip(self.stages, self.pools):
            x = stage(x)
            size = x.shape[-2:]
            x, indices = pool(x)
            memory.append((indices, size))
        return x, memory


def decoder_widths(width: float) -> list[list[tuple[int, int]]]:
    """(in, out) channels of the mirrored decoder, deepest stage first.

    Each stage mirrors an encoder stage: its convolutions keep the channel count except
    the last, which drops to the next (shallower) stage's width.
    """
    enc = vgg_stage_widths(width)
    stages = []
    for i in range(len(enc) - 1, -1, -1):
        chans = enc[i]
        nxt = enc[i - 1][-1] if i > 0 else chans[0]
        pairs = [(c, c) for c in chans[:-1]] + [(chans[-1], nxt)]
        stages.append(pairs)
    return stages


class SegNet(nn.Module):
    def __init__(self, num_classes: int = 21, width: float = 1.0) -> None:
        super().__init__()
        self.encoder = VGGBNEncoder(width, ceil_mode=False)
        self.unpools = nn.ModuleList()
        self.decoders = nn.ModuleList()
        widths = decoder_widths(width)
        for i, pairs in enumerate(widths):
            if i == len(widths) - 1:
                pairs = pairs[:-1]  # conv1_1_D is the classifier below
            self.unpools.append(nn.MaxUnpool2d(2, 2))
            self.decoders.append(nn.Sequential(*[conv_bn_relu(a, b) for a, b in pairs]))
        last = widths[-1][0][0]
        self.classifier = nn.Conv2d(last, num_classes, 3, padding=1)  # SegNet scores with a 3x3 conv
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, memory = self.encoder(x)
        for unpool, decode, (indices, size) in zip(self.unpools, self.decoders, reversed(memory)):
            x = decode(unpool(x, indices, output_size=size))
        return self.classifier(x)


def init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


register(ModelSpec(
    name="segnet",
    family="segnet",
    factory=lambda num_classes=21, width=1.0: SegNet(num_classes, width),
    paper=PAPER,
    default_input_size=(360, 480),
    output_stride=32,
    min_size=32,
    paper_params=29_500_000,
    description="VGG16-BN encoder without FC layers; the decoder unpools with the encoder's max indices, "
                "then conv+BN+ReLU; a 3x3 conv scores the classes.",
    notes=("default input 360x480 is CamVid's resolution, the paper's main benchmark",
           "floor-mode pools as in the Caffe reference: odd last rows/columns are restored as zeros"),
))
