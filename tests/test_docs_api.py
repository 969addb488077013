"""Everything docs/api.md says can be imported can be imported, as written.

Two kinds of claims are read from the page:

* every ``import X`` / ``from X import a, b`` statement inside its ```` ```python ````
  code blocks;
* every row of its tables whose first cell is a backticked module path (```cfer.data```)
  and whose second cell lists backticked names: each name that looks like an identifier
  (a call's ``(...)`` stripped: ```read_dataset(path, *, format)``` is ``read_dataset``)
  must be an attribute of that module.

Each module is one test case, so a failure names the module, the missing names and the
lines of the page that document them. Nothing is trained; only imports run.
"""

from __future__ import annotations

import ast
import importlib
import keyword
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"

_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
_IMPORT_START = re.compile(r"^\s*(?:import\s+[A-Za-z_]|from\s+[A-Za-z_][\w.]*\s+import\b)")
_MODULE_CELL = re.compile(r"^`(cfer(?:\.[A-Za-z_]\w*)*)`$")
_SPAN = re.compile(r"`([^`]+)`")
_CELL_SPLIT = re.compile(r"\|(?=(?:[^`]*`[^`]*`)*[^`]*$)")  # a pipe outside backticks


@dataclass(frozen=True)
class Claim:
    """``module`` imports, and (unless ``name`` is None) has ``name``; said at ``line``."""

    module: str
    name: str | None
    line: int
    source: str


def _import_statements(code: str, first_line: int) -> list[tuple[int, str]]:
    """The import statements of a code block, with their line in the page; a statement
    with parentheses may span lines."""
    lines = code.splitlines()
    out, i = [], 0
    while i < len(lines):
        if not _IMPORT_START.match(lines[i]):
            i += 1
            continue
        start, stmt = i, lines[i].split("#")[0]
        while stmt.count("(") > stmt.count(")") and i + 1 < len(lines):
            i += 1
            stmt += "\n" + lines[i].split("#")[0]
        out.append((first_line + start, stmt.strip()))
        i += 1
    return out


def claims_in_code(text: str) -> list[Claim]:
    """What the ``import`` lines of the page's python blocks claim."""
    claims = []
    for block in _BLOCK.finditer(text):
        first_line = text.count("\n", 0, block.start(1)) + 1
        for line, stmt in _import_statements(block.group(1), first_line):
            tree = ast.parse(stmt)  # a documented import that is not Python fails here, naming it
            for node in tree.body:
                if isinstance(node, ast.Import):
                    claims += [Claim(a.name, None, line, stmt) for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    claims += [Claim(node.module, a.name, line, stmt) for a in node.names if a.name != "*"]
    return claims


def _cells(row: str) -> list[str]:
    return [c.strip() for c in _CELL_SPLIT.split(row.strip().strip("|"))]


def claims_in_tables(text: str) -> list[Claim]:
    """What the page's ``| `cfer.module` | `name`, `name(...)` |`` table rows claim."""
    claims = []
    for number, row in enumerate(text.splitlines(), start=1):
        if not row.lstrip().startswith("|"):
            continue
        cells = _cells(row)
        if len(cells) < 2:
            continue
        m = _MODULE_CELL.match(cells[0])
        if not m:
            continue
        module = m.group(1)
        claims.append(Claim(module, None, number, row.strip()))
        for span in _SPAN.findall(cells[1]):
            name = span.split("(", 1)[0].strip()
            if name.isidentifier() and not keyword.iskeyword(name):
                claims.append(Claim(module, name, number, row.strip()))
    return claims


def documented(text: str) -> dict[str, list[Claim]]:
    """Every claim of the page, grouped by module."""
    by_module: dict[str, list[Claim]] = defaultdict(list)
    for claim in [*claims_in_code(text), *claims_in_tables(text)]:
        by_module[claim.module].append(claim)
    return dict(by_module)


def problems(module: str, claims: list[Claim]) -> list[str]:
    """The claims about ``module`` that do not hold, one line each (empty: all hold)."""
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure to import is the finding
        return [f"docs/api.md line {min(c.line for c in claims)}: cannot import {module} "
                f"({type(exc).__name__}: {exc})"]
    out = []
    for claim in claims:
        if claim.name is None or hasattr(mod, claim.name):
            continue
        try:  # `from cfer import taxonomy`: a submodule counts, as it does for `from X import Y`
            importlib.import_module(f"{module}.{claim.name}")
            continue
        except ImportError:
            pass
        except Exception as exc:  # noqa: BLE001
            out.append(f"docs/api.md line {claim.line}: {module}.{claim.name} fails to import "
                       f"({type(exc).__name__}: {exc}): {claim.source}")
            continue
        out.append(f"docs/api.md line {claim.line}: {module} has no {claim.name!r}: {claim.source}")
    return out


CLAIMS = documented(DOC.read_text())


@pytest.mark.parametrize("module", sorted(CLAIMS))
def test_documented_names_exist(module):
    assert problems(module, CLAIMS[module]) == []


def test_the_page_documents_the_library():
    """The parser finds the page's claims (a silent parser would pass every case above)."""
    for module in ("cfer.app.config_io", "cfer.app.pipeline", "cfer.continual.resume", "cfer.models.io",
                   "cfer.atomic", "cfer.data", "cfer.continual", "cfer.continual.plugins", "cfer.explain"):
        assert module in CLAIMS, f"docs/api.md documents nothing of {module}"
    names = {c.name for claims in CLAIMS.values() for c in claims}
    assert {"run_order", "make_strategy", "BasicEpochsPlugin", "save_analysis", "UnsafeFileError"} <= names
    assert sum(len(v) for v in CLAIMS.values()) > 100


SAMPLE = '''
| module | what it gives |
|--------|---------------|
| `cfer.taxonomy` | `normalize`, `no_such_name`, `"naive"`, `CONSTITUENTS[name]`, `read(path, *, x)` |
| `cfer.no_such_module` | `anything` |
| not a module | `ignored` |

```python
from cfer.taxonomy import (normalize,   # a comment
                           NO_SUCH_CONSTANT)
import cfer.atomic, json
x = 1  # import nothing
```
'''


def test_the_parser_reads_code_and_tables():
    claims = documented(SAMPLE)
    names = {m: sorted(str(c.name) for c in cs) for m, cs in claims.items()}
    assert names == {
        "cfer.taxonomy": ["NO_SUCH_CONSTANT", "None", "no_such_name", "normalize", "normalize", "read"],
        "cfer.no_such_module": ["None", "anything"],
        "cfer.atomic": ["None"],
        "json": ["None"],
    }


def test_a_missing_name_or_module_is_reported():
    """The check can fail: it names the module, the missing name and the line."""
    claims = documented(SAMPLE)
    found = problems("cfer.taxonomy", claims["cfer.taxonomy"])
    assert len(found) == 3
    assert all("cfer.taxonomy has no" in f for f in found)
    assert {"'no_such_name'", "'NO_SUCH_CONSTANT'", "'read'"} == {f.split(" has no ")[1].split(":")[0] for f in found}
    gone = problems("cfer.no_such_module", claims["cfer.no_such_module"])
    assert len(gone) == 1 and "cannot import cfer.no_such_module" in gone[0]
    assert problems("cfer.atomic", claims["cfer.atomic"]) == []
