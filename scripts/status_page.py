"""Write status.md, the page "Status of the theorems", from the chapters' verdict cells.

Usage: ``.venv/bin/python scripts/status_page.py [--check]``. Every chapter shows a verdict
with ``v.show("key", mutant=...)`` (or a measurement with ``v.show_measured("key",
scope=...)``), which glues ``key-claim``, ``key-status``, ``key-numbers`` and ``key-mutant``
(``key-scope``) with myst-nb; this script finds those calls in the chapters, in the order of
_toc.yml, and writes one table row per key that pastes the glued values with
``{glue:text}`chapters/<chapter>.ipynb::<key>-<field>:s``` (myst-nb finds the document by
its file name, suffix included, and needs the ``:s`` format so that it does not read the
``::`` path as the format). The values are pasted when the book is built (myst-nb's
cross-document glue), so the page shows the run size the book was built at, and a key that
a chapter no longer glues fails the build (``-W``).

Run it after adding, removing or renaming a verdict; ``--check`` (used by
tests/test_status.py) exits 1 when status.md is out of date.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGE = ROOT / "status.md"
#: ``v.show("key", ...)`` or ``v.show_measured("key", ...)``: the key must be a literal.
CALL = re.compile(r"\.show(_measured)?\(\s*[\"']([a-z0-9-]+)[\"']")
#: The chapter whose first verdict glues the run size (``run-size``) the page states.
SIZE_FROM = "chapters/01_setting"

HEAD = """# Status of the theorems

Every chapter checks its theorems with **verdict** cells: each asserts the theorem's
prediction with a stated tolerance on the runs of that chapter, and each is also run, in the
library's tests, on a deliberately wrong input — a **mutant**, such as one optimizer's run
in place of another's — which must make it fail (a check that no mutant can fail checks
nothing). This page collects every verdict of the book as it came out when this site was
built, at run size **{glue:text}`SIZE_FROM.ipynb::run-size:s`** (of `smoke`, seconds long,
for tests; `book`, the default; and `paper`, the paper-scale runs: see {doc}`intro`). Each row
links to its chapter, where the verdict cell prints every number it compared.
""".replace("SIZE_FROM", SIZE_FROM)

VERDICTS = """## The verdicts

```{table}
:class: status-table
:widths: 6 24 10 35 25

| chapter | claim | verdict | numbers compared | a mutant that fails it |
|---|---|---|---|---|
"""

MEASURED = """## Measured, not proved

These are measurements where no theorem makes a prediction — a 10-class network, or an
optimizer that the theorem at hand does not cover. Each records whether the pattern that the
theorems predict elsewhere **holds** there. A "does not hold" is a finding about where the
theory stops, not a failed check: none of them is asserted.

```{table}
:class: status-table
:widths: 6 24 10 35 25

| chapter | what was measured | outcome | numbers | why no theorem covers it |
|---|---|---|---|---|
"""


def chapters(book: pathlib.Path = ROOT) -> list[str]:
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"] if c["file"].startswith("chapters/")]


def calls(notebook: pathlib.Path) -> list[tuple[str, bool]]:
    """``(key, measured)`` of every ``show``/``show_measured`` call in a notebook's code cells."""
    nb = json.loads(notebook.read_text())
    found = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            found += [(key, bool(measured)) for measured, key in CALL.findall(source)]
    return found


def number(chapter: str) -> str:
    return str(int(re.match(r"chapters/(\d+)_", chapter).group(1)))


def row(chapter: str, key: str, fields: tuple[str, ...]) -> str:
    # the page is at the book's root, so the chapter's path is relative to it
    pasted = [f"{{glue:text}}`{chapter}.ipynb::{key}-{field}:s`" for field in fields]
    return "| " + " | ".join([f"{{doc}}`{number(chapter)} <{chapter}>`", *pasted]) + " |\n"


def page(book: pathlib.Path = ROOT) -> str:
    verdicts, measured, seen = [], [], {}
    for chapter in chapters(book):
        for key, is_measured in calls(book / f"{chapter}.ipynb"):
            if key in seen:
                raise SystemExit(f"verdict key {key!r} is used twice ({seen[key]} and {chapter})")
            seen[key] = chapter
            if is_measured:
                measured.append(row(chapter, key, ("claim", "status", "numbers", "scope")))
            else:
                verdicts.append(row(chapter, key, ("claim", "status", "numbers", "mutant")))
    if SIZE_FROM not in seen.values():
        raise SystemExit(f"{SIZE_FROM} shows no verdict, so it glues no run size for the page")
    text = HEAD + "\n" + VERDICTS + "".join(verdicts) + "```\n"
    if measured:
        text += "\n" + MEASURED + "".join(measured) + "```\n"
    return text


def main(argv: list[str]) -> int:
    text = page()
    if "--check" in argv:
        if not PAGE.exists() or PAGE.read_text() != text:
            print(f"{PAGE.name} is out of date: run `python scripts/status_page.py`")
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE} ({text.count(chr(10) + '| {doc}')} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
