"""The architecture's import rules (docs/architecture.md), checked on every module's source.

Layers, bottom up: ``cfer``/``taxonomy``/``atomic``/``lazy``/``schedule`` → ``data``, ``models`` →
``continual``, ``fewshot``, ``explain``, ``pretrain`` → ``app``. A module may import its own layer's
package and the layers below it, never above or beside; function-level (lazy) imports
count too. ``models`` knows nothing of Avalanche; ``data`` nothing of models.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "cfer"
BASE = {"cfer", "cfer.taxonomy", "cfer.atomic", "cfer.lazy", "cfer.schedule", "cfer.distributed", "cfer.cliplayout",
        "cfer.machine"}
ALLOWED = {
    "base": set(),
    "data": {"base"},
    "models": {"base"},
    "continual": {"base", "data", "models"},
    "fewshot": {"base", "data", "models"},
    "explain": {"base", "data", "models"},
    "pretrain": {"base", "data", "models"},
    "app": {"base", "data", "models", "continual", "fewshot", "explain", "pretrain"},
}
FORBIDDEN_THIRD_PARTY = {"models": {"avalanche", "learn2learn", "pytorch_grad_cam"}, "data": {"avalanche", "timm"},
                         "pretrain": {"avalanche", "learn2learn", "pytorch_grad_cam"}}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> str:
    if module == "cfer.__main__":  # `python -m cfer`: the command, part of the app
        return "app"
    if module in BASE or module.count(".") == 0:
        return "base"
    return module.split(".")[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if node.module == "cfer"]
    return out


MODULES = sorted(p for p in ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_imports_go_down_only(path):
    here = _layer(_module_name(path))
    bad = []
    for line, name in _imports(path):
        top = name.split(".")[0]
        if top == "cfer":
            there = _layer(name) if name not in BASE else "base"
            if there != here and there not in ALLOWED[here]:
                bad.append(f"line {line}: {name} ({here} may import {sorted(ALLOWED[here] | {here})})")
        elif top in FORBIDDEN_THIRD_PARTY.get(here, set()):
            bad.append(f"line {line}: {name} ({here} must not depend on {top})")
    assert bad == [], f"{path.relative_to(ROOT.parent)}: " + "; ".join(bad)


def test_the_rules_see_a_violation(tmp_path):
    """The checker itself: an upward import is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from cfer.app.config import RunConfig\n")
    assert ("2", "cfer.app.config") == tuple(map(str, _imports(bad)[0])) and _layer("cfer.app.config") == "app"
    assert "app" not in ALLOWED["data"]


@pytest.mark.slow
def test_every_library_module_imports_with_the_app_blocked():
    """Import every module below ``cfer.app`` in a fresh process in which importing
    ``cfer.app`` fails: the library stands without the app."""
    library = [_module_name(p) for p in MODULES if _layer(_module_name(p)) != "app"]
    code = f"""
import importlib, importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "cfer.app" or name.startswith("cfer.app."):
            raise ImportError("cfer.app is blocked: " + name)
sys.meta_path.insert(0, Block())
failed = []
for name in {library!r}:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{{name}}: {{type(exc).__name__}}: {{exc}}")
assert not any(m.startswith("cfer.app") for m in sys.modules), "cfer.app was imported"
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert len(library) > 40


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT.parent)): n for p in MODULES if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
