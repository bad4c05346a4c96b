"""Make NVIDIA's generated TensorRT 10 stubs (tensorrt-stubs 10.13) parse, without changing any type.

The published ``tensorrt_bindings/tensorrt.pyi`` has two generator slips that are syntax errors
for every checker: plugin methods with a parameter named ``in`` (a keyword, from the C++ name),
and ``add_scale_nd`` with a parameter without a default after ones with defaults. The first is
renamed ``in_`` and the second gets ``= ...``; neither method is called by segexport. Run by
scripts/fetch_test_deps.sh after ``pip install --target``; idempotent.

Usage: python scripts/fix_trt_stubs.py STUBS_DIR
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

DEF = re.compile(r"^(\s*def \w+\()(.*)(\)\s*->.*:\s*)$")


def fix_def(line: str) -> str:
    m = DEF.match(line)
    if not m:
        return line
    params = [p.strip() for p in re.split(r",(?![^\[]*\])", m.group(2)) if p.strip()]
    fixed, seen_default = [], False
    for p in params:
        p = re.sub(r"^in:", "in_:", p)
        if "=" in p:
            seen_default = True
        elif seen_default and ":" in p and not p.startswith("*"):
            p += " = ..."
        fixed.append(p)
    return m.group(1) + ", ".join(fixed) + m.group(3)


def main(stubs: str) -> int:
    path = Path(stubs) / "tensorrt_bindings" / "tensorrt.pyi"
    lines = path.read_text().splitlines(keepends=True)
    out = [fix_def(ln.rstrip("\n")) + ("\n" if ln.endswith("\n") else "") for ln in lines]
    changed = sum(a != b for a, b in zip(lines, out))
    path.write_text("".join(out))
    print(f"fixed {changed} stub lines in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
