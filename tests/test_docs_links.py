"""Every relative link in README.md and docs/*.md reaches a file, and a heading where it names one.

The docs cite each other's sections by anchor (``benchmarks.md#early-stopping-...``); a heading
renamed without its links leaves readers at the top of a 4,000-line page. Anchors follow
GitHub's rule: the heading in lower case, punctuation other than ``-`` and ``_`` dropped, spaces
as ``-``, and ``-1``, ``-2`` ... after a repeated heading.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")  # [text](target); the text may wrap over lines
FENCE = re.compile(r"^\s*```.*?^\s*```[^\n]*$", re.S | re.M)


def _without_code_blocks(text: str) -> str:
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def _prose(text: str) -> str:
    """``text`` without code blocks and inline code (their brackets are not links), lines kept."""
    return re.sub(r"`[^`\n]*`", "", _without_code_blocks(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text.

    Example:
        >>> slug("Early stopping within each step (validation, 2026-12-04)")
        'early-stopping-within-each-step-validation-2026-12-04'
    """
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    out, seen = set(), {}
    for line in _without_code_blocks(page.read_text()).splitlines():  # a heading's inline code counts
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return frozenset(out)


def broken_links(page: Path, *, root: Path = ROOT) -> list[str]:
    text = _prose(page.read_text())
    out = []
    for m in LINK.finditer(text):
        target = m.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not checked offline
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        line = text.count("\n", 0, m.start()) + 1
        if not dest.exists():
            out.append(f"{page.relative_to(root)}:{line}: {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            out.append(f"{page.relative_to(root)}:{line}: {target}: no heading with that anchor in {dest.name}")
    return out


def test_the_anchor_rule_on_headings_of_this_project():
    assert slug("Scaling out: 1 vs 2 processes") == "scaling-out-1-vs-2-processes"
    assert slug("Fusion models as teachers: members alone, the late-fusion ensemble, dual-view") == (
        "fusion-models-as-teachers-members-alone-the-late-fusion-ensemble-dual-view")
    assert slug("The main job (`cfer run`)") == "the-main-job-cfer-run"
    assert slug("2×2 max pooling at inference (2026-12-06)") == "22-max-pooling-at-inference-2026-12-06"


def test_a_broken_link_and_a_missing_anchor_are_found(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## A section (2026)\n\n## A section (2026)\n")
    page.write_text("See [the\nsection](other.md#a-section-2026-1), [gone](gone.md), [no](other.md#nope)\n"
                    "and [self](#top).\n\n```sh\n[not a link](nowhere.md)\n```\n`[code](x.md)`\n\n# Top\n")
    assert broken_links(page, root=tmp_path) == ["page.md:2: gone.md: no such file",
                     "page.md:2: other.md#nope: no heading with that anchor in other.md"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_reaches_its_file_and_heading(page):
    assert broken_links(page) == []
