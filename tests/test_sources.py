"""Source hygiene: what the chapters say must reach the reader intact.

A lost backslash in generated JSON turns ``\\rVert`` into a carriage return and ``\\approx``
into a BEL: the formula still "renders", wrongly, and no build warning says so. So every
page in _toc.yml (notebook cells and Markdown files) is checked for control characters and
for TeX left in the prose (maths the parser did not take as maths: a ``$$…$$`` inside a
paragraph shifts every later pair of dollars), and every formula in its Markdown —
``$…$``, ``$$…$$``, ``\\begin{…}`` blocks, ``{math}``, and those inside directives such as
``{prf:theorem}`` or ``{exercise}`` — is parsed by MathJax's own TeX input
(scripts/tex_check.cjs, run by node with the packages the site has). Formulas are found
with MyST's own Markdown parser and the extensions in _config.yml, so this sees the spans
the book sees.
"""

from __future__ import annotations

import functools
import json
import pathlib
import re
import shutil
import subprocess

import nbformat
import pytest
import yaml
from markdown_it.renderer import RendererHTML
from myst_parser.config.main import MdParserConfig
from myst_parser.parsers.mdit import create_md_parser

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEX_CHECK = ROOT / "scripts" / "tex_check.cjs"
#: Directives whose body is not Markdown (code, raw text, a bibliography): no maths to find.
NOT_MARKDOWN = {"code", "code-block", "code-cell", "sourcecode", "literalinclude", "raw", "bibliography",
                "glue", "eval-rst", "mermaid", "csv-table", "list-table"}
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # everything below space but \t and \n, and DEL


def sources() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"], *(c["file"] for part in toc["parts"] for c in part["chapters"])]
    return [f"{f}{ext}" for f in files for ext in (".ipynb", ".md") if (ROOT / f"{f}{ext}").exists()]


def cells(path: pathlib.Path) -> list[tuple[str, str, str]]:
    """(where, cell type, source) for a notebook's cells or a Markdown file."""
    if path.suffix == ".md":
        return [(path.name, "markdown", path.read_text())]
    nb = nbformat.read(path, as_version=4)
    return [(f"cell {i}", c.cell_type, c.source) for i, c in enumerate(nb.cells)]


@functools.cache
def parser():
    extensions = yaml.safe_load((ROOT / "_config.yml").read_text())["parse"]["myst_enable_extensions"]
    return create_md_parser(MdParserConfig(enable_extensions=set(extensions)), RendererHTML)


def _strip_options(body: str) -> str:
    """A directive's body without its ``:key: value`` lines or ``---`` YAML block."""
    lines = body.split("\n")
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), 0)
        return "\n".join(lines[end + 1:])
    while lines and re.match(r"^:[\w-]+:", lines[0]):
        lines.pop(0)
    return "\n".join(lines)


def math_spans(markdown: str) -> list[tuple[str, bool]]:
    """Every formula of a Markdown text as (TeX, display), directive bodies included."""
    return _walk(markdown)[0]


def stray_tex(markdown: str) -> list[str]:
    """Prose that holds a TeX macro or a ``$``: maths the parser did not see as maths, as
    when ``$$…$$`` sits inside a paragraph and shifts every later pair of dollars."""
    escaped_dollar = "\\$" in markdown  # an intended dollar sign is written \$
    return [text for text in _walk(markdown)[1]
            if re.search(r"\\[A-Za-z]{2,}", text) or ("$" in text and not escaped_dollar)]


def _walk(markdown: str) -> tuple[list[tuple[str, bool]], list[str]]:
    spans: list[tuple[str, bool]] = []
    prose: list[str] = []
    for token in parser().parse(markdown):
        if token.type in ("math_block", "math_block_label", "amsmath"):
            spans.append((token.content, True))
        elif token.type in ("fence", "colon_fence"):
            match = re.match(r"^\{([\w:.-]+)\}\s*(.*)$", token.info.strip())
            if not match or match.group(1) in NOT_MARKDOWN:
                continue
            name, argument = match.groups()
            body = _strip_options(token.content)
            if name == "math":  # as Sphinx does: equations separated by blank lines
                spans += [(part, True) for part in re.split(r"\n\s*\n", body) if part.strip()]
            else:
                for inner in (argument, body):
                    inner_spans, inner_prose = _walk(inner)
                    spans += inner_spans
                    prose += inner_prose
        for child in token.children or []:
            if child.type in ("math_inline", "math_inline_double"):
                spans.append((child.content, child.type == "math_inline_double"))
            elif child.type == "myst_role" and child.meta.get("name") == "math":
                spans.append((child.content, False))
            elif child.type == "text":
                prose.append(child.content)
    return spans, prose


def control_characters(text: str) -> str:
    """The control characters in a text, as Python writes them (e.g. ``'\\r', '\\x07'``)."""
    return ", ".join(sorted({repr(ch) for ch in CONTROL.findall(text)}))


