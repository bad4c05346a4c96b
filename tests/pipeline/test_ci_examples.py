"""The CI examples are parsed and their exact `segexport` commands run against the tiny config.

Only the CI system's own variables are filled in (the matrix shard, GitLab's node index and
total) and the GitHub artefact download is mimicked by copying the shard folders; the
commands themselves are taken from the YAML as written.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="pyyaml is in the [test] extra: pip install -e '.[test]'")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"


def _scripts(node) -> list[str]:
    """Every shell line under a `run:` (GitHub) or `script:` (GitLab) key, in file order."""
    out: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("run", "script"):
                for text in value if isinstance(value, list) else [value]:
                    out += [ln.strip() for ln in str(text).splitlines() if ln.strip()]
            else:
                out += _scripts(value)
    elif isinstance(node, list):
        for item in node:
            out += _scripts(item)
    return out


def _segexport_commands(doc) -> list[str]:
    return [ln for ln in _scripts(doc) if ln.startswith("segexport ")]


def _run(command: str, run_cli) -> None:
    args = shlex.split(command)
    result = run_cli(*args[1:])
    assert result.exit_code == 0, (command, result.stdout, result.stderr)


def _workspace(tiny_run, tmp_path, monkeypatch) -> Path:
    root, config, cache, full, _ = tiny_run
    shutil.copy(config, tmp_path / "segexport.toml")
    shutil.copytree(cache, tmp_path / ".segexport-cache")
    monkeypatch.chdir(tmp_path)
    return full


def test_github_actions_example(tiny_run, tmp_path, monkeypatch, run_cli):
    doc = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    jobs = doc["jobs"]
    shards = jobs["pipeline"]["strategy"]["matrix"]["shard"]
    assert any(s.get("uses", "").startswith("actions/cache") for s in jobs["pipeline"]["steps"])
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in jobs["pipeline"]["steps"])
    full = _workspace(tiny_run, tmp_path, monkeypatch)
    (tmp_path / "release").mkdir()
    shutil.copy(full / "manifest.json", tmp_path / "release" / "manifest.json")  # `gh release download`
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    (run_shard,) = _segexport_commands(jobs["pipeline"])
    for shard in shards:
        _run(run_shard.replace("${{ matrix.shard }}", str(shard)), run_cli)
        shutil.copytree(tmp_path / f"shard-{shard}", tmp_path / "shards" / f"shard-{shard}")  # download-artifact
    (merge,) = _segexport_commands(jobs["merge"])
    assert "${{" not in merge
    _run(merge, run_cli)
    merged = json.loads((tmp_path / "dist" / "manifest.json").read_text())
    assert {(e["model"], e["variant"]) for e in merged["entries"]} == {("unet-t", "fp32"), ("unet-t", "int8"),
                                                                      ("fcn-t", "fp32")}
    assert all("gate-accuracy" in e["steps"] for e in merged["entries"])
    assert "| fcn-t | fp32 |" in summary.read_text()


def test_gitlab_ci_example(tiny_run, tmp_path, monkeypatch, run_cli):
    doc = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    total = doc["export"]["parallel"]
    assert doc["export"]["artifacts"]["reports"]["junit"]
    full = _workspace(tiny_run, tmp_path, monkeypatch)
    (run_shard,) = _segexport_commands(doc["export"])
    for index in range(1, total + 1):
        _run(re.sub(r"\$CI_NODE_TOTAL", str(total), re.sub(r"\$CI_NODE_INDEX", str(index), run_shard)), run_cli)
    (merge,) = _segexport_commands(doc["merge"])
    _run(merge, run_cli)
    merged = json.loads((tmp_path / "dist" / "manifest.json").read_text())
    want = json.loads((full / "manifest.json").read_text())
    merged.pop("runs"), want.pop("runs")
    assert merged == want
