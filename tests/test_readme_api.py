"""The README's "Python API" snippet runs as written: export -> calibrate -> parity, at a tiny width."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def api_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.+?)\n```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section holds one snippet"
    return blocks[0]


def test_the_snippet_is_export_calibrate_parity():
    code = api_snippet()
    for step in ("segexport.export(", "segexport.calibrate(", "segexport.parity("):
        assert step in code


def test_the_readme_python_api_snippet_runs(tmp_path):
    """In a fresh process (so nothing imported by other tests helps it), in an empty folder."""
    done = subprocess.run([sys.executable, "-c", api_snippet()], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "unet.fp16.onnx: parity passed = True" in done.stdout
    assert (tmp_path / "unet.onnx").is_file() and (tmp_path / "unet.fp16.onnx").is_file()
