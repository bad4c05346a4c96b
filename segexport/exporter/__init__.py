"""torch -> ONNX for TensorRT: the MaxUnpool and Resize handling, graph clean-up, metadata,
verification against PyTorch, and the TensorRT op-support lint."""
