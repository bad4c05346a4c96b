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


def _norms_at_one(model):
    """Set every normalization layer's scale to 1 and shift to 0, as training leaves them roughly.

    transformers initialises MobileViT's, MobileViTV2's and DPT's norms so that at random
    initialisation their outputs vanish through the depth (exactly 0 for MobileViT: measured),
    and verification would compare zeros; the export's checks refuse that, so the test
    networks are made to respond to their input."""
    import torch

    norms = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, norms) and getattr(module, "weight", None) is not None:
                module.weight.fill_(1.0)
                if module.bias is not None:
                    module.bias.zero_()
    return model


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


def real_smp_dpt(classes: int = 3, img_size: int = 64):
    """segmentation_models_pytorch DPT on a tiny timm ViT (patch 16) built for ``img_size``, with
    ``dynamic_img_size=True``: at any other input size timm resizes its position embedding (bicubic,
    antialiased), which segexport folds into a static export."""
    import segmentation_models_pytorch as smp

    return smp.DPT(encoder_name="tu-vit_tiny_patch16_224", encoder_weights=None, classes=classes,
                   decoder_intermediate_channels=(16, 32, 64, 64), decoder_fusion_channels=16,
                   img_size=img_size, dynamic_img_size=True)


def real_monai_basicunetplusplus(out_channels: int = 2):
    """monai.networks.nets.BasicUNetPlusPlus, 2-D, tiny features: its forward returns a *list* (--output 0)."""
    from monai.networks.nets import BasicUNetPlusPlus

    return BasicUNetPlusPlus(spatial_dims=2, in_channels=3, out_channels=out_channels, features=(4, 4, 8, 8, 16, 4))


def real_monai_unetr(out_channels: int = 2, img_size: int = 64):
    """monai.networks.nets.UNETR, 2-D: a ViT over a fixed patch grid (it runs at ``img_size`` only)."""
    from monai.networks.nets import UNETR

    return UNETR(in_channels=3, out_channels=out_channels, img_size=(img_size, img_size), feature_size=4,
                 hidden_size=32, mlp_dim=64, num_heads=2, spatial_dims=2)


def real_monai_swinunetr(out_channels: int = 2):
    """monai.networks.nets.SwinUNETR, 2-D, tiny: windowed attention with padding to the window."""
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(in_channels=3, out_channels=out_channels, feature_size=12, depths=(1, 1, 1, 1),
                     num_heads=(1, 1, 1, 1), spatial_dims=2)


def real_hf_beit(num_labels: int = 4, image_size: int = 64):
    """transformers BeitForSemanticSegmentation, tiny: relative position bias over the patch grid."""
    from transformers import BeitConfig, BeitForSemanticSegmentation

    return BeitForSemanticSegmentation(BeitConfig(
        image_size=image_size, patch_size=16, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
        intermediate_size=64, out_indices=[1, 2, 3, 4], use_relative_position_bias=True, num_labels=num_labels,
        pool_scales=[1, 2], auxiliary_channels=16, use_auxiliary_head=False))


def real_hf_mobilevit(num_labels: int = 4):
    """transformers MobileViTForSemanticSegmentation (xx-small widths): unfold to 2x2 patches with a ceil of H/2."""
    from transformers import MobileViTConfig, MobileViTForSemanticSegmentation

    return _norms_at_one(MobileViTForSemanticSegmentation(MobileViTConfig(
        num_labels=num_labels, hidden_sizes=[32, 48, 64], neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64],
        aspp_out_channels=32)))


def real_hf_mobilevitv2(num_labels: int = 4):
    """transformers MobileViTV2ForSemanticSegmentation, width 0.5: linear attention that splits q, k, v."""
    from transformers import MobileViTV2Config, MobileViTV2ForSemanticSegmentation

    return _norms_at_one(MobileViTV2ForSemanticSegmentation(MobileViTV2Config(
        num_labels=num_labels, width_multiplier=0.5, aspp_out_channels=32)))


def real_hf_dpt(num_labels: int = 4, image_size: int = 64):
    """transformers DPTForSemanticSegmentation, tiny ViT: position embedding resized to the patch grid."""
    from transformers import DPTConfig, DPTForSemanticSegmentation

    return _norms_at_one(DPTForSemanticSegmentation(DPTConfig(
        image_size=image_size, patch_size=16, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
        intermediate_size=64, neck_hidden_sizes=[16, 32, 64, 64], fusion_hidden_size=32, num_labels=num_labels,
        use_auxiliary_head=False, backbone_out_indices=[0, 1, 2, 3])))
