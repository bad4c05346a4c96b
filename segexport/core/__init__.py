"""The floor under every step: the one place each shared mechanism lives.

- ``files``: atomic output and output-path checks; ``hashing``: SHA-256 without torch.
- ``onnx_io``: loading an ONNX with one-line errors; ``graph``: questions asked of a graph
  (``has_qdq``, ``needs_strong_typing``, ``module_of``).
- ``metrics`` + ``noise_floor`` + ``comparison``: the segmentation-aware metrics, the
  reference's own float32 floor, and the one reference-vs-candidate judgement that export
  verification and parity share.
- ``sessions``: one way to open an ONNX Runtime session; ``tensorrt``: finding a TensorRT
  flavour and parsing with NVIDIA's real parser; ``precisions``: the one list of precisions.

Architecture (``tests/test_layers.py`` draws it from the imports and enforces it): data flows
one way, core <- models/data <- exporter <- calib <- engines <- checks <- pipeline/deploy <-
api (``segexport/__init__.py``, ``segexport/api.py``) <- cli. ``segexport.errors`` and
``segexport._version`` sit on this floor too. Nothing here imports torch, Typer or any higher
floor, so every step, and a box without PyTorch (a Jetson), can stand on it.
"""
