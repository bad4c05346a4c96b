"""The model zoo: paper-true segmentation networks and loading of user models.

One module per family (torchvision style). Importing a family registers its factories in
:mod:`segexport.models.registry`; this package imports every family, so the registry is
filled by the families and never reaches up to them. :mod:`segexport.models.loading`
resolves a model reference (zoo name or ``package.module:factory``) and loads checkpoints
safely.
"""

from segexport.models import deconvnet, deeplab, dilatednet, fcdensenet, fcn, segnet, unet  # noqa: F401  (register)
from segexport.models.registry import ModelSpec, build_model, get_spec, list_models

__all__ = ["ModelSpec", "build_model", "get_spec", "list_models"]
