"""The zoo's catalogue: every model name with its paper facts, declared here and nowhere else.

Each entry names its builder lazily (:class:`~segexport.models.spec.Builder`), so listing the zoo,
checking a ``--model`` name or printing a paper's notes imports no torch; the family module
(``fcn.py``, ``unet.py``, ...) is imported only when a network is built. The family modules
hold the layers; the numbers that describe them from outside (input size, stride, minimum size,
parameter counts) live here, and ``tests/models`` hold each family to them by building it.
"""

from __future__ import annotations

from segexport.models.spec import Builder, ModelSpec

FCN_PAPER = ("Long, Shelhamer, Darrell. Fully Convolutional Networks for Semantic Segmentation. "
             "CVPR 2015 (arXiv:1411.4038)")
DECONVNET_PAPER = ("Noh, Hong, Han. Learning Deconvolution Network for Semantic Segmentation. "
                   "ICCV 2015 (arXiv:1505.04366)")
SEGNET_PAPER = ("Badrinarayanan, Kendall, Cipolla. SegNet: A Deep Convolutional Encoder-Decoder Architecture "
                "for Image Segmentation. TPAMI 2017 (arXiv:1511.00561)")
UNET_PAPER = ("Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation. "
              "MICCAI 2015 (arXiv:1505.04597)")
FCDENSENET_PAPER = ("Jégou, Drozdzal, Vázquez, Romero, Bengio. The One Hundred Layers Tiramisu: Fully Convolutional "
                    "DenseNets for Semantic Segmentation. CVPR Workshops 2017 (arXiv:1611.09326)")
DEEPLAB_PAPER = ("Chen, Papandreou, Kokkinos, Murphy, Yuille. Semantic Image Segmentation with Deep Convolutional "
                 "Nets and Fully Connected CRFs. ICLR 2015 (arXiv:1412.7062)")
DILATEDNET_PAPER = "Yu, Koltun. Multi-Scale Context Aggregation by Dilated Convolutions. ICLR 2016 (arXiv:1511.07122)"

# FC-DenseNet: name -> (growth rate, layers per down block, bottleneck layers); the up path mirrors the down path.
FCDENSENET_CONFIGS: dict[str, tuple[int, tuple[int, ...], int]] = {
    "fcdensenet56": (12, (4, 4, 4, 4, 4), 4),
    "fcdensenet67": (16, (5, 5, 5, 5, 5), 5),
    "fcdensenet103": (16, (4, 5, 7, 10, 12), 15),
}

# DeconvNet's fc6 is an unpadded 7x7 convolution: pool5 must be at least 7x7, ceil(H / 32) >= 7.
DECONVNET_MIN_SIZE = 32 * (7 - 1) + 1  # 193
# U-Net pools four times (floor mode): below 16 px the bottleneck would be empty.
UNET_DEPTH = 4

# Parameters at 21 classes and full width, counted on the meta device (tests/models/test_fcn.py).
# The FCN paper's Table 1 gives 134M for FCN-VGG16; FCN-32s is larger because its fixed x32
# upsampler alone holds 21*21*64*64 = 1.8M weights.
FCN_COUNTS = {32: 136_152_917, 16: 134_815_994, 8: 134_489_759}
# DilatedNet at full width, 21 classes: VGG16 convs 14.71M + fc6 102.78M + fc7 16.78M + classifier 0.09M;
# the context module adds 7 * (21*21*9 + 21) + (21*21 + 21) = 28,392.
DILATEDNET_FRONT_END_PARAMS, DILATEDNET_CONTEXT_PARAMS = 134_346_581, 28_392


