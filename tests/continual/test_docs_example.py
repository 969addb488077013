"""Runs the Avalanche example of docs/strategy.md as it is written."""

import re
from pathlib import Path


def test_strategy_doc_example_runs(capsys):
    text = (Path(__file__).parents[2] / "docs" / "strategy.md").read_text()
    # the first top-level example (indented blocks belong to a list item and show one call)
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert blocks, "no python example in docs/strategy.md"
    exec(compile(blocks[0], "docs/strategy.md", "exec"), {})
    assert capsys.readouterr().out.strip().splitlines()[-1].split() == ["40", "8"]
