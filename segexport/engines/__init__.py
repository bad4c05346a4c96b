"""TensorRT 10/11 and TensorRT-RTX engine builders, optimisation profiles, engine metadata."""
