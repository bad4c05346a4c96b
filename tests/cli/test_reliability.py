"""Hostile files, interruptions, full disks and odd terminals (issue 12).

The security model under test: the command line is trusted, every file is data. Each test
names the hostile case it plays; real signals go to a real ``python -m segexport`` process.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.conftest import TINY_WIDTH, assert_one_line_error

SIZE, CLASSES = 32, 4
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from segexport.exporter.export import ExportOptions, export_onnx

    out = tmp_path_factory.mktemp("rel") / "u.onnx"
    return export_onnx(ExportOptions(model="unet", out=out, width=TINY_WIDTH, input_size=(SIZE, SIZE),
                                     num_classes=CLASSES, verify=False, lint=False)).path


def _with_metadata(src: Path, dst: Path, **values: str) -> Path:
    """A copy of ``src`` with segexport metadata keys set to raw (possibly non-JSON) strings."""
    model = onnx.load(str(src))
    for prop in model.metadata_props:
        key = prop.key.removeprefix("segexport.")
        if key in values:
            prop.value = values[key]
    onnx.save(model, str(dst))
    return dst


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


# --- security: no code runs unless the command line named it ------------------------------------


@pytest.mark.parametrize("command", ["parity", "bench"])
def test_metadata_naming_code_is_refused_and_the_code_never_runs(tiny, run_cli, tmp_path, monkeypatch, command):
    marker = tmp_path / "PWNED"
    payload = f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\ndef make(**kw):\n    raise SystemExit(9)\n"
    (tmp_path / "helper.py").write_text(payload)
    monkeypatch.chdir(tmp_path)  # the current folder importable, as `python -m` would make it
    for ref in ("helper:make", f"{tmp_path / 'helper.py'}:make"):
        bad = _with_metadata(tiny, tmp_path / "evil.onnx", model=json.dumps(ref))
        result = run_cli(command, "--onnx", bad, *(["--backends", "torch"] if command == "bench" else []))
        assert_one_line_error(result, "runs no code named in a file", "--model", "--trust-model-code")
        assert not marker.exists()
    # the explicit opt-in is the user's word on the command line: then, and only then, it runs
    result = run_cli(command, "--onnx", bad, "--trust-model-code", *(["--backends", "torch"] if command == "bench" else []))
    assert result.exit_code != 0 and marker.exists()


def test_user_spec_values_that_are_no_numbers_are_refused(run_cli, tmp_path):
    (tmp_path / "net.py").write_text(
        "import torch\nclass M(torch.nn.Conv2d):\n    segexport_spec = {'mean': (float('nan'), 0, 0)}\n"
        "def make(num_classes=2):\n    return M(3, num_classes, 1)\n")
    result = run_cli("onnx", "--model", f"{tmp_path / 'net.py'}:make", "--out", tmp_path / "n.onnx")
    assert_one_line_error(result, "mean", "finite numbers")
    assert not (tmp_path / "n.onnx").exists()


@pytest.mark.parametrize("key,value,fragment", [
    ("preprocess", '{"mean": [NaN, 0, 0], "std": [1, 1, 1], "input_size": [32, 32]}', "NaN"),
    ("preprocess", '{"mean": [0, 0, 0], "std": [Infinity, 1, 1], "input_size": [32, 32]}', "Infinity"),
    ("preprocess", '{"mean": [0, 0, 0], "std": [1, 1, 1], "input_size": [100000000, 32]}', "input_size"),
    ("preprocess", '{"mean": [0, 0, 0], "std": [0, 1, 1], "input_size": [32, 32]}', "std"),
    ("preprocess", '{"mean": [0, 0, 0], "std": [1, 1, 1], "input_size": [16384, 16384]}', "the graph's height is 32"),
    ("num_classes", '"four"', "num_classes"),
    ("batch", "0", "batch"),
    ("class_names", json.dumps(["x" * 100_000] * 20), "characters long"),
    # a newline would start new keys in an nvinfer config (custom-lib-path loads code) and shift labels.txt
    ("class_names", json.dumps(["bg", "road\n[property]\ncustom-lib-path=/tmp/x.so", "c", "d"]), "printable line"),
    ("class_names", json.dumps(["bg", "", "c", "d"]), "printable line"),
    ("output_name", json.dumps("logits;evil"), "deployment configs give a meaning"),
])
def test_hostile_metadata_is_refused_at_the_first_reader(tiny, run_cli, tmp_path, key, value, fragment):
    bad = _with_metadata(tiny, tmp_path / "h.onnx", **{key: value})
    for args in (("parity", "--onnx", bad), ("bench", "--onnx", bad, "--backends", "ort-cpu"),
                 ("calibrate", bad)):
        assert_one_line_error(run_cli(*args), "metadata is damaged", fragment)


@pytest.mark.parametrize("target", ["deepstream", "triton"])
def test_deploy_never_writes_a_config_line_a_file_smuggled_in(tiny, run_cli, tmp_path, target):
    bad = _with_metadata(tiny, tmp_path / "h.onnx",
                         class_names=json.dumps(["bg", "x\ncustom-lib-path=/tmp/evil.so", "c", "d"]))
    assert_one_line_error(run_cli("deploy", target, bad, "--out", tmp_path / "bundle"), "metadata is damaged",
                          "printable line")
    assert not (tmp_path / "bundle").exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]


def _external_copy(tiny: Path, folder: Path) -> Path:
    folder.mkdir()
    model = onnx.load(str(tiny))
    path = folder / "x.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="x.data",
              size_threshold=0)
    return path


def test_external_data_outside_the_model_folder_is_refused_by_every_command(tiny, run_cli, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0\n" * 1000)
    path = _external_copy(tiny, tmp_path / "m")
    assert run_cli("lint", path, "--parser", "none").exit_code == 0  # contained: fine
    (tmp_path / "m" / "x.data").unlink()
    (tmp_path / "m" / "x.data").symlink_to(secret)  # the symlink attack: a file that points away
    commands = [("lint", path), ("engine", path, "--out", tmp_path / "e.engine"), ("parity", "--onnx", path),
                ("bench", "--onnx", path, "--backends", "ort-cpu"), ("calibrate", path)]
    for args in commands:
        assert_one_line_error(run_cli(*args), "outside the model's folder")
    model = onnx.load(str(path), load_external_data=False)  # and a location that climbs out
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../secret.txt"
    onnx.save(model, str(path))
    assert_one_line_error(run_cli("engine", path, "--out", tmp_path / "e.engine"), "outside the model's folder")
    assert not (tmp_path / "e.engine").exists()


# --- never destroy a good artefact -------------------------------------------------------------


def test_no_report_may_overwrite_what_the_command_reads(tiny, run_cli, tmp_path):
    before = _sha(tiny)
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"results": [{"backend": "ort-cpu", "batch": 1, "p50_ms": 1.0}]}))
    cases = [("parity", "--onnx", tiny, "--json", tiny), ("parity", "--onnx", tiny, "--junit", tiny),
             ("parity", "--onnx", tiny, "--markdown", tiny),
             ("bench", "--onnx", tiny, "--backends", "ort-cpu", "--json", tiny),
             ("engine", tiny, "--out", tmp_path / "e.engine", "--timing-cache", tiny)]
    for args in cases:
        result = run_cli(*args)
        assert result.exit_code == 2 and "Traceback" not in result.stderr, result.stderr
    link = tmp_path / "alias.onnx"
    link.symlink_to(tiny)
    assert_one_line_error(run_cli("parity", "--onnx", link, "--json", tiny), "is the input")
    assert _sha(tiny) == before


def test_parity_writes_every_report_or_none(tiny, run_cli, tmp_path, monkeypatch):
    """A JUnit that cannot be written (disk full) must not leave a JSON report saying "pass"."""
    from segexport.checks import reports

    def full(report, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(reports, "write_junit", full)
    result = run_cli("parity", "--onnx", tiny, "--count", "1", "--json", tmp_path / "p.json", "--junit",
                     tmp_path / "p.xml")
    assert_one_line_error(result, "no space left", "p.xml")
    assert sorted(os.listdir(tmp_path)) == []


def test_calibrate_interrupted_while_measuring_keeps_the_previous_outputs(tiny, run_cli, tmp_path, monkeypatch):
    from segexport.calib import pipeline

    out, cache = tmp_path / "u.int8.onnx", tmp_path / "u.cache"
    previous = {p: f"previous good {p.name}" for p in (out, cache, Path(f"{out}.json"), Path(f"{cache}.json"))}
    for p, text in previous.items():
        p.write_text(text)

    def ctrl_c(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_report", ctrl_c)  # Ctrl-C in the measuring step, after everything is staged
    result = run_cli("calibrate", tiny, "--precision", "int8", "--calib-count", "2", "--out", out, "--trt-cache", cache, "--force")
    assert result.exit_code == 130 and result.stderr.strip() == "interrupted", result.stderr
    assert {p: p.read_text() for p in previous} == previous
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in previous)


def test_calibrate_reads_its_source_once(tiny, run_cli, tmp_path, monkeypatch):
    """The source replaced mid-run: the provenance names the bytes that were calibrated."""
    import shutil

    from segexport.calib import data as calib_data

    src = tmp_path / "u.onnx"
    shutil.copy(tiny, src)
    original = _sha(src)
    real = calib_data.load_calibration_data

    def swap_then_load(*args, **kwargs):
        src.write_bytes(b"replaced by another job")
        return real(*args, **kwargs)

    monkeypatch.setattr(calib_data, "load_calibration_data", swap_then_load)
    result = run_cli("calibrate", src, "--precision", "int8", "--calib-count", "2", "--out", tmp_path / "q.onnx")
    assert result.exit_code == 0, result.stderr
    prov = json.loads((tmp_path / "q.onnx.json").read_text())
    assert prov["source_onnx_sha256"] == original


def test_data_synth_over_an_existing_set_in_the_current_folder(run_cli, tmp_path, monkeypatch):
    from segexport.data import synth

    monkeypatch.chdir(tmp_path)
    assert run_cli("data", "synth", "--out", ".", "--count", "3", "--num-classes", "3", "--size", "16").exit_code == 0
    old = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    real = synth._write_set

    def fails_halfway(out, *args):
        real(out, *args)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(synth, "_write_set", fails_halfway)
    result = run_cli("data", "synth", "--out", ".", "--count", "2", "--num-classes", "3", "--size", "16", "--seed", "1",
                     "--force")
    assert_one_line_error(result, "no space left")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == old  # the old set, whole
    monkeypatch.setattr(synth, "_write_set", real)
    result = run_cli("data", "synth", "--out", ".", "--count", "2", "--num-classes", "3", "--size", "16", "--seed", "1",
                     "--force")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["00000.png", "00001.png"]
    assert json.loads((tmp_path / "manifest.json").read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --- interruptions: real signals to a real process --------------------------------------------


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_run_removes_every_temp_and_exits_as_the_shell_expects(tmp_path, sig, code):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    from segexport.core.files import _host_tag

    stale = tmp_path / f".set.segexport-{int(dead.stdout)}h{_host_tag()}-old"  # left by an earlier, SIGKILLed run
    stale.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "segexport", "data", "synth", "--out", str(tmp_path / "set"),
                             "--count", "20000", "--size", "64", "--num-classes", "3"],
                            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".set.segexport-") and p != stale for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.3)  # some PNGs written into the staging folder
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip() == "interrupted" and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no staging folder, no partial set, and the stale one swept


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_pipeline_stops_the_run_instead_of_recording_a_step_error(tmp_path, sig, code):
    """A cancelled CI job (SIGTERM) during a pipeline step must stop the run, not become that
    step's "error" verdict while the run goes on to the next step and writes a manifest."""
    (tmp_path / "segexport.toml").write_text(
        '[[models]]\nname = "u"\nmodel = "unet"\nwidth = 0.0625\nnum_classes = 3\ninput_size = "32x32"\n'
        'parity_count = 1\nbench_backends = ["torch", "ort-cpu"]\nbench_iterations = 1000000\n'
        'bench_warmup = 0\nbench_trials = 2\n')
    proc = subprocess.Popen([sys.executable, "-m", "segexport", "pipeline", "run", "segexport.toml", "--out", "out",
                             "--cache-dir", "cache"], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stdout:  # one line a finished step: bench (a million iterations) comes after parity
        seen.append(line)
        if " parity: " in line:
            break
    assert any(" parity: " in line for line in seen), (seen, proc.communicate())
    time.sleep(1.0)  # inside bench's timing loop
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, (out, err)
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err, err
    assert " bench: " not in out  # no step verdict recorded for the interrupted step
    assert not (tmp_path / "out" / "manifest.json").exists()  # no report claiming a finished run
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".") or "segexport-" in p.name
                 or p.name.endswith((".tmp", ".partial"))]
    assert leftovers == []


