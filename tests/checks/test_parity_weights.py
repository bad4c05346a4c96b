"""``segexport parity`` without ``--weights``: the checkpoint recorded at export is used when the
file at its recorded path still has the recorded SHA-256, and every mismatch is a one-line error
naming the expected path, the SHA-256 and the fix. The recorded path is data: only ever hashed,
then opened as a checkpoint (torch.load(weights_only=True)), never imported."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import onnx
import pytest

from tests.conftest import assert_one_line_error

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
META = json.loads((FIXTURES / "fixtures.json").read_text())["fixtures"]["unet"]
ON_IMAGES = ("--images", "val/images", "--count", "2")  # in-distribution: the INT8 variant passes on these


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained UNet exported from ``w/unet.pt`` (working directory: the folder), and its INT8 variant."""
    import os

    from segexport import api
    from segexport.data.synth import make_synthetic
    from segexport.exporter.export import ExportOptions, export_onnx

    root = tmp_path_factory.mktemp("recorded")
    (root / "w").mkdir()
    shutil.copy(FIXTURES / META["file"], root / "w" / "unet.pt")
    here = os.getcwd()
    os.chdir(root)
    try:
        export_onnx(ExportOptions(model="unet", out=Path("u.onnx"), weights=Path("w/unet.pt"),
                                  num_classes=META["num_classes"], width=META["width"],
                                  input_size=tuple(META["input_size"]), verify=False, lint=False))
        make_synthetic(root / "val", 2, tuple(META["input_size"]), num_classes=META["num_classes"], seed=1)
        api.calibrate(onnx="u.onnx", precision="int8", data="synthetic", calib_count=8, out="u.int8.onnx",
                      latency=False)
    finally:
        os.chdir(here)
    return root


@pytest.fixture
def folder(trained, tmp_path, monkeypatch):
    """A private copy of the exports and the checkpoint, as the working directory."""
    shutil.copytree(trained, tmp_path / "t")
    monkeypatch.chdir(tmp_path / "t")
    return tmp_path / "t"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_record_names_the_checkpoint_relative_to_where_it_was_exported(folder):
    from segexport.exporter.metadata import read_record

    for name in ("u.onnx", "u.int8.onnx"):
        record = read_record(folder / name)
        assert record.weights_path == "w/unet.pt" and record.weights_sha256 == _sha(folder / "w" / "unet.pt")