def _fcn(name: str, stride: int) -> ModelSpec:
    return ModelSpec(
        name=name,
        family="fcn",
        factory=Builder("segexport.models.fcn", f"build_{name}"),
        paper=FCN_PAPER,
        default_input_size=(500, 500),
        output_stride=stride,
        min_size=1,
        paper_params=None,
        description=f"FCN-{stride}s: VGG16 made fully convolutional; "
        + {32: "a single x32 bilinear-initialised deconvolution.",
           16: "pool4 scores fused before a x16 deconvolution.",
           8: "pool4 and pool3 scores fused before a x8 deconvolution."}[stride],
        notes=(
            "conv1_1 pads by 100 and the scores are cropped back with the Caffe offsets, so every "
            "size >= 1 works (min_size 1; size 0 is no image)",
            f"{FCN_COUNTS[stride]:,} parameters at 21 classes (ARCHITECTURES.md has no figure; the FCN "
            "paper's Table 1 gives 134M for FCN-VGG16)",
            "default input 500x500: PASCAL VOC images are at most 500 px a side and the reference trains on whole images",
            "the final upsampler is fixed bilinear (requires_grad=False), as in the paper; "
            "FCN-8s at-once's 0.01/0.0001 skip scaling is omitted",
        ),
    )


DECONVNET = ModelSpec(
    name="deconvnet",
    family="deconvnet",
    factory=Builder("segexport.models.deconvnet", "build_deconvnet"),
    paper=DECONVNET_PAPER,
    default_input_size=(224, 224),
    output_stride=32,
    min_size=DECONVNET_MIN_SIZE,
    paper_params=252_000_000,
    description="VGG16-BN encoder with max-pool indices, fc6/fc7 as convolutions, and a mirrored decoder of "
                "MaxUnpool + 3x3 deconvolution + BN + ReLU.",
    notes=("default input 224x224: the paper trains on 250x250 images randomly cropped to 224x224",
           f"fc6 is an unpadded 7x7 convolution: pool5 must be at least 7x7, so inputs of at least "
           f"{DECONVNET_MIN_SIZE} px",
           "251,805,653 parameters at 21 classes (paper: 252M)"),
)

SEGNET = ModelSpec(
    name="segnet",
    family="segnet",
    factory=Builder("segexport.models.segnet", "build_segnet"),
    paper=SEGNET_PAPER,
    default_input_size=(360, 480),
    output_stride=32,
    min_size=1,
    paper_params=29_500_000,
    description="VGG16-BN encoder without FC layers; the decoder unpools with the encoder's max indices, "
                "then conv+BN+ReLU; a 3x3 conv scores the classes.",
    notes=("default input 360x480 is CamVid's resolution, the paper's main benchmark",
           "ceil-mode pools as in the Caffe reference (pool4 of 360x480 has 23 rows), so any size >= 1 works",
           "29,455,125 parameters at 21 classes (paper: 29.5M)"),
)

UNET = ModelSpec(
    name="unet",
    family="unet",
    factory=Builder("segexport.models.unet", "build_unet"),
    paper=UNET_PAPER,
    default_input_size=(512, 512),
    output_stride=2**UNET_DEPTH,
    min_size=2**UNET_DEPTH,
    paper_params=31_000_000,
    description="4 down / 4 up stages (64..1024 channels), 2x2 up-convolutions, concatenated skips.",
    notes=("'same'-padded 3x3 convolutions instead of the paper's unpadded ones (overlap-tile), "
           "so the output matches the input; odd sizes zero-pad the up-convolution to its skip",
           "ReLU after each up-convolution and Dropout(0.5) at the end of the contracting path, "
           "as in the authors' released Caffe model",
           "default input 512x512: the size of the ISBI 2012 EM images the paper segments",
           "model arg batch_norm=true adds BatchNorm after every convolution (not in the paper)"),
)


