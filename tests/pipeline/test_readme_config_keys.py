"""docs/pipeline.md's list of pipeline keys says which may go in [defaults]; the config agrees."""

from __future__ import annotations

import re
from pathlib import Path

from segexport.pipeline.config import ModelEntry, Settings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "pipeline.md").read_text()  # the pipeline doc, moved out of README.md


def _keys(after: str) -> set[str]:
    start = DOC.index(after)
    text = DOC[start:DOC.index(";", start) if after.startswith("Per model or") else DOC.index(".", start)]
    return {k for k in re.findall(r"`([a-z_]+)[` ]", text)} - {"auto", "off", "trt"}


def test_readme_keys_match_where_the_config_accepts_them():
    model_only = _keys("Per model only")
    anywhere = _keys("Per model or in `[defaults]`")
    assert {"width", "weights", "model_args"} <= model_only and {"opset", "engine", "deploy"} <= anywhere
    for key in model_only:
        assert key in ModelEntry.model_fields and key not in Settings.model_fields, key
    for key in anywhere:
        assert key in Settings.model_fields, key
