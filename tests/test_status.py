"""The page "Status of the theorems" and what a reader sees of verdicts and tables.

Every chapter shows its verdicts with ``Verdict.show`` (or ``show_measured``), which prints
them wrapped at 100 characters and glues their records for status.md; status.md is what
scripts/status_page.py writes from the chapters (one row per shown verdict); it sits in the
back matter before the bibliography; tables are displayed (HTML on the page), not printed.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re

import nbformat
import pytest
import yaml
from implicit_bias import plots
from implicit_bias.verdicts import Verdict

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("status_page", ROOT / "scripts" / "status_page.py")
status_page = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(status_page)

CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
#: Chapters that still print their verdicts and tables the old way. Chapter 8 is converted
#: by its owner: then remove it here and rerun scripts/status_page.py.
NOT_YET: set[str] = set()


def test_status_page_is_up_to_date():
    assert status_page.page() == (ROOT / "status.md").read_text(), (
        "status.md is out of date: run `python scripts/status_page.py`")


def test_status_page_is_in_the_back_matter_before_the_bibliography():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    back = next(p for p in toc["parts"] if p["caption"] == "Back matter")
    files = [c["file"] for c in back["chapters"]]
    assert files.index("status") == files.index("bibliography") - 1
    assert "{doc}`status`" in (ROOT / "intro.md").read_text(), "the landing page links the status page"


def test_status_page_lists_every_chapter_that_shows_verdicts():
    text = (ROOT / "status.md").read_text()
    for path in CHAPTERS:
        if path.stem not in NOT_YET and status_page.calls(path):
            assert f"chapters/{path.stem}.ipynb::" in text, path.stem


@pytest.mark.parametrize("path", [p for p in CHAPTERS if p.stem not in NOT_YET], ids=lambda p: p.stem)
def test_chapter_shows_its_verdicts_and_displays_its_tables(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        source = cell.source
        assert not re.search(r"print\((ib\.)?plots\.table\(", source), (
            f"{path.stem} cell {i}: display(plots.table(...)) (an HTML table), not print")
        assert not re.search(r"print\(v\)|print\(.*\{v\}", source), (
            f"{path.stem} cell {i}: show a verdict with v.show(key, mutant=...), not print(v)")
        asserted = len(re.findall(r"assert \w+, \w+\.failures", source))
        shown = len(re.findall(r"\.show\(", source))
        assert shown >= asserted, f"{path.stem} cell {i}: an asserted verdict is not shown with v.show"


def test_verdict_lines_fit_the_page():
    v = Verdict("a claim that is long enough to need more than one line of the page when it is "
                "printed after the word PASSED")
    for k in range(20):
        v.note(f"seed {k}: " + "a number 0.1234, " * 9)
    v.require(False, "and a failure message that is itself longer than a hundred characters " * 2)
    text = str(v)
    assert max(map(len, text.splitlines())) <= 100
    assert text.startswith("verdict FAILED: a claim") and "… and 9 more" in text
    assert text.splitlines()[1].startswith("    ")  # a wrapped claim is indented


def test_verdict_record_and_show(capsys):
    v = Verdict("the claim")
    v.note("x 1.0")
    record = v.record("ch-key", mutant="SignGD in place of NormalizedGD")
    assert record == {"ch-key-claim": "the claim", "ch-key-status": "✓ PASSED", "ch-key-numbers": "x 1.0",
                      "ch-key-mutant": "SignGD in place of NormalizedGD"}
    v.require(False, "broken")
    measured = v.record("ch-m", scope="no theorem covers it")
    assert measured["ch-m-status"] == "does not hold" and measured["ch-m-scope"] == "no theorem covers it"
    assert measured["ch-m-numbers"].startswith("not so: broken")
    v.show_measured("ch-m", scope="no theorem covers it")  # outside a kernel: prints, glues nothing
    assert capsys.readouterr().out.startswith("measured, not proved (does not hold): the claim")
    with pytest.raises(ValueError, match="lowercase"):
        v.record("Bad Key", mutant="m")
    with pytest.raises(ValueError, match="mutant"):
        v.record("ch-key")


def test_table_is_text_and_html():
    t = plots.table([{"optimizer": "SignGD", "margin": 0.123456, "note": "a<b"},
                     {"optimizer": "NormalizedGD", "margin": 1.5, "note": ""}], digits=3)
    assert str(t).splitlines()[0].split() == ["optimizer", "margin", "note"]
    assert "0.123" in t and repr(t) == str(t)
    html = t._repr_html_()
    assert html.count("<tr>") == 3 and "a&lt;b" in html and '<td class="ib-num">0.123</td>' in html
    titled = plots.table(t.rows, title="final margins")
    assert str(titled).splitlines()[0] == "final margins"
    assert "<caption>final margins</caption>" in titled._repr_html_()


def test_on_every_seed_fails_when_one_seed_fails():
    from implicit_bias.verdicts import on_every_seed

    def seeded(ok):
        v = Verdict("ε is smallest in the own norm")
        v.note("ε 0.1")
        v.require(ok, "ε is not smallest")
        return v

    passed = on_every_seed({0: seeded(True), 1: seeded(True), 2: seeded(True)})  # the positive control
    assert passed and passed.claim == "on every seed (3): ε is smallest in the own norm"
    assert passed.lines == ["seed 0: ε 0.1", "seed 1: ε 0.1", "seed 2: ε 0.1"]
    failed = on_every_seed({0: seeded(True), 1: seeded(False), 2: seeded(True)})
    assert not failed and failed.failures == ["seed 1: ε is not smallest"]
    with pytest.raises(ValueError, match="one predicate"):
        on_every_seed({0: seeded(True), 1: Verdict("another claim")})
    with pytest.raises(ValueError, match="at least one draw"):
        on_every_seed({}, name="draw")
    draws = on_every_seed({0: seeded(True), 1: seeded(False)}, name="draw")  # data draws, labelled so
    assert draws.claim.startswith("on every draw (2): ") and draws.failures == ["draw 1: ε is not smallest"]