def test_ctrl_c_inside_a_tensorrt_logger_callback_is_not_swallowed():
    """pybind11 swallows a KeyboardInterrupt raised inside the logger callback; the callback
    records it and the parse/build call site re-raises it."""
    from types import SimpleNamespace

    from segexport.core import interrupts
    from segexport.engines.runtime import collecting_logger

    class ILogger:
        Severity = SimpleNamespace(WARNING=2)

        def __init__(self):
            pass

    class Interrupting(list):
        def append(self, _item):
            raise KeyboardInterrupt

    logger = collecting_logger(SimpleNamespace(ILogger=ILogger))
    logger.messages = Interrupting()
    logger.log(1, "a warning while Ctrl-C arrives")  # returns: that is what pybind11 would see
    with pytest.raises(KeyboardInterrupt):
        interrupts.raise_if_interrupted()
    interrupts.raise_if_interrupted()  # raised once, then cleared


def test_an_interrupt_inside_a_command_is_exit_130_and_one_line(tiny, run_cli, tmp_path, monkeypatch):
    from segexport.exporter import lint

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(lint, "lint_model", interrupted)
    result = run_cli("lint", tiny, "--build")
    assert result.exit_code == 130 and result.stderr.strip() == "interrupted" and "no findings" not in result.stdout


