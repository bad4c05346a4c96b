"""The floors of the house, drawn from the code's own imports (``ast``, nothing imported).

Every ``import segexport...`` is an arrow, including the ones inside functions (a lazy
import is still a dependency); only ``if TYPE_CHECKING:`` blocks are left out, since they
never run. Data flows one way: a module may import its own floor or any floor below it.
An arrow to a higher floor is a back-arrow; a few are tolerated while they wait for a
better home, a circle never is.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "segexport"

# lowest first; a module's floor is the first prefix that matches (longest prefixes first)
FLOORS: dict[str, int] = {
    "segexport.core": 0, "segexport.errors": 0, "segexport._version": 0,
    "segexport.models": 1, "segexport.data": 1,
    "segexport.exporter": 2,
    "segexport.calib": 3,
    "segexport.engines": 4,
    "segexport.checks": 5,
    "segexport.pipeline": 6, "segexport.deploy": 6,
    "segexport.api": 7, "segexport": 7,  # the package itself declares the public API
    "segexport.cli": 8, "segexport.__main__": 8,
}
MAX_BACK_ARROWS = 5


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The segexport modules ``name`` imports (``from pkg import submodule`` names the submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "segexport")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "segexport":
                return
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(name)
    return {m for m in found if m in known}


def floor_of(name: str) -> int:
    for prefix in sorted(FLOORS, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "."):
            return FLOORS[prefix]
    raise KeyError(f"{name} has no floor: add it to FLOORS in tests/test_layers.py")


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def back_arrows(g: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, targets in g.items() for b in targets if floor_of(b) > floor_of(a))


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(g):
        if v not in index:
            strongconnect(v)
    return found


def test_every_module_has_a_floor():
    for name in modules():
        floor_of(name)


def test_no_import_circle():
    found = cycles(graph())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_few_arrows_run_back_up_the_floors():
    arrows = back_arrows(graph())
    listing = "\n".join(f"  {a} (floor {floor_of(a)}) -> {b} (floor {floor_of(b)})" for a, b in arrows)
    print(f"{len(arrows)} back-arrows:\n{listing}")
    assert len(arrows) <= MAX_BACK_ARROWS, f"{len(arrows)} arrows run back up the floors:\n{listing}"


def test_the_drawing_sees_arrows():
    """The test can fail: a known downward arrow is found, and a planted upward one is counted."""
    g = graph()
    assert "segexport.core.files" in g["segexport.calib.pipeline"]
    planted = dict(g)
    planted["segexport.core.files"] = g["segexport.core.files"] | {"segexport.cli.common"}
    assert ("segexport.core.files", "segexport.cli.common") in back_arrows(planted)


def test_no_library_module_imports_typer():
    """Import every library module (not cli/, not __main__) in one fresh process: Typer stays out."""
    library = [m for m in modules() if floor_of(m) < FLOORS["segexport.cli"]]
    code = ("import importlib, sys\n"
            f"for m in {library!r}:\n"
            "    importlib.import_module(m)\n"
            "from segexport import export, calibrate, build_engine, lint, parity, bench\n"
            "bad = sorted(m for m in sys.modules if m == 'typer' or m.startswith('typer.'))\n"
            "print('typer modules:', bad)\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


if __name__ == "__main__":  # python tests/test_layers.py: print the drawing
    g = graph()
    for a, b in back_arrows(g):
        print(f"back: {a} -> {b}")
    for c in cycles(g):
        print("circle:", " <-> ".join(c))
    print(sum(len(v) for v in g.values()), "arrows")
