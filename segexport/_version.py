"""The package version, on the floor so every layer can stamp artefacts with it without
importing the public API in ``segexport/__init__.py``."""

__version__ = "0.1.0"