def _fcdensenet(name: str, paper_params: int) -> ModelSpec:
    growth, down, bottleneck = FCDENSENET_CONFIGS[name]
    depth = name.removeprefix("fcdensenet")
    return ModelSpec(
        name=name,
        family="fcdensenet",
        factory=Builder("segexport.models.fcdensenet", f"build_{name}"),
        paper=FCDENSENET_PAPER,
        default_input_size=(360, 480),
        output_stride=2 ** len(down),
        min_size=2 ** len(down),  # five floor-mode pools: 31 px leaves an empty bottleneck
        paper_params=paper_params,
        description=f"FC-DenseNet{depth}: growth {growth}, down blocks {list(down)}, bottleneck {bottleneck}, "
                    "transition up on the new maps only.",
        notes=("default input 360x480: the full CamVid frames the paper reports on (and fine-tunes on "
               "after training on 224x224 crops)",
               "3x3 stride-2 transposed convolutions give 2h+1; centre-cropped to the skip, as the authors' "
               "Lasagne code does",
               "BatchNorm eps 1e-4 and element-wise dropout 0.2, as the authors' Lasagne code",
               "parameter counts exclude BatchNorm running statistics (Lasagne's count includes them: "
               "+0.10M for 103, +0.04M for 67)",
               *(("the paper's recipe (growth 12, 4 layers a block, 4 in the bottleneck: 56 layers) gives 1.38M "
                  "parameters, not the 1.5M of its Table 2; the architecture follows the recipe",)
                 if depth == "56" else ())),
    )


DEEPLABV1 = ModelSpec(
    name="deeplabv1",
    family="deeplab",
    factory=Builder("segexport.models.deeplab", "build_deeplabv1"),
    paper=DEEPLAB_PAPER,
    default_input_size=(321, 321),
    output_stride=8,
    min_size=1,  # padded ceil-mode pools never reach zero: 1 -> 1
    paper_params=20_500_000,
    description="DeepLab-LargeFOV: VGG16, stride-1 pool4/pool5, dilated conv5 (2) and fc6 (12, 1024 channels), "
                "output stride 8, bilinear upsampling to the input size.",
    notes=("default input 321x321: the paper's VOC training crops",
           "pool1-3 round up like Caffe's (ceil_mode=True): floor(H/2)+1, 321 -> 161 -> 81 -> 41",
           "bilinear upsampling with align_corners=True, as DeepLab's Caffe Interp layer",
           "the dense CRF is post-processing and not part of the exported network"),
)


def _dilatednet(name: str, context: bool) -> ModelSpec:
    return ModelSpec(
        name=name,
        family="dilatednet",
        factory=Builder("segexport.models.dilatednet", f"build_{name.replace('-', '_')}"),
        paper=DILATEDNET_PAPER,
        default_input_size=(500, 500),
        output_stride=8,
        min_size=1,  # ceil-mode pools: 1 -> 1
        paper_params=None,
        description="VGG16 front-end without pool4/pool5, dilated conv5 (2) and fc6 (7x7, 4), x8 bilinear upsampling"
                    + ("; plus the basic context module (dilations 1,1,2,4,8,16,1, identity init)." if context else "."),
        notes=("'same'-padded convolutions instead of the paper's unpadded network on a reflection-padded input",
               "x8 upsampling is a bilinear resize (align_corners=False) in place of the released model's fixed "
               "bilinear deconvolution: identical away from the 4 px border",
               f"the paper gives no parameter count; this implementation has "
               f"{(DILATEDNET_FRONT_END_PARAMS + DILATEDNET_CONTEXT_PARAMS * context) / 1e6:.2f}M at 21 classes",
               *(("context module identity-initialised (w[c,c,centre]=1), so untrained it passes the "
                  "front-end's scores through",) if context else ())),
    )


# Listing order: the papers' chronology of ideas, as ARCHITECTURES.md presents them.
ZOO: tuple[ModelSpec, ...] = (
    _fcn("fcn32s", 32), _fcn("fcn16s", 16), _fcn("fcn8s", 8),
    DECONVNET,
    SEGNET,
    UNET,
    _fcdensenet("fcdensenet56", 1_500_000), _fcdensenet("fcdensenet67", 3_500_000),
    _fcdensenet("fcdensenet103", 9_400_000),
    DEEPLABV1,
    _dilatednet("dilatednet", False), _dilatednet("dilatednet-context", True),
)
