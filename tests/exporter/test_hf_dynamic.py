"""Issue 23: the Hugging Face size constructs that froze ``--dynamic hw`` (BEiT's ``torch_int`` of
the patch grid, MobileViT's ``math.ceil`` unfolding that resizes only off the patch multiple),
reproduced by plain-torch look-alikes (tests/exporter/hf_dynamic_models.py), export dynamic
through ``segexport onnx``, verified by the CLI at the profile's corners, and agree with PyTorch
at further sizes of the range run here with ONNX Runtime (odd patch maps included); DPT's
``torch_int(sqrt(seq_len))`` square grid runs only at H = W and is refused dynamic with that
reason. Runs without transformers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from segexport.exporter.size_casts import symbolic_size_casts
from tests.conftest import assert_one_line_error

MODELS = Path(__file__).with_name("hf_dynamic_models.py")


def _load():
    spec = importlib.util.spec_from_file_location("hf_dynamic_models_t", MODELS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ort_vs_torch(onnx_path: Path, model, sizes) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for h, w in sizes:
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h * 1000 + w))
        with torch.no_grad():
            want = model(x).logits.numpy()
        got = session.run(None, {name: x.numpy()})[0]
        assert got.shape == want.shape, (h, w, got.shape, want.shape)
        assert np.abs(got - want).max() < 1e-4, (h, w, np.abs(got - want).max())


# factory, flags, further sizes checked with ONNX Runtime
CASES = [
    ("hf_beit_like", ["--input-size", "64x64"], [(48, 80), (96, 64), (112, 128), (33, 47)]),
    # MobileViT's stem is /8: 40, 56, 72 make odd maps (the resize path), 64 and 128 even ones
    ("hf_mobilevit_like", ["--input-size", "64x64", "--hw-range", "40x40:136x136"], [(56, 72), (72, 40), (128, 88)]),
]


@pytest.mark.parametrize("factory, flags, sizes", CASES, ids=[c[0] for c in CASES])
def test_hf_size_constructs_export_dynamic_and_right_at_other_sizes(run_cli, tmp_path, factory, flags, sizes):
    weights = tmp_path / "w.pt"
    model = getattr(_load(), factory)().eval()
    torch.save(model.state_dict(), weights)
    out = tmp_path / f"{factory}.onnx"
    result = run_cli("onnx", "--model", f"{MODELS}:{factory}", "--weights", weights, "--dynamic", "hw", *flags,
                     "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "lint: 0 errors, 0 warnings" in result.stdout
    assert "fail" not in result.stdout
    _ort_vs_torch(out, model, sizes)


def test_a_square_grid_is_refused_dynamic_and_exports_static(run_cli, tmp_path):
    """transformers' DPT neck (no patch_height/width) folds tokens back with ``torch_int(sqrt(n))``:
    the symbolic cast keeps the grid right at every square size, but PyTorch itself fails at 32x64,
    and a TensorRT profile is a box of H and W; refused dynamic saying so, exported static."""
    out = tmp_path / "dpt.onnx"
    dynamic = run_cli("onnx", "--model", f"{MODELS}:hf_dpt_like", "--input-size", "64x64", "--dynamic", "hw",
                      "--out", out)
    assert_one_line_error(dynamic, "runs at the square sizes of the profile", "1x3x32x64", "takes only H = W")
    assert not out.exists()
    static = run_cli("onnx", "--model", f"{MODELS}:hf_dpt_like", "--input-size", "64x64", "--out", out)
    assert static.exit_code == 0 and "fail" not in static.stdout, static.stdout + static.stderr


def test_casts_are_swapped_only_while_active():
    """The module's own ``torch_int`` and ``unfolding`` are back after the export (and a
    MobileViTV2-style ``unfolding`` by ``F.unfold`` is not touched)."""
    module = _load()
    model = module.hf_mobilevit_like()
    beit = module.hf_beit_like()
    own_cast, own_unfolding = module.torch_int, model.layer.unfolding.__func__
    with symbolic_size_casts(beit):
        assert module.torch_int is not own_cast
    with symbolic_size_casts(model):
        assert model.layer.unfolding.__func__ is not own_unfolding if hasattr(model.layer.unfolding, "__func__") \
            else True
        assert "unfolding" in vars(model.layer)
    assert module.torch_int is own_cast
    assert "unfolding" not in vars(model.layer) and model.layer.unfolding.__func__ is own_unfolding

    class _V2Like(torch.nn.Module):
        patch_height = patch_width = 2

        def unfolding(self, x):
            return torch.nn.functional.unfold(x, 2, stride=2), x.shape[-2:]

        def folding(self, p, size):
            return p

    v2 = _V2Like()
    with symbolic_size_casts(v2):
        assert "unfolding" not in vars(v2)
