"""Factories for real library networks (random init, nothing downloaded), for the tests and
benchmarks/bench_third_party.py when the library is installed (``pip install -e ".[thirdparty]"``).

MONAI builds its networks from plain arguments, so they need no weights and no network access.
torchvision is not here: its registry wheel is built for a CUDA torch and fails to import beside
the pinned CPU build; transformers installs cleanly but pulls a dozen packages (tokenizers,
huggingface_hub, ...) for one test, so its look-alike in third_party_models.py stands in.
"""

from __future__ import annotations


def real_monai_basicunet(out_channels: int = 2, upsample: str = "nontrainable"):
    """monai.networks.nets.BasicUNet, 2-D, tiny features; ``upsample`` deconv/pixelshuffle/nontrainable."""
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=2, in_channels=3, out_channels=out_channels, features=(4, 4, 8, 8, 16, 4),
                     upsample=upsample)


def real_monai_segresnet(out_channels: int = 3):
    """monai.networks.nets.SegResNet, 2-D, 8 initial filters (GroupNorm of 8), bilinear non-trainable upsampling."""
    from monai.networks.nets import SegResNet

    return SegResNet(spatial_dims=2, in_channels=3, out_channels=out_channels, init_filters=8,
                     blocks_down=(1, 1, 1), blocks_up=(1, 1), upsample_mode="nontrainable")
