"""ONNX-only steps on a box without PyTorch (a Jetson, a Triton build host).

The child process gets a ``sitecustomize`` whose meta-path finder makes ``import torch`` raise
ImportError, as on a machine where torch is not installed; ``segexport lint`` and ``segexport
engine`` must still run end to end on a small ONNX built here with ``onnx.helper``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tensorrt_rtx

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = '''
import importlib.abc, sys

class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: this box has no PyTorch)", name=name)
        return None

sys.meta_path.insert(0, _NoTorch())
'''


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory) -> Path:
    """Conv 3->4 then ReLU at 1x3x16x16, opset 18: small, static, TensorRT-parsable."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("Relu", ["c"], ["logits"], name="relu")],
        "small", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, 16, 16])], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("light") / "small.onnx"
    onnx.save(model, str(path))
    return path


def run_without_torch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    return subprocess.run([sys.executable, "-m", "segexport", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_blocker_blocks(tmp_path):
    """The test can fail: in the blocked process torch really is unimportable."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    done = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "blocked" in done.stderr


def test_lint_runs_without_torch(small_onnx, tmp_path):
    done = run_without_torch(tmp_path, "lint", str(small_onnx), "--parser", "none")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_lint_with_the_real_parser_runs_without_torch(small_onnx, tmp_path):
    require_tensorrt_rtx()
    done = run_without_torch(tmp_path, "lint", str(small_onnx), "--parser", "rtx", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"parser": "TensorRT-RTX' in done.stdout


def test_engine_runs_without_torch(small_onnx, tmp_path):
    require_tensorrt_rtx()
    out = tmp_path / "small.engine"
    done = run_without_torch(tmp_path, "engine", str(small_onnx), "--backend", "rtx", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.stat().st_size > 0 and (tmp_path / "small.engine.json").is_file()


def test_a_step_that_needs_torch_says_so_in_one_line(small_onnx, tmp_path):
    done = run_without_torch(tmp_path, "onnx", "--model", "unet", "--width", "0.0625", "--out", "u.onnx")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "PyTorch" in lines[0] and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("args, fragment", [
    (("onnx", "--model", "unet", "--weights", "missing.pt"), "weights file 'missing.pt' not found"),
    (("onnx", "--model", "missing.py:build"), "model file 'missing.py' not found"),
    (("parity", "--onnx", "missing.onnx"), "ONNX file 'missing.onnx' not found"),
    (("bench", "--onnx", "missing.onnx"), "ONNX file 'missing.onnx' not found"),
    (("predict", "missing.onnx", ".", "--out", "p"), "'missing.onnx' not found"),
])
def test_a_missing_file_is_answered_before_torch_is_imported(tmp_path, args, fragment):
    """First output within a second: the missing file is named, not "needs PyTorch" (which is what
    the blocked import would say had the command got that far)."""
    done = run_without_torch(tmp_path, *args)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2 and len(lines) == 1 and fragment in lines[0], done.stderr
    assert not (tmp_path / "p").exists()


def test_the_zoo_is_known_without_torch():
    """Names, widths and paper facts come from the catalogue; the families (torch) load only to build."""
    code = ("import sys\n"
            "from segexport.models.registry import check_model_request, get_spec, list_models\n"
            "import segexport.models\n"
            "names = [s.name for s in list_models()]\n"
            "spec = get_spec('unet')\n"
            "check_model_request('unet', 21, 0.25)\n"
            "print(len(names), spec.paper_params, spec.min_size, 'MICCAI' in spec.paper, 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    count, params, min_size, paper, torch_loaded = done.stdout.split()
    assert int(count) >= 12 and params == "31000000" and min_size == "16" and paper == "True"
    assert torch_loaded == "False"


def test_building_a_zoo_model_imports_its_family():
    """The lazy builder is the real one: the same network the family module builds."""
    from segexport.models import unet
    from segexport.models.registry import build_model

    model = build_model("unet", num_classes=3, width=0.0625)
    assert type(model) is unet.UNet


@pytest.mark.parametrize("args, fragment", [
    (("onnx", "--model", "unetx", "--out", "u.onnx"), "unknown model 'unetx': did you mean unet"),
    (("onnx", "--model", "unet", "--width", "9", "--out", "u.onnx"), "--width must be in (0, 4], got 9.0"),
    (("onnx", "--model", "unet", "--num-classes", "0"), "--num-classes must be >= 1"),
    (("models", "segnett"), "unknown model 'segnett'"),
    (("models", "--width", "0"), "--width must be in (0, 4]"),
    (("bench", "--model", "deeplab"), "unknown model 'deeplab'"),
    (("bench", "--model", "unet", "--width", "-1"), "--width must be in (0, 4]"),
])
def test_a_bad_name_or_width_is_answered_before_torch_is_imported(tmp_path, args, fragment):
    """The existing one-line error, not "needs PyTorch" (what the blocked import would say had the
    command got that far), and nothing written."""
    done = run_without_torch(tmp_path, *args)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2 and len(lines) == 1 and fragment in lines[0], done.stderr
    assert not (tmp_path / "u.onnx").exists()


def test_parity_refuses_a_bad_model_override_before_torch_is_imported(small_onnx, tmp_path):
    done = run_without_torch(tmp_path, "parity", "--onnx", str(small_onnx), "--model", "unet_")
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "unknown model 'unet_'" in lines[0], done.stderr
