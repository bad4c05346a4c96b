"""The floor under every step: atomic file output and path checks, hashing, ONNX loading.

Nothing here imports torch, Typer or any other segexport layer except ``segexport.errors``,
so every step (and a box without PyTorch, such as a Jetson) can stand on it.
"""
