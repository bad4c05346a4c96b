"""Dynamic H/W for the constructs of classic real-time segmenters (tests/exporter/edge_models.py):
global pooling by the input's size, strip pooling and coordinate attention (``AdaptiveAvgPool2d((None, 1))``,
``torch.split(y, [h, w])``), SFNet's flow alignment (a grid from ``torch.linspace`` of the size),
``ConvTranspose2d(output_size=...)``, unpooling at odd sizes,
and models that run only at multiples of a stride are right at every size of the profile (checked
against PyTorch at sizes the CLI's verification never sees), linted and built; a construct that
freezes the size is refused at export time with the module named, never shipped static."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import assert_one_line_error, require_tensorrt_rtx

MODELS = Path(__file__).with_name("edge_models.py")

# factory, export size, dynamic flags, sizes checked against PyTorch afterwards, a note the CLI must print
CASES = [
    ("bisenet", "33x47", "hw", [(1, 3, 20, 29), (1, 3, 41, 77), (1, 3, 66, 94)], None),
    ("enet", "33x47", "hw", [(1, 3, 17, 24), (1, 3, 40, 61), (1, 3, 65, 93)], None),
    ("transposed_to_size", "33x47", "batch,hw", [(2, 3, 18, 31), (1, 3, 51, 60), (3, 3, 65, 94)], None),
    ("erfnet", "64x64", "hw", [(1, 3, 36, 44), (1, 3, 100, 76), (1, 3, 128, 32)], "a multiple of 4"),
    # AdaptiveAvgPool2d((None, 1)) / ((1, None)) and torch.split(y, [h, w]): strip pooling, coordinate attention
    ("strip_pool", "33x47", "hw", [(1, 3, 17, 25), (1, 3, 40, 61), (1, 3, 65, 93)], None),
    # torch.tensor([[[[w, h]]]]) and torch.linspace(-1, 1, h) of sizes, then grid_sample: SFNet's flow alignment
    ("flow_align", "33x47", "hw", [(1, 3, 17, 25), (1, 3, 40, 61), (1, 3, 65, 93)], None),
]


@pytest.mark.parametrize("factory, size, dynamic, sizes, note", CASES, ids=[c[0] for c in CASES])
def test_dynamic_export_is_right_at_every_size(run_cli, tmp_path, factory, size, dynamic, sizes, note):
    from segexport.core.sessions import ort_session
    from segexport.models.loading import load_model

    out = tmp_path / f"{factory}.onnx"
    result = run_cli("onnx", "--model", f"{MODELS}:{factory}", "--input-size", size, "--dynamic", dynamic, "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "lint: 0 errors, 0 warnings" in result.stdout
    if note:
        assert note in " ".join(result.stdout.split()), result.stdout
    model = load_model(f"{MODELS}:{factory}").model.eval()
    session = ort_session(out)
    for shape in sizes:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(shape[2]))
        with torch.no_grad():
            ref = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == ref.shape, shape
        assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max()), shape
        assert (got.argmax(1) == ref.argmax(1)).all(), shape
    require_tensorrt_rtx()
    built = run_cli("lint", out, "--build")
    assert built.exit_code == 0 and "engine: built" in built.stdout, built.stdout


@pytest.mark.parametrize("factory", ["bisenet", "enet", "erfnet", "strip_pool", "flow_align"])
def test_static_exports_of_the_same_networks(run_cli, tmp_path, factory):
    out = tmp_path / f"{factory}.onnx"
    result = run_cli("onnx", "--model", f"{MODELS}:{factory}", "--input-size", "64x64", "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "lint: 0 errors, 0 warnings" in result.stdout


def test_a_size_frozen_in_python_is_refused_naming_the_module(run_cli, tmp_path):
    """MobileViT-style ``int(math.ceil(h / p) * p)``: torch.onnx used to retry with the size fixed
    and write a static graph; lint then blamed --dynamic. Now: one line at export, nothing written."""
    out = tmp_path / "p.onnx"
    result = run_cli("onnx", "--model", f"{MODELS}:patch_unfold", "--input-size", "64x64", "--dynamic", "hw",
                     "--out", out)
    assert_one_line_error(result, "--dynamic:", "module 'PatchUnfold'", "edge_models.py:", "math.ceil()")
    assert not out.exists()


def test_a_graph_with_static_input_dims_is_refused_when_dynamic_was_asked():
    import onnx
    from onnx import TensorProto, helper

    from segexport.errors import UserError
    from segexport.exporter.export import check_dynamic_input

    def graph(h):
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, h, "width"])
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, h, "width"])
        return helper.make_model(helper.make_graph([helper.make_node("Identity", ["input"], ["y"])], "g", [inp], [out]))

    check_dynamic_input(graph("height"), {2: "h", 3: "w"})
    with pytest.raises(UserError, match="fixes height to 256"):
        check_dynamic_input(graph(256), {2: "h", 3: "w"})
    assert onnx.checker.check_model(graph(256)) is None


def test_only_symbolic_sizes_are_rewritten():
    """Static exports and constant arguments keep PyTorch's own lowering."""
    import torch.nn.functional as F

    from segexport.exporter.dynamic_sizes import shape_following_sizes

    x = torch.randn(1, 2, 6, 8)
    w = torch.randn(2, 3, 3, 3)
    plain = (F.avg_pool2d(x, (6, 8)), F.avg_pool2d(x, 2), F.max_pool2d(x, (6, 8)),
             F.conv_transpose2d(x, w, None, 2, 1, 1))
    with shape_following_sizes():
        assert F.avg_pool2d is not plain  # swapped ...
        patched = (F.avg_pool2d(x, (6, 8)), F.avg_pool2d(x, 2), F.max_pool2d(x, (6, 8)),
                   F.conv_transpose2d(x, w, None, 2, 1, 1))
    for a, b in zip(plain, patched):
        assert torch.equal(a, b)
    assert F.avg_pool2d(x, 2).shape == (1, 2, 3, 4)  # ... and restored