def _node_and_mathjax() -> str | None:
    """Why the TeX check cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed (Debian/apt: nodejs); the TeX parse check needs it"
    if not (ROOT / "node_modules" / "mathjax-full" / "package.json").exists():
        return "node_modules/mathjax-full is missing: run scripts/setup.sh (it runs `npm ci`)"
    return None


def tex_errors(spans: list[tuple[str, bool]]) -> list[str | None]:
    """MathJax's parse error for each formula, or None where it parses."""
    if not spans:
        return []
    payload = json.dumps([{"tex": tex, "display": display} for tex, display in spans])
    done = subprocess.run(["node", str(TEX_CHECK)], input=payload, capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=True)
    return json.loads(done.stdout)


def problems(path: pathlib.Path, check_tex: bool = True) -> list[str]:
    """Everything wrong with one source: control characters anywhere, maths the parser
    left in the prose, and formulas that do not parse."""
    found, spans, where_of = [], [], []
    for where, kind, source in cells(path):
        if bad := control_characters(source):
            found.append(f"{where} ({kind}): control characters {bad} (a lost backslash?)")
        if kind == "markdown":
            for text in stray_tex(source):
                found.append(f"{where}: maths outside its dollars (a $$ inside a paragraph?): {text[:80]!r}")
            for tex, display in math_spans(source):
                spans.append((tex, display))
                where_of.append(where)
    if check_tex:
        for where, (tex, _), error in zip(where_of, spans, tex_errors(spans)):
            if error:
                found.append(f"{where}: TeX does not parse: {error}: {tex.strip()[:120]!r}")
    return found


SOURCES = sources()


@pytest.mark.parametrize("name", SOURCES)
def test_no_control_characters_nor_stray_tex(name):
    bad = problems(ROOT / name, check_tex=False)
    assert not bad, f"{name}:\n" + "\n".join(bad)


@pytest.mark.parametrize("name", SOURCES)
def test_every_formula_parses(name):
    if reason := _node_and_mathjax():
        pytest.skip(reason)
    spans = sum((math_spans(s) for _, kind, s in cells(ROOT / name) if kind == "markdown"), [])
    bad = [p for p in problems(ROOT / name) if "TeX" in p]
    assert not bad, f"{name}: {len(bad)} of {len(spans)} formulas fail:\n" + "\n".join(bad)


def test_finds_formulas_where_myst_does():
    text = "\n".join([
        r"Inline $\lVert x \rVert_2$, a role {math}`y^2`, not in code `$z$`.",
        "",
        "$$",
        r"\gamma = \min_i y_i f(x_i)",
        "$$ (eq-margin)",
        "",
        r"\begin{align} a &= b \\ c &= d \end{align}",
        "",
        "```{prf:theorem} Margins in $\\ell_\\infty$",
        ":label: thm-x",
        "",
        r"Body $\theta$.",
        "```",
        "",
        "```{code-cell} python",
        "price = '$5 and $6'",
        "```",
    ])
    found = [tex.strip() for tex, _ in math_spans(text)]
    assert found == [r"\lVert x \rVert_2", "y^2", r"\gamma = \min_i y_i f(x_i)",
                     r"\begin{align} a &= b \\ c &= d \end{align}", r"\ell_\infty", r"\theta"]


def test_a_broken_chapter_fails(tmp_path):
    """The mutant: a chapter with the ``\\rVert``/``\\approx`` bug, a formula that does not
    parse, an unknown macro inside a theorem, and a ``$$…$$`` inside a paragraph (which
    shifts the later dollar pairs). Each must be reported; the fine cells must not."""
    if reason := _node_and_mathjax():
        pytest.skip(reason)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(r"Fine: $\lVert \theta \rVert_2 \approx 1$ and $\mathbb{R}^d$."),
        nbformat.v4.new_markdown_cell("Lost backslashes: $\\lVert u \rVert \x07pprox 1$."),
        nbformat.v4.new_markdown_cell(r"Unbalanced: $$\frac{1}{2$$"),
        nbformat.v4.new_markdown_cell("```{prf:theorem} T\n:label: thm-bad\n\n"
                                      "Then $\\margin(\\theta)$.\n```"),
        nbformat.v4.new_code_cell("x = 1  # fine"),
        nbformat.v4.new_markdown_cell("at the best point,\n$$\\gamma = \\min_i q_i,$$\ncomputed by `f` over "
                                      "$\\log c$ otherwise. The ratio $\\gamma_{fn}/\\gamma$ is the gain."),
        nbformat.v4.new_markdown_cell("A price of \\$5 is prose, and so is $x$."),
    ]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    found = problems(path)
    assert "cell 1 (markdown): control characters '\\r', '\\x07' (a lost backslash?)" in found, found
    assert any(p.startswith("cell 2: TeX does not parse") for p in found), found
    assert any(p.startswith("cell 3: TeX does not parse") and "\\margin" in p for p in found), found
    assert any(p.startswith("cell 5: maths outside its dollars") and "\\log c" in p for p in found), found
    assert not any(p.startswith(("cell 0", "cell 6")) for p in found), found
