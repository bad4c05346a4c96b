"""FC-DenseNet 56 / 67 / 103, "The One Hundred Layers Tiramisu" (Jégou, Drozdzal, Vázquez,
Romero, Bengio, CVPR Workshops 2017).

A 3x3 stem of 48 maps; dense blocks of BN-ReLU-conv3x3-dropout layers whose outputs are
concatenated; transition down = BN-ReLU-conv1x1-dropout-maxpool2x2; transition up = a 3x3
stride-2 transposed convolution applied only to the maps the previous dense block created
(not its input: that is what keeps the up path from exploding); up-path blocks pass on only
their new maps, except the last, whose full concatenation feeds the 1x1 classifier.

On odd sizes the transposed convolution overshoots its skip; it is centre-cropped to the
skip, as the authors' Lasagne code does.
"""

from __future__ import annotations

import torch
from torch import nn

from segexport.models.layers import center_crop_to
from segexport.models.registry import ModelSpec, register, scaled

PAPER = ("Jégou, Drozdzal, Vázquez, Romero, Bengio. The One Hundred Layers Tiramisu: Fully Convolutional "
         "DenseNets for Semantic Segmentation. CVPR Workshops 2017 (arXiv:1611.09326)")

# name -> (growth rate, layers per down block, bottleneck layers); the up path mirrors the down path.
CONFIGS = {
    "fcdensenet56": (12, (4, 4, 4, 4, 4), 4),
    "fcdensenet67": (16, (5, 5, 5, 5, 5), 5),
    "fcdensenet103": (16, (4, 5, 7, 10, 12), 15),
}


def _bn_relu_conv(cin: int, cout: int, kernel: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.Dropout2d(dropout),
    )


class DenseBlock(nn.Module):
    """``n`` layers each seeing all previous maps; returns only the ``n * growth`` new maps."""

    def __init__(self, cin: int, growth: int, n: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_bn_relu_conv(cin + i * growth, growth, 3, dropout) for i in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = []
        for layer in self.layers:
            out = layer(x)
            x = torch.cat([x, out], dim=1)
            new.append(out)
        return torch.cat(new, dim=1)


class TransitionDown(nn.Sequential):
    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__(_bn_relu_conv(channels, channels, 1, dropout), nn.MaxPool2d(2, 2))


class FCDenseNet(nn.Module):
    def __init__(self, num_classes: int = 21, width: float = 1.0, growth: int = 16,
                 down: tuple[int, ...] = (4, 5, 7, 10, 12), bottleneck: int = 15, dropout: float = 0.2,
                 stem: int = 48) -> None:
        super().__init__()
        growth = scaled(growth, width)
        c = scaled(stem, width)
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.transitions_down = nn.ModuleList()
        skip_channels = []
        for n in down:
            self.down_blocks.append(DenseBlock(c, growth, n, dropout))
            c += n * growth
            skip_channels.append(c)
            self.transitions_down.append(TransitionDown(c, dropout))
        self.bottleneck = DenseBlock(c, growth, bottleneck, dropout)
        prev_new = bottleneck * growth
        self.transitions_up = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for n, skip_c in zip(reversed(down), reversed(skip_channels)):
            self.transitions_up.append(nn.ConvTranspose2d(prev_new, prev_new, 3, stride=2))
            cin = skip_c + prev_new
            self.up_blocks.append(DenseBlock(cin, growth, n, dropout))
            prev_new = n * growth
        self.classifier = nn.Conv2d(cin + prev_new, num_classes, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for block, td in zip(self.down_blocks, self.transitions_down):
            x = torch.cat([x, block(x)], dim=1)
            skips.append(x)
            x = td(x)
        new = self.bottleneck(x)
        for i, (tu, block) in enumerate(zip(self.transitions_up, self.up_blocks)):
            skip = skips.pop()
            x = torch.cat([skip, center_crop_to(tu(new), skip)], dim=1)
            new = block(x)
            if i == len(self.up_blocks) - 1:
                return self.classifier(torch.cat([x, new], dim=1))
        raise AssertionError("unreachable")


def _register(name: str, paper_params: int) -> None:
    growth, down, bottleneck = CONFIGS[name]
    depth = name.removeprefix("fcdensenet")
    register(ModelSpec(
        name=name,
        family="fcdensenet",
        factory=lambda num_classes=21, width=1.0, **kw: FCDenseNet(num_classes, width, growth, down, bottleneck, **kw),
        paper=PAPER,
        default_input_size=(360, 480),
        output_stride=32,
        min_size=32,
        paper_params=paper_params,
        description=f"FC-DenseNet{depth}: growth {growth}, down blocks {list(down)}, bottleneck {bottleneck}, "
                    "transition up on the new maps only.",
        notes=("default input 360x480: CamVid, where the paper reports its results (it trains on 224x224 crops)",
               "transposed-convolution outputs are centre-cropped to their skip on odd sizes",
               *(("the paper's recipe (growth 12, 4 layers a block, 4 in the bottleneck: 56 layers) gives 1.38M "
                  "parameters, not the 1.5M of its Table 2; the architecture follows the recipe",) if depth == "56" else ())),
    ))


for _name, _params in (("fcdensenet56", 1_500_000), ("fcdensenet67", 3_500_000), ("fcdensenet103", 9_400_000)):
    _register(_name, _params)
