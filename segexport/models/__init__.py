"""The model zoo: paper-true segmentation networks and loading of user models.

One module per family (torchvision style), each registering its factories in
:mod:`segexport.models.registry`. :mod:`segexport.models.loading` resolves a model
reference (zoo name or ``package.module:factory``) and loads checkpoints safely.
"""

from segexport.models.registry import ModelSpec, build_model, get_spec, list_models

__all__ = ["ModelSpec", "build_model", "get_spec", "list_models"]
