"""SegNet (Badrinarayanan, Kendall, Cipolla, TPAMI 2017) and the VGG16-BN encoder that
remembers where its maxima were, shared with DeconvNet.

Every pool is its own ``nn.MaxPool2d(2, 2, return_indices=True)`` module and every unpool
its own ``nn.MaxUnpool2d(2, 2)`` called with ``output_size`` = the pre-pool size. Keeping
them as modules is what lets the exporter swap each pair for the TensorRT-safe masked
rewrite (``segexport.exporter.unpool``); ``output_size`` is what brings back odd sizes.

Pooling rounds *up* (``ceil_mode=True``), as Caffe's pooling layer always does and as the
reference model relies on: ``Models/segnet_train.prototxt`` of alexgkendall/SegNet-Tutorial,
for 360x480 CamVid, unpools pool5 to ``upsample_h: 23`` -- the 45-row conv4 map pooled to
ceil(45 / 2) = 23 rows (floor pooling would give 22 and drop the last row from every pool).
With ceil pooling an odd last row or column takes part in the max and comes back at its own
position, and any size >= 1 works.
"""

from __future__ import annotations

import torch
from torch import nn

from segexport.models.layers import conv_bn_relu, vgg_stage_widths


# What the encoder hands the decoder for each stage: the pool's argmax indices and the
# spatial size of the map before pooling (the unpool's ``output_size``).
Memory = list[tuple[torch.Tensor, torch.Size]]


class VGGBNEncoder(nn.Module):
    """VGG16-BN conv1..conv5, each stage ending in a max pool that returns its indices."""

    def __init__(self, width: float, ceil_mode: bool = True) -> None:
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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Memory]:
        """The pooled features and, per stage (shallowest first), (indices, pre-pool size)."""
        memory: Memory = []
        for stage, pool in zip(self.stages, self.pools):
            x = stage(x)
            size = x.shape[-2:]
            x, indices = pool(x)
            memory.append((indices, size))
        return x, memory


def decoder_widths(width: float) -> list[list[tuple[int, int]]]:
    """(in, out) channels of the mirrored decoder, deepest stage first.

    Each stage mirrors an encoder stage: its convolutions keep the channel count except
    the last, which drops to the next (shallower) stage's width -- conv4_1_D 512 -> 256,
    conv3_1_D 256 -> 128, conv2_1_D 128 -> 64 in the reference.
    """
    enc = vgg_stage_widths(width)
    stages = []
    for i in range(len(enc) - 1, -1, -1):
        chans = enc[i]
        nxt = enc[i - 1][-1] if i > 0 else chans[0]
        stages.append([(c, c) for c in chans[:-1]] + [(chans[-1], nxt)])
    return stages


def unpooling_decoder(stages: list[list[tuple[int, int]]], block) -> tuple[nn.ModuleList, nn.ModuleList]:
    """One ``nn.MaxUnpool2d`` and one stack of ``block(cin, cout)`` per decoder stage.

    Shared by SegNet (conv+BN+ReLU blocks) and DeconvNet (3x3 deconvolution+BN+ReLU). Returned as
    two lists the model keeps as ``unpools`` and ``decoders`` so checkpoint keys stay flat.
    """
    unpools = nn.ModuleList(nn.MaxUnpool2d(2, 2) for _ in stages)
    decoders = nn.ModuleList(nn.Sequential(*[block(a, b) for a, b in pairs]) for pairs in stages)
    return unpools, decoders


def decode(x: torch.Tensor, memory: Memory, unpools: nn.ModuleList, decoders: nn.ModuleList) -> torch.Tensor:
    """Deepest stage first: unpool to the pre-pool size with that stage's indices, then decode."""
    for unpool, block, (indices, size) in zip(unpools, decoders, reversed(memory)):
        x = block(unpool(x, indices, output_size=size))
    return x


class SegNet(nn.Module):
    def __init__(self, num_classes: int = 21, width: float = 1.0) -> None:
        super().__init__()
        self.encoder = VGGBNEncoder(width, ceil_mode=True)
        stages = decoder_widths(width)
        last = stages[-1].pop()  # conv1_1_D is the classifier below, not a CBR block
        self.unpools, self.decoders = unpooling_decoder(stages, conv_bn_relu)
        self.classifier = nn.Conv2d(last[0], num_classes, 3, padding=1)  # SegNet scores with a 3x3 conv
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, memory = self.encoder(x)
        return self.classifier(decode(x, memory, self.unpools, self.decoders))


def init_weights(model: nn.Module) -> None:
    """He init (the reference's ``msra`` filler) for convolutions and deconvolutions, BN at identity."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_segnet(num_classes: int = 21, width: float = 1.0, **kwargs) -> SegNet:
    return SegNet(num_classes, width, **kwargs)
