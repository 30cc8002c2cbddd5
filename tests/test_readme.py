"""The README's first example runs as written (a newcomer's first five lines)."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_the_readme_example_runs(capsys):
    text = (ROOT / "README.md").read_text()
    start = text.index("## Get started")
    code = re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)
    assert len(code.strip().splitlines()) <= 6, "the first example should stay about five lines"
    exec(compile(code, "README.md", "exec"), {})
    margin, epsilon = (float(x) for x in capsys.readouterr().out.split())
    assert margin > 0 and 0 <= epsilon <= 1  # it separated the data; ε is in its range
