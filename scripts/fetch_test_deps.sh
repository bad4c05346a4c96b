#!/usr/bin/env bash
# Test-only schemas and stubs that cannot live in the runtime environment (called by .ci/run):
#  - NVIDIA's TensorRT 10 type stubs (tensorrt-stubs): installed with --target into a folder for
#    mypy's MYPYPATH, never into the venv, where their stub-only `tensorrt` package would make
#    `import tensorrt` succeed without TensorRT; then two generator slips are fixed (see the script).
#  - Triton's ModelConfig schema (model_config_pb2.py from the tritonclient wheel): extracted alone,
#    because tritonclient's dependency pins clash with onnx's protobuf.
# Both land in .ci/cache/ (git-ignored); tests/engines/test_typecheck.py and tests/deploy read them.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=.ci/cache
TRT_STUBS_VERSION=10.13.0.35.1
TRITONCLIENT_VERSION=2.73.0
mkdir -p "$CACHE"
if [ ! -f "$CACHE/trt-stubs/tensorrt/__init__.pyi" ]; then
  rm -rf "$CACHE/trt-stubs"
  python -m pip install --quiet --no-deps --target "$CACHE/trt-stubs" "tensorrt-stubs==$TRT_STUBS_VERSION"
  python scripts/fix_trt_stubs.py "$CACHE/trt-stubs"
fi
if [ ! -f "$CACHE/triton/model_config_pb2.py" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python -m pip download --quiet --no-deps --dest "$tmp" "tritonclient==$TRITONCLIENT_VERSION"
  mkdir -p "$CACHE/triton"
  python - "$tmp" "$CACHE/triton" <<'PY'
import sys, zipfile, pathlib
wheel = next(pathlib.Path(sys.argv[1]).glob("tritonclient-*.whl"))
with zipfile.ZipFile(wheel) as zf:
    data = zf.read("tritonclient/grpc/model_config_pb2.py")
(pathlib.Path(sys.argv[2]) / "model_config_pb2.py").write_bytes(data)
print(f"extracted model_config_pb2.py from {wheel.name}")
PY
fi