@pytest.mark.parametrize("name", ["u.onnx", "u.int8.onnx"])
def test_parity_uses_the_recorded_weights_when_their_sha256_matches(folder, run_cli, name):
    result = run_cli("parity", "--onnx", name, *ON_IMAGES, "--json", "p.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "weights: w/unet.pt (recorded at export, SHA-256 matches)" in result.stdout
    assert "untrained" not in result.stdout
    report = json.loads((folder / "p.json").read_text())
    assert report["weights"] == "w/unet.pt" and report["weights_sha256"] == _sha(folder / "w" / "unet.pt")


def test_a_missing_recorded_checkpoint_names_the_path_the_sha_and_the_fix(folder, run_cli):
    sha = _sha(folder / "w" / "unet.pt")
    (folder / "w" / "unet.pt").rename(folder / "moved.pt")
    result = run_cli("parity", "--onnx", "u.int8.onnx", "--count", "1")
    assert_one_line_error(result, "'w/unet.pt'", sha[:12], "--weights PATH")
    ok = run_cli("parity", "--onnx", "u.int8.onnx", *ON_IMAGES, "--weights", "moved.pt")
    assert ok.exit_code == 0, ok.stdout + ok.stderr
    assert "recorded at export" not in ok.stdout  # the command line's checkpoint, said by the command line


def test_the_recorded_checkpoint_is_found_beside_the_onnx_from_another_folder(folder, run_cli, monkeypatch):
    """Exported in its own folder, checked from the parent: the recorded path resolves beside the
    ONNX, and still only a file with the recorded SHA-256 is taken."""
    (folder / "elsewhere").mkdir()
    monkeypatch.chdir(folder / "elsewhere")
    images = ["--images" if a == "--images" else (str(folder / a) if a.startswith("val") else a) for a in ON_IMAGES]
    result = run_cli("parity", "--onnx", folder / "u.int8.onnx", *images)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "recorded at export, SHA-256 matches" in result.stdout
    (folder / "w" / "unet.pt").write_bytes(b"not the checkpoint")
    assert_one_line_error(run_cli("parity", "--onnx", folder / "u.int8.onnx", "--count", "1"), "now has SHA-256")


def test_a_changed_recorded_checkpoint_is_refused_before_it_is_opened(folder, run_cli):
    """Not a checkpoint any more: the hash mismatch is the error, torch.load never sees the file."""
    sha = _sha(folder / "w" / "unet.pt")
    (folder / "w" / "unet.pt").write_bytes(b"not a checkpoint")
    result = run_cli("parity", "--onnx", "u.onnx", "--count", "1")
    assert_one_line_error(result, "'w/unet.pt'", f"recorded {sha[:12]}", "--weights PATH")
    assert "torch.load" not in result.stderr


def test_other_weights_on_the_command_line_are_refused(folder, run_cli):
    sha = _sha(folder / "w" / "unet.pt")
    result = run_cli("parity", "--onnx", "u.onnx", "--count", "1", "--weights", FIXTURES / "segnet.pt")
    assert_one_line_error(result, "segnet.pt", f"SHA-256 {_sha(FIXTURES / 'segnet.pt')[:12]}", sha[:12],
                          "recorded at export: 'w/unet.pt'", "pass the checkpoint it was exported from")


def test_an_untrained_export_needs_no_weights_as_before(tmp_path, run_cli, monkeypatch):
    from segexport.exporter.export import ExportOptions, export_onnx
    from segexport.exporter.metadata import read_record

    monkeypatch.chdir(tmp_path)
    export_onnx(ExportOptions(model="unet", out=tmp_path / "r.onnx", num_classes=3, width=0.0625, input_size=(32, 32),
                              verify=False, lint=False))
    assert read_record(tmp_path / "r.onnx").weights_path is None
    result = run_cli("parity", "--onnx", tmp_path / "r.onnx", "--count", "1")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "weights:" not in result.stdout and "untrained" in result.stdout


def _rewrite(path: Path, **changes) -> None:
    from segexport.exporter.metadata import read_record, write_record

    model = onnx.load(str(path))
    write_record(model, dataclasses.replace(read_record(model), **changes))
    onnx.save(model, str(path))


def test_a_recorded_path_is_never_imported_nor_a_model_taken_from_the_file(folder, run_cli):
    """An ONNX whose record points its weights at a Python file (with that file's SHA-256) gets
    the file opened as a checkpoint only -- refused by torch.load(weights_only=True) -- and a
    record naming user code as its model is refused without --trust-model-code."""
    evil = folder / "evil.py"
    evil.write_text("from pathlib import Path\nPath('RAN').write_text('x')\n")
    _rewrite(folder / "u.onnx", weights_path="evil.py", weights_sha256=_sha(evil))
    result = run_cli("parity", "--onnx", "u.onnx", "--count", "1")
    assert_one_line_error(result, "torch.load")
    assert not (folder / "RAN").exists()
    _rewrite(folder / "u.onnx", model="evil.py:build", weights_path="w/unet.pt",
             weights_sha256=_sha(folder / "w" / "unet.pt"))
    result = run_cli("parity", "--onnx", "u.onnx", "--count", "1")
    assert_one_line_error(result, "names user code as its model", "--trust-model-code")
    assert not (folder / "RAN").exists()


def test_a_report_never_replaces_the_recorded_checkpoint(folder, run_cli):
    before = _sha(folder / "w" / "unet.pt")
    result = run_cli("parity", "--onnx", "u.onnx", "--count", "1", "--json", "w/unet.pt", "--force")
    assert result.exit_code == 2 and _sha(folder / "w" / "unet.pt") == before, result.stdout + result.stderr
