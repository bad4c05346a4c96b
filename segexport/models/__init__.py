"""The model zoo: paper-true segmentation networks and loading of user models.

One module per family (torchvision style) holds the layers and a builder; every zoo name, with
its paper facts and a lazy reference to its builder, is declared in :mod:`segexport.models.zoo`
and served by :mod:`segexport.models.registry`. Importing this package (or the registry) imports
no torch: a family module is imported when its network is built. :mod:`segexport.models.loading`
resolves a model reference (zoo name or ``package.module:factory``) and loads checkpoints safely.
"""

from segexport.models.registry import build_model, get_spec, list_models
from segexport.models.spec import ModelSpec

__all__ = ["ModelSpec", "build_model", "get_spec", "list_models"]
