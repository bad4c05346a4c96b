"""Factories for real library networks (random init, nothing downloaded), for the tests and
benchmarks/bench_third_party.py when the library is installed (``pip install -e ".[thirdparty]"``).

Every factory builds from plain arguments or a config: no weights, no network access. Only
MONAI is in the ``thirdparty`` extra. torchvision's PyPI wheel is built for a CUDA torch (its C
ops fail to load beside the pinned CPU build, though its models run), and
segmentation_models_pytorch / transformers pull a dozen packages (timm, huggingface_hub,
tokenizers, ...): where a user has them, tests/exporter/test_real_libraries.py and
benchmarks/bench_third_party.py run these too; CI runs the look-alikes of third_party_models.py.
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


def real_tv_lraspp(num_classes: int = 5):
    """torchvision LR-ASPP MobileNetV3-Large: ``{"out"}``, hardsigmoid gates, AdaptiveAvgPool2d(1)."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    return lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)


def real_tv_deeplabv3(num_classes: int = 5):
    """torchvision DeepLabV3 MobileNetV3-Large with its aux head: ``{"out", "aux"}``, ASPP."""
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    return deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=True)


def real_smp(arch: str = "Unet", encoder: str = "resnet18", classes: int = 4):
    """segmentation_models_pytorch ``create_model`` (Unet, FPN, PSPNet, DeepLabV3Plus, UPerNet, Segformer...)."""
    import segmentation_models_pytorch as smp

    return smp.create_model(arch, encoder_name=encoder, encoder_weights=None, classes=classes)


def real_hf_segformer(num_labels: int = 4):
    """transformers SegformerForSemanticSegmentation, a tiny config: ``.logits`` at 1/4 of the input."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    return SegformerForSemanticSegmentation(SegformerConfig(
        num_labels=num_labels, hidden_sizes=[16, 32, 64, 128], decoder_hidden_size=64, depths=[1, 1, 1, 1],
        num_attention_heads=[1, 2, 2, 4]))


def real_hf_upernet(num_labels: int = 4):
    """transformers UperNetForSemanticSegmentation on a tiny ConvNeXt: a PPM of AdaptiveAvgPool2d(1, 2, 3, 6)."""
    from transformers import ConvNextConfig, UperNetConfig, UperNetForSemanticSegmentation

    backbone = ConvNextConfig(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                              out_features=["stage1", "stage2", "stage3", "stage4"])
    return UperNetForSemanticSegmentation(UperNetConfig(backbone_config=backbone, num_labels=num_labels, hidden_size=64,
                                                        auxiliary_channels=32, use_auxiliary_head=False))