@pytest.mark.parametrize("dynamic", [[], ["--dynamic", "hw"]], ids=["static", "dynamic"])
def test_an_internal_exporter_error_names_the_module_being_traced(run_cli, tmp_path, dynamic):
    out = tmp_path / "x.onnx"
    result = run_cli("onnx", "--model", f"{MODELS}:fails_while_traced", "--input-size", "32x32", *dynamic, "--out", out)
    assert_one_line_error(result, "internal error of torch's exporter (AssertionError)",
                          "while tracing module 'grid'", "True != False",
                          "export without --dynamic hw" if dynamic else "replace the construct in that module")
    assert not out.exists()


def test_a_solver_failure_after_the_trace_names_the_module_that_fixed_a_size():
    """torch's solver fails after tracing (MONAI SwinUNETR: ``Cannot create Dim with inconsistent
    min=4, max=4``), so the traceback holds no frame of the model: the module whose guard first
    equated a size to a number is named instead of nothing."""
    from segexport.exporter.dynamic_capture import Guard
    from segexport.exporter.export import describe_export_failure

    exc = AssertionError("Cannot create Dim with inconsistent min=4, max=4")
    guard = Guard("Eq((s1//32), 4)", "swinViT.layers1.0.blocks.0", "swin_unetr.py:510")
    line = describe_export_failure(exc, torch.nn.Conv2d(3, 3, 1), dynamic=True, suspect=guard)
    assert "internal error of torch's exporter (AssertionError) after module 'swinViT.layers1.0.blocks.0' " \
           "(swin_unetr.py:510) made a size one value (guard Eq((s1//32), 4))" in line
    assert "export without --dynamic hw" in line and "\n" not in line
    assert "after module" not in describe_export_failure(exc, torch.nn.Conv2d(3, 3, 1), dynamic=True)


def test_a_frozen_size_names_the_module_that_froze_it_not_the_first_check(run_cli, tmp_path):
    """The model first checks H % 32 (a restriction the range keeps: 32, 64, 96, 128), then a window
    stage freezes H with ``int(np.ceil(h / 7))`` (MONAI SwinUNETR's BasicLayer): the refusal names
    the window stage and its line, not the check that came first."""
    out = tmp_path / "c.onnx"
    result = run_cli("onnx", "--model", f"{MODELS}:checked_then_ceiled", "--input-size", "64x64", "--dynamic", "hw",
                     "--hw-range", "32x32:128x128", "--out", out)
    assert_one_line_error(result, "module 'windows' (edge_models.py:", "CeilToInt", "export without --dynamic hw")
    assert "CheckedThenCeiled" not in result.stderr
    assert not out.exists()


def test_a_square_token_grid_is_refused_dynamic_with_its_reason(run_cli, tmp_path):
    """A ViT that folds tokens back with ``int(sqrt(n))`` runs only at H = W: written with ``int()``
    the trace freezes the grid (a guard on H and W together, which torch.export lets pass: refused
    at export time naming the module); written with transformers' ``torch_int`` (HF DPT) the grid
    stays symbolic and is right at every square size, so verification's off-diagonal corner of the
    profile (a box of H and W) is what shows the engine would take sizes the model cannot run."""
    out = tmp_path / "g.onnx"
    frozen = run_cli("onnx", "--model", f"{MODELS}:square_grid", "--input-size", "64x64", "--dynamic", "hw", "--out", out)
    assert_one_line_error(frozen, "module 'SquareGrid' (edge_models.py:", "holds only at some sizes", "TruncToInt",
                          "export without --dynamic hw")
    square = run_cli("onnx", "--model", f"{MODELS}:square_grid", "--model-arg", "cast=torch_int", "--input-size", "64x64",
                     "--dynamic", "hw", "--out", out)
    assert_one_line_error(square, "runs at the square sizes of the profile", "at 1x3x32x64 in module 'SquareGrid'",
                          "takes only H = W",
                          "export without --dynamic hw")
    assert not out.exists()
    static = run_cli("onnx", "--model", f"{MODELS}:square_grid", "--model-arg", "cast=torch_int", "--input-size",
                     "64x64", "--out", out)
    assert static.exit_code == 0 and static.stdout.count("pass") == 3, static.stdout + static.stderr
