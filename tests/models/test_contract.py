"""User models that break the forward contract (N x 3 x H x W in, N x classes x H x W logits
out) fail with one line naming the fix, before any ONNX is written or any timing starts."""

from __future__ import annotations

import textwrap

import pytest

from tests.conftest import assert_one_line_error

BROKEN_MODELS = textwrap.dedent(
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Base(nn.Module):
        def __init__(self, cin=3, num_classes=4, stride=1):
            super().__init__()
            self.head = nn.Conv2d(cin, num_classes, 1, stride=stride)

    class TorchvisionStyle(Base):
        def forward(self, x):
            return {"out": self.head(x), "aux": self.head(x)}

    class Pair(Base):
        def forward(self, x):
            return self.head(x), self.head(x)

    class Flat(Base):
        def forward(self, x):
            return self.head(x).flatten(2)

    class Labels(Base):
        def forward(self, x):
            return self.head(x).argmax(1, keepdim=True)

    class Plain(Base):
        def forward(self, x):
            return self.head(x)

    class Resized(Base):  # the fix the stride-2 error suggests
        def forward(self, x):
            return F.interpolate(self.head(x), size=x.shape[-2:], mode="bilinear")

    def dict_out():
        return TorchvisionStyle()

    def tuple_out():
        return Pair()

    def flat_out():
        return Flat()

    def int_out():
        return Labels()

    def grayscale():
        return Plain(cin=1)

    def stride2():
        return Plain(stride=2)

    def resized():
        return Resized(stride=2)

    def five_classes():
        return Plain(num_classes=5)

    class LazyImport(Plain):  # MONAI's SwinUNETR imports einops on its first forward
        def forward(self, x):
            import segexport_absent_dependency  # noqa: F401
            return self.head(x)

    def lazy_import():
        return LazyImport()
    """
)

DICT_CASE = ("dict_out", ("returned a dict with keys out, aux", "model(x)['out']"))
CASES = [  # what `segexport onnx` refuses (a dict with "out" it exports: test_dict_output_exports_with_a_note)
    ("tuple_out", ("returned a tuple with entries 0, 1", "one logits tensor", "--output 0")),
    ("flat_out", ("returned 1x4x256", "1 x classes x 16 x 16", "unflattened")),
    ("int_out", ("torch.int64", "--argmax")),
    ("grayscale", ("failed on a 1x3x16x16", "RuntimeError", "N x 3 x H x W")),
    ("stride2", ("returned 1x4x8x8 for a 1x3x16x16 input (1/2 of the input)", "F.interpolate", "--upsample-logits")),
    ("five_classes", ("returned 5 class channels", "pass --num-classes 5")),
    ("lazy_import", ("needs the Python module 'segexport_absent_dependency'", "pip install segexport_absent_dependency")),
]


@pytest.fixture
def broken(tmp_path, monkeypatch):
    (tmp_path / "broken.py").write_text(BROKEN_MODELS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("factory, fragments", CASES, ids=[c[0] for c in CASES])
def test_export_refuses_a_model_that_breaks_the_contract(run_cli, broken, factory, fragments):
    result = run_cli("onnx", "--model", f"broken:{factory}", "--num-classes", "4", "--input-size", "16",
                     "--out", "out.onnx")
    assert_one_line_error(result, f"broken:{factory}", *fragments)
    assert not (broken / "out.onnx").exists()


@pytest.mark.parametrize("factory, fragments", [DICT_CASE, (CASES[0][0], ("returned a tuple", "one logits tensor")),
                                                 CASES[3]], ids=["dict_out", "tuple_out", "grayscale"])
def test_bench_refuses_a_model_that_breaks_the_contract(run_cli, broken, factory, fragments):
    result = run_cli("bench", "--model", f"broken:{factory}", "--num-classes", "4", "--input-size", "16",
                     "--iterations", "2", "--warmup", "0", "--json", "bench.json")
    assert_one_line_error(result, *fragments)
    assert not (broken / "bench.json").exists()


def test_the_suggested_fix_exports(run_cli, broken):
    """The stride-2 model, upsampled as the error says, keeps the contract and verifies."""
    result = run_cli("onnx", "--model", "broken:resized", "--num-classes", "4", "--input-size", "16",
                     "--out", "out.onnx")
    assert result.exit_code == 0, result.stderr
    assert (broken / "out.onnx").is_file()


def test_dict_output_exports_with_a_note(run_cli, broken):
    """A torchvision-style {"out", "aux"} exports its "out" (one note says so, and which were dropped)."""
    from segexport.exporter.metadata import read_record

    result = run_cli("onnx", "--model", "broken:dict_out", "--num-classes", "4", "--input-size", "16",
                     "--out", "out.onnx")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "exporting its ['out'] (dropping aux)" in " ".join(result.stdout.split())
    assert read_record(broken / "out.onnx").output_key == "out"