# --- bad inputs: one line, exit 2, quickly -----------------------------------------------------


def test_a_fifo_as_weights_or_calibration_data_is_refused_not_read(tiny, run_cli, tmp_path):
    fifo = tmp_path / "w.pt"
    os.mkfifo(fifo)
    assert_one_line_error(run_cli("onnx", "--model", "unet", "--weights", fifo, "--out", tmp_path / "o.onnx"),
                          "not a regular file")
    npy = tmp_path / "c.npy"
    os.mkfifo(npy)
    assert_one_line_error(run_cli("calibrate", tiny, "--precision", "int8", "--data", npy), "not a regular file")
    png = tmp_path / "imgs"
    png.mkdir()
    os.mkfifo(png / "a.png")
    assert_one_line_error(run_cli("parity", "--onnx", tiny, "--images", png), "no PNG/JPEG images")


@pytest.mark.parametrize("args,fragment", [
    (("onnx", "--model", "unet", "--num-classes", "100000000"), "--num-classes 100000000 is too many"),
    (("onnx", "--model", "unet", "--input-size", "100000"), "out of range"),
    (("data", "synth", "--out", "s", "--count", "1000000000"), "--count"),
    (("data", "synth", "--out", "s", "--size", "100000"), "out of range"),
])
def test_sizes_no_machine_can_hold_are_refused_before_work(run_cli, tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    assert_one_line_error(run_cli(*args), fragment)
    assert time.monotonic() - started < 20  # refused up front, not after minutes of allocation
    assert list(tmp_path.iterdir()) == []


def test_parity_count_and_save_diff_are_checked_up_front(tiny, run_cli, tmp_path, monkeypatch):
    assert_one_line_error(run_cli("parity", "--onnx", tiny, "--count", "1000000000"), "--count")
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == ro and mode & os.W_OK else real_access(p, mode))
    assert_one_line_error(run_cli("parity", "--onnx", tiny, "--save-diff", ro), "not writable")
    assert_one_line_error(run_cli("parity", "--onnx", tiny, "--save-diff", tmp_path / "no" / "d"), "does not exist")


