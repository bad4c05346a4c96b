"""The TensorRT 10 code that cannot run here (no GPU, no full TensorRT) is type-checked against
NVIDIA's published TensorRT 10 stubs (tensorrt-stubs 10.13), so a misspelt attribute or a wrong
callback signature fails CI instead of a user's Jetson build.

The stubs and mypy come from scripts/fetch_test_deps.sh and the [test] extra (both in .ci/run);
locally the test skips with how to get them, in CI (CI set) their absence is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUBS = Path(os.environ.get("SEGEXPORT_TRT_STUBS", ROOT / ".ci" / "cache" / "trt-stubs"))


def _require_tools() -> None:
    missing = []
    if not (STUBS / "tensorrt" / "__init__.pyi").is_file():
        missing.append(f"TensorRT stubs in {STUBS}")
    try:
        import mypy  # noqa: F401
    except ImportError:
        missing.append("mypy")
    if missing:
        why = f"{' and '.join(missing)} missing: run scripts/fetch_test_deps.sh and pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(f"type-checking TensorRT code is required in CI: {why}")
        pytest.skip(why)


def tensorrt_modules() -> list[Path]:
    """Every module that talks to TensorRT: the engines package and whichever calib/checks modules
    import it (found, not listed, so a renamed module stays checked)."""
    pkg = ROOT / "segexport"
    found = sorted((pkg / "engines").rglob("*.py"))
    for sub in ("core", "calib", "checks", "deploy"):
        found += [p for p in sorted((pkg / sub).rglob("*.py"))
                  if "import tensorrt" in p.read_text() or "tensorrt." in p.read_text()]
    return found


def _mypy(*targets: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MYPYPATH": str(STUBS)}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--no-error-summary",
         "--cache-dir", str(cache), "--warn-unused-ignores", *map(str, targets)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mypy-cache")


def test_tensorrt_modules_typecheck_against_tensorrt10_stubs(mypy_cache):
    _require_tools()
    modules = tensorrt_modules()
    names = {f"{p.parent.name}/{p.name}" for p in modules}
    assert {"engines/builder.py", "core/tensorrt.py"} <= names and any(n.startswith("calib/") for n in names), names
    assert "deploy/selfcheck.py" in names, names  # the bundle's on-device runner (TensorRT 10 tensor API)
    result = _mypy(*modules, cache=mypy_cache)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_checker_sees_tensorrt_types(mypy_cache, tmp_path):
    """Negative control: a misspelt builder flag and a wrong calibrator callback are caught, so the
    check above passing means something (and the stubs are really on the path)."""
    _require_tools()
    bad = tmp_path / "bad_trt.py"
    bad.write_text(
        "from __future__ import annotations\n"
        "import tensorrt as trt\n\n"
        "def build(config: trt.IBuilderConfig) -> None:\n"
        "    config.set_flag(trt.BuilderFlag.FP61)\n\n"
        "class Calib(trt.IInt8EntropyCalibrator2):\n"
        "    def get_batch(self, names: list[str]) -> str:\n"
        "        return ''\n"
    )
    result = _mypy(bad, cache=mypy_cache)
    assert result.returncode != 0
    assert "FP61" in result.stdout, result.stdout
    assert "get_batch" in result.stdout, result.stdout


def test_the_tensorrt8_bindings_path_is_typed_by_its_own_protocol(mypy_cache, tmp_path):
    """TensorRT 10 removed the bindings API (get_binding_index, binding shapes), so NVIDIA's 10.x stubs
    reject it: the self-check's TensorRT 8.5/8.6 path goes through ``BindingsEngine``/``BindingsContext``
    (written from the 8.6 API reference), and a misspelt call on those is caught too."""
    _require_tools()
    bad = tmp_path / "bad_bindings.py"
    bad.write_text(
        "from __future__ import annotations\n"
        "from typing import cast\n"
        "import tensorrt as trt\n"
        "from segexport.deploy.selfcheck import BindingsEngine\n\n"
        "def direct(engine: trt.ICudaEngine) -> int:\n"
        "    return engine.get_binding_index('input')\n\n"
        "def through_protocol(engine: trt.ICudaEngine) -> int:\n"
        "    e = cast(BindingsEngine, engine)\n"
        "    return e.get_binding_index('input') + e.get_bindng_index('input')\n"
    )
    result = _mypy(bad, cache=mypy_cache)
    assert result.returncode != 0
    assert '"ICudaEngine" has no attribute "get_binding_index"' in result.stdout, result.stdout
    assert "get_bindng_index" in result.stdout and result.stdout.count("error:") == 2, result.stdout
