"""Parameter and FLOP counts of models; zoo models measured without allocating their weights.

Models are built on PyTorch's ``meta`` device, so listing the zoo costs no memory even
for DeconvNet's 252 M parameters. FLOPs come from ``torch.utils.flop_counter``, which
counts convolutions and matmuls (2 FLOPs per multiply-accumulate) from the real forward
pass at the model's default input size; pooling, BN and activations are not counted,
the usual convention for GFLOPs tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from segexport.errors import UserError
from segexport.models.spec import ModelSpec


@dataclass(frozen=True)
class ModelStats:
    params: int
    gflops: float | None
    input_size: tuple[int, int]


def model_stats(spec: ModelSpec, *, num_classes: int = 21, width: float = 1.0, flops: bool = True,
                model: torch.nn.Module | None = None, model_args: dict | None = None) -> ModelStats:
    """Params and GFLOPs of ``spec`` at its default input size (batch 1).

    Zoo models are built on the meta device. A user model comes built (``model``): its factory
    may not honour a default device, so it is counted on the CPU with real weights.
    """
    device = "cpu" if model is not None else "meta"
    if model is None:
        try:
            with torch.device("meta"):
                model = spec.factory(num_classes=num_classes, width=width, **(model_args or {})).eval()
        except TypeError as exc:
            raise UserError(f"--model-arg not accepted by {spec.name}: {exc}") from exc
    params = sum(p.numel() for p in model.parameters())
    gflops = None
    if flops:
        from torch.utils.flop_counter import FlopCounterMode

        h, w = spec.default_input_size
        x = torch.zeros(1, 3, h, w, device=device)
        counter = FlopCounterMode(display=False)
        try:
            with counter, torch.no_grad():
                model(x)
            gflops = counter.get_total_flops() / 1e9
        except (NotImplementedError, RuntimeError):
            gflops = None  # an op without a meta kernel: report unknown rather than guess
    return ModelStats(params=params, gflops=gflops, input_size=spec.default_input_size)


def user_model_stats(ref: str, *, num_classes: int | None = None, width: float = 1.0, model_args: dict | None = None,
                     flops: bool = True) -> tuple[ModelSpec, ModelStats, int]:
    """A user factory (``module:factory``) built for real, held to the forward contract at its
    default size, and counted: (its spec, its stats, the classes it predicts)."""
    from segexport.models.contract import check_forward
    from segexport.models.loading import load_model, settle_num_classes, spec_of

    loaded = load_model(ref, num_classes=num_classes, width=width, model_args=model_args or {})
    spec = spec_of(loaded)
    channels = check_forward(loaded.name, loaded.model, spec.default_input_size, loaded.num_classes)
    settle_num_classes(loaded, channels)  # a factory without num_classes: its output decides
    spec = spec_of(loaded)
    return spec, model_stats(spec, flops=flops, model=loaded.model), loaded.num_classes