def test_a_decompression_bomb_is_one_line(tiny, run_cli, tmp_path, monkeypatch):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (100, 100)).save(images / "a.png")
    for limit in (2000, 6000):  # over twice the limit (an error in Pillow), and over it (only a warning)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        assert_one_line_error(run_cli("parity", "--onnx", tiny, "--images", images), "decompression-bomb")


def test_export_refuses_a_bad_out_before_loading_the_model(run_cli, tmp_path, monkeypatch):
    from segexport.models import loading

    def never(*_a, **_k):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(loading, "load_model", never)
    assert_one_line_error(run_cli("onnx", "--model", "unet", "--out", tmp_path / "no" / "u.onnx"), "does not exist")
    weights = tmp_path / "w.onnx"
    weights.write_text("x")
    assert_one_line_error(run_cli("onnx", "--model", "unet", "--weights", weights, "--out", weights), "is the input")


def test_a_model_whose_own_output_is_nan_is_blamed_not_the_export(tiny, run_cli, tmp_path):
    (tmp_path / "nanny.py").write_text(
        "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
        f"        return torch.full((x.shape[0], {CLASSES}, *x.shape[2:]), float('nan'))\n"
        "def make(num_classes=4):\n    return M()\n")
    result = run_cli("parity", "--onnx", tiny, "--model", f"{tmp_path / 'nanny.py'}:make", "--count", "1")
    assert_one_line_error(result, "PyTorch model itself outputs NaN/inf")


