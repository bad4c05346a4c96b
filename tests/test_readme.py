"""The README's promise: two commands near the top, and CI runs exactly the second one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    head = text[: text.index("## ")]  # before the first section: "near the top"
    return re.findall(r"```bash\n(.+?)\n```", head)


def test_two_commands_main_job_then_tests():
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("segexport onnx --model deeplabv1")
    assert "pytest" in commands[1] and "torch==2.13.0" in commands[1]


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == readme_commands()[1]
