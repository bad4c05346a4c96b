"""core.files: atomic outputs (one and several), the input/output clash check, temp sweeping,
disk-full and strict JSON. Pure file-system tests: no model, milliseconds each."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from segexport.core import files
from segexport.core.files import (atomic_output, atomic_outputs, live_temps, refuse_overwriting_inputs,
                                  sweep_stale_temps)
from segexport.errors import UserError


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_failed_block_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            assert tmp in live_temps() and tmp.parent == tmp_path
            raise RuntimeError("boom")
    assert target.read_text() == "good" and _hidden(tmp_path) == [] and not live_temps()


def test_disk_full_is_one_line_naming_the_file_and_nothing_is_left(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(UserError) as info:
        with atomic_output(target, flag="--json") as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    message = info.value.cli_message  # str() names the Python parameter (json_out=) instead of the flag
    assert "no space left" in message and "r.json" in message and "--json" in message and "\n" not in message
    assert target.read_text() == "old" and _hidden(tmp_path) == []


def test_outputs_land_together_or_not_at_all(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.xml"
    a.write_text("old a")
    with pytest.raises(OSError):
        with atomic_outputs([(a, "--json"), (b, "--junit")]) as staged:
            staged[a].write_text("new a")
            raise OSError(errno.EIO, "I/O error")  # the JUnit write fails: the JSON must not say "pass"
    assert a.read_text() == "old a" and not b.exists() and _hidden(tmp_path) == []
    with atomic_outputs([(a, "--json"), (b, "--junit")]) as staged:
        staged[a].write_text("new a")
        staged[b].write_text("new b")
    assert a.read_text() == "new a" and b.read_text() == "new b" and _hidden(tmp_path) == []


def test_a_sidecar_never_describes_an_artefact_that_is_not_there(tmp_path, monkeypatch):
    """The old sidecar goes before any artefact is replaced and the new one comes last: a kill
    between the renames leaves a new engine *without* a sidecar (refused by every reader),
    never a new sidecar beside the old engine, nor the old sidecar beside the new engine."""
    engine, side = tmp_path / "m.engine", tmp_path / "m.engine.json"
    engine.write_text("old engine")
    side.write_text("describes old engine")
    real_replace, order = os.replace, []

    def replace(src, dst):
        order.append(os.path.basename(dst))
        if str(dst).endswith(".json"):
            raise KeyboardInterrupt  # killed between the two renames
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        with atomic_outputs([(engine, "--out")], sidecars=[(side, "--out")]) as staged:
            staged[engine].write_text("new engine")
            staged[side].write_text("describes new engine")
    assert order == ["m.engine", "m.engine.json"]
    assert engine.read_text() == "new engine" and not side.exists() and _hidden(tmp_path) == []


def test_an_output_that_is_an_input_is_refused_by_path_symlink_and_hard_link(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_text("model")
    (tmp_path / "link.onnx").symlink_to(onnx)
    os.link(onnx, tmp_path / "hard.onnx")
    sub = tmp_path / "sub"
    sub.mkdir()
    for out in (onnx, tmp_path / "link.onnx", tmp_path / "hard.onnx", sub / ".." / "m.onnx"):
        with pytest.raises(UserError) as info:
            refuse_overwriting_inputs({"--json": out}, [onnx])
        assert re.search(r"--json .* is the input .*m.onnx", info.value.cli_message)
    with pytest.raises(UserError) as info:
        refuse_overwriting_inputs({"--json": tmp_path / "r", "--junit": tmp_path / "r"}, [onnx])
    assert re.search(r"--junit .* also given as --json", info.value.cli_message)
    refuse_overwriting_inputs({"--json": tmp_path / "r.json", "--junit": None}, [onnx, None])  # distinct: fine


def test_stale_temps_of_dead_runs_are_swept_and_nothing_else(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    host = files._host_tag()
    stale = tmp_path / f".m.onnx.segexport-{pid}h{host}-abc.onnx"
    stale.write_text("135 MB of a killed export")
    stale_dir = tmp_path / f".m.onnx.segexport-{pid}h{host}-def"
    stale_dir.mkdir()
    live = tmp_path / f".m.onnx.segexport-{os.getppid()}h{host}-ghi.onnx"  # a live process's temp
    live.write_text("in use")
    elsewhere = tmp_path / f".m.onnx.segexport-{pid}h00000000-jkl.onnx"  # another machine's, on a shared folder
    elsewhere.write_text("in use there")
    users = [tmp_path / ".m.onnx.bak", tmp_path / "m.onnx"]
    for p in users:
        p.write_text("user's")
    removed = sweep_stale_temps(tmp_path, "m.onnx")
    assert sorted(removed) == sorted([stale, stale_dir])
    assert live.exists() and elsewhere.exists() and all(p.exists() for p in users)
    # and writing the same output again sweeps by itself
    stale.write_text("again")
    with atomic_output(tmp_path / "m.onnx") as tmp:
        tmp.write_text("new")
    assert not stale.exists() and live.exists()


def test_a_fifo_or_a_folder_is_no_output(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="not a regular file"):
        files.check_output_path(fifo, "--json")
    with pytest.raises(UserError, match="is a directory"):
        files.check_output_path(tmp_path, "--json")


def test_json_is_strict_everywhere():
    from segexport.checks.latency import summarize, to_json
    from segexport.core.jsonio import dumps

    assert json.loads(dumps({"a": float("nan"), "b": [float("inf"), 1.5], "c": (1, 2)})) == \
        {"a": None, "b": [None, 1.5], "c": [1, 2]}
    stats = summarize([0.0, 0.0], backend="ort-cpu", batch=1)  # a zero mean: infinite throughput
    text = to_json([stats], {"model": "m"})
    assert "Infinity" not in text and json.loads(text)["results"][0]["throughput"] is None


def test_importing_onnxruntime_through_segexport_leaves_nothing_in_tmpdir(tmp_path):
    """onnxruntime's telemetry writes a `.ses` session file into $TMPDIR when imported (every INT8
    calibrate left one): segexport points it at its own temp folder, removed after the import."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    code = ("import segexport, onnxruntime, onnxruntime.quantization, os, sys; "
            "sys.exit(0 if os.environ['TMPDIR'] == sys.argv[1] else 3)")
    # onnxruntime writes no session file when CI is set (as on the CI runner): the user's case has none
    env = {**{k: v for k, v in os.environ.items() if k != "CI"}, "TMPDIR": str(tmp_path), "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # $TMPDIR is the user's again after the import
    assert sorted(os.listdir(tmp_path)) == []
    bare = subprocess.run([sys.executable, "-c", "import onnxruntime"], env=env, capture_output=True, text=True)
    assert bare.returncode == 0 and ".ses" in os.listdir(tmp_path)  # what the test guards against
