"""Triton's own config schema for the deployment tests."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(os.environ.get("SEGEXPORT_TRITON_SCHEMA", ROOT / ".ci" / "cache" / "triton" / "model_config_pb2.py"))


@pytest.fixture(scope="session")
def model_config_pb2():
    """``model_config_pb2`` from the tritonclient wheel (scripts/fetch_test_deps.sh extracts it: the
    package's pins clash with onnx's protobuf). Skips locally without it, fails in CI."""
    if not SCHEMA.is_file():
        why = f"Triton's model_config_pb2.py not at {SCHEMA}: run scripts/fetch_test_deps.sh"
        if os.environ.get("CI"):
            pytest.fail(f"the Triton schema is required in CI: {why}")
        pytest.skip(why)
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", SCHEMA)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def parse_triton(model_config_pb2):
    from google.protobuf import text_format

    def parse(path: Path):
        return text_format.Parse(Path(path).read_text(), model_config_pb2.ModelConfig())

    return parse