def test_damaged_sidecars_are_one_line(tiny, run_cli, tmp_path):
    engine = tmp_path / "u.engine"
    engine.write_bytes(b"not really an engine")
    for text in ("{truncated", '{"backend": 7, "tensorrt_version": [], "precision": null}', "[]"):
        Path(f"{engine}.json").write_text(text)
        assert_one_line_error(run_cli("parity", "--onnx", tiny, "--engine", engine), "damaged")
    cache = tmp_path / "u.cache"
    cache.write_text("TRT-100300-EntropyCalibration2\n")
    Path(f"{cache}.json").write_text('{"source_onnx_sha256": 1')
    assert_one_line_error(run_cli("engine", tiny, "--out", tmp_path / "e.engine", "--precision", "int8",
                                  "--calib-cache", cache), "damaged")


# --- terminals and pipes -----------------------------------------------------------------------


def test_a_closed_pipe_and_an_ascii_terminal_are_no_errors(tmp_path):
    """`segexport ... | head -1` ends the reader early: the command still finishes its work and
    exits 0 (the same stdout wrapper serves `segexport models | head -1`, which builds every zoo
    model and is too slow for a unit test). An ASCII terminal gets "?" for a ✓, not a traceback."""
    synth = [sys.executable, "-m", "segexport", "data", "synth", "--count", "1", "--num-classes", "2", "--size", "8"]
    proc = subprocess.Popen([*synth, "--out", str(tmp_path / "p")], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == "", err
    assert (tmp_path / "p" / "manifest.json").is_file()
    done = subprocess.run([*synth, "--out", str(tmp_path / "s")], env={**_env(), "PYTHONIOENCODING": "ascii"},
                          capture_output=True, timeout=120)
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    assert b"? wrote 1 images" in done.stdout


def test_library_warnings_stay_off_the_terminal():
    code = ("from segexport.cli import _prepare_process; _prepare_process(); import warnings, numpy as np; "
            "warnings.warn('torch.load plain pickle', UserWarning); np.log(np.zeros(1)); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok" and done.stderr == "", done.stderr
