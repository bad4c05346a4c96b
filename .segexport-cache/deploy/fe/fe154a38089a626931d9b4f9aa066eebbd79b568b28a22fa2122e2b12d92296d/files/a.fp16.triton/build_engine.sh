#!/bin/sh
# Build the TensorRT engine ON THE DEVICE THAT RUNS IT (Jetson, or the Triton server's GPU).
# TensorRT engines only load on the GPU architecture and TensorRT version that built them, so
# an engine built elsewhere (or by TensorRT-RTX, which targets only the architectures it lists)
# will not load here. Written by segexport for TensorRT 10 (JetPack 6: TensorRT 10.3).
set -eu
cd "$(dirname "$0")"
TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"
"$TRTEXEC" \
  --onnx=unet/1/model.onnx \
  --saveEngine=unet/1/model.plan \
  --stronglyTyped \
  --timingCacheFile=timing.cache \
  --memPoolSize=workspace:1024M \
  --skipInference

# The same build with segexport (pip install segexport on the device; TensorRT's Python package):
#   segexport engine unet/1/model.onnx --out unet/1/model.plan --backend trt --timing-cache timing.cache --workspace 1024
# Then serve the plan: set platform: "tensorrt_plan" in config.pbtxt and remove model.onnx
# (or run `segexport deploy triton --engine unet/1/model.plan` again into a new folder).
