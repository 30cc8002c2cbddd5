"""What a reader sees of every chapter: short visible code cells, exercises with solutions.

A visible code cell is one whose input is shown on the page: cells tagged ``hide-input``,
``remove-input`` or ``remove-cell`` are exempt. Its length is the number of lines of its
source, blank lines included (``len(source.splitlines())``). Longer cells are plumbing:
move the helper into the library or hide the cell.

An exercise is a markdown cell with a ``{exercise}`` directive and a ``:label:``; its
solution is a ``{solution-start} <label>`` markdown cell, at least one code cell (run by the
chapter tests at the smoke size), and a ``{solution-end}`` markdown cell.
"""

from __future__ import annotations

import ast
import pathlib
import re

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
MAX_LINES = 15
EXEMPT = {"hide-input", "remove-input", "remove-cell"}
MIN_EXERCISES = 2
# a cell that draws a figure (the book's figure helpers return it) must caption it
DRAWS = re.compile(r"plt\.subplots\(|plt\.figure\(|plots\.(margins|margin_bands|training|heatmap)\("
                   r"|\.figure\(\)")
#: Chapters whose figures may still carry their caption inside the image (plots.caption);
#: chapter 8 is converted by its owner, then remove it here.
IMAGE_CAPTIONS: set[str] = set()


def _read(path):
    return nbformat.read(path, as_version=4)


def visible_code_cells(nb):
    """(index, number of lines) of every code cell whose input a reader sees."""
    return [(i, len(c.source.splitlines())) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and not EXEMPT & set(c.metadata.get("tags", []))]


def exercises(nb):
    """label → list of the solution's code cells (None when the exercise has no solution)."""
    found, open_label, solutions = {}, None, {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for label in re.findall(r"```\{exercise\}[^\n]*\n:label:\s*(\S+)", cell.source):
                found[label] = i
            start = re.search(r"```\{solution-start\}\s+(\S+)", cell.source)
            if start:
                assert open_label is None, f"cell {i}: solution of {start.group(1)} inside {open_label}"
                open_label = start.group(1)
                solutions[open_label] = []
            if re.search(r"```\{solution-end\}", cell.source):
                assert open_label is not None, f"cell {i}: solution-end without solution-start"
                open_label = None
        elif cell.cell_type == "code" and open_label is not None:
            solutions[open_label].append(i)
    assert open_label is None, f"the solution of {open_label} is never closed"
    return {label: solutions.get(label) for label in found}


def test_there_are_chapters():
    assert len(CHAPTERS) >= 10


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_visible_code_cell_is_long(path):
    long = [(i, n) for i, n in visible_code_cells(_read(path)) if n > MAX_LINES]
    assert not long, (f"{path.stem}: visible code cells (index, lines) {long} exceed {MAX_LINES} lines; "
                      "move helpers into the library or tag a pure plotting cell hide-input")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_has_exercises_with_solutions(path):
    found = exercises(_read(path))
    assert len(found) >= MIN_EXERCISES, f"{path.stem}: {len(found)} exercise(s), want ≥ {MIN_EXERCISES}"
    for label, cells in found.items():
        assert label.startswith("ex-"), f"{path.stem}: exercise label {label!r} must start with ex-"
        assert cells, f"{path.stem}: exercise {label} has no solution with a code cell"


def defines_only(source: str) -> bool:
    """A cell that only defines functions or classes (or imports): it draws nothing when run."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    return bool(body) and all(isinstance(s, (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom))
                              for s in body)


def figure_options(cell) -> tuple[dict, dict]:
    """The myst-nb figure options (caption, name) and image options (alt) of a cell."""
    meta = cell.metadata.get("mystnb", {})
    return meta.get("figure", {}), meta.get("image", {})


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_figure_has_a_caption(path):
    """A cell that draws a figure carries a real caption, a name and alt text in its metadata
    (``{"mystnb": {"figure": {"caption", "name"}, "image": {"alt"}}}``): myst-nb makes its
    output a numbered figure with that caption, and the alt text describes the image."""
    cells = [(i, c) for i, c in enumerate(_read(path).cells) if c.cell_type == "code"]
    names = []
    for i, c in cells:
        figure, image = figure_options(c)
        if not figure and (not DRAWS.search(c.source) or defines_only(c.source)):
            continue
        if not figure and path.stem in IMAGE_CAPTIONS and "caption(" in c.source:
            continue  # the old way, until the chapter is converted
        assert len(figure.get("caption", "")) > 20 and figure.get("name", "").startswith("fig-"), (
            f"{path.stem} cell {i}: a figure needs metadata mystnb.figure.caption and a name fig-…")
        assert len(image.get("alt", "")) > 20, f"{path.stem} cell {i}: a figure needs mystnb.image.alt text"
        assert "plots.caption(" not in c.source, (
            f"{path.stem} cell {i}: the caption is in the metadata; do not draw it into the image too")
        names.append(figure["name"])
    assert len(names) == len(set(names)), f"{path.stem}: figure names repeat {names}"


@pytest.mark.parametrize("size", [(12, 3.2), (4.6, 4.0)])
def test_caption_is_inside_the_saved_image(size):
    """The caption is drawn inside the figure, below everything else, so a plain ``savefig``
    keeps it; it names the run size."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from implicit_bias import plots

    fig, axes = plt.subplots(1, 2, figsize=size)
    for ax in axes:
        ax.plot([1, 2, 3])
        ax.set_xlabel("step")
    fig.tight_layout()
    plots.caption(fig, "A long caption that has to wrap over more than one line in a narrow figure. " * 2)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    text = fig.texts[-1]
    box, page = text.get_window_extent(renderer), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 <= box.y0 and box.y1 <= page.y1
    assert all(ax.get_tightbbox(renderer).y0 >= box.y1 for ax in axes)
    assert "run size" in text.get_text()
    plt.close(fig)


def test_the_checks_catch_what_they_should():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("\n".join(["x = 1"] * 16)),
                nbformat.v4.new_code_cell("\n".join(["x = 1"] * 16), metadata={"tags": ["hide-input"]}),
                nbformat.v4.new_markdown_cell("```{exercise}\n:label: ex-a\nPredict.\n```"),
                nbformat.v4.new_markdown_cell("```{exercise}\n:label: ex-b\nPredict.\n```"),
                nbformat.v4.new_markdown_cell("```{solution-start} ex-a\n:class: dropdown\n```"),
                nbformat.v4.new_code_cell("assert True"),
                nbformat.v4.new_markdown_cell("```{solution-end}\n```")]
    assert [n for _, n in visible_code_cells(nb)] == [16, 1]
    assert defines_only("def f():\n    return plt.subplots()")
    assert not defines_only("fig, ax = plt.subplots()")
    assert exercises(nb) == {"ex-a": [5], "ex-b": None}
