"""Put (or refresh) the install cell at the top of every chapter in _toc.yml.

The cell installs the library when it is missing (a fresh Colab runtime) from the
repository named in _config.yml, at ``main``: the one reference the published repository
carries (tags are not published), and the branch the site is built from, so a reader gets
the library the book was built with; everywhere else it does nothing. Run it after changing
the repository URL: ``.venv/bin/python scripts/install_cell.py``. tests/test_book.py checks
that every chapter carries the current cell; tests/test_release.py that the reference exists
as a branch and that the versions and the URL agree.
"""

from __future__ import annotations

import pathlib
import re
import sys

import nbformat
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
MARKER = "# Colab or a fresh Jupyter: install the book's library if it is missing."


def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def version() -> str:
    """The library's version, from pyproject.toml (the one source the release tag follows)."""
    text = (ROOT / "pyproject.toml").read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    return re.search(r'^version\s*=\s*"([^"]+)"', project, re.M).group(1)


#: What the cell installs: a branch of the published repository (only ``main`` is published).
REFERENCE = "main"


def chapters() -> list[pathlib.Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").exists()]


def cell_source(url: str, reference: str = REFERENCE) -> str:
    return "\n".join([
        MARKER,
        "import importlib.util",
        "import subprocess",
        "import sys",
        "",
        'if importlib.util.find_spec("implicit_bias") is None:',
        # the extras: the chapters draw figures (plots) and solve max-margin problems (solvers)
        f'    package = "implicit-bias[solvers,plots] @ git+{url}@{reference}"',
        '    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", package])',
    ])


def main() -> int:
    source = cell_source(repository_url())
    for path in chapters():
        nb = nbformat.read(path, as_version=4)
        existing = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(MARKER)]
        if existing:  # refresh in place (keeps the cell id stable)
            existing[0].source = source
        else:
            first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
            nb.cells.insert(first_code, nbformat.v4.new_code_cell(source))
            existing = [nb.cells[first_code]]
        existing[0].metadata["tags"] = ["remove-cell"]  # not shown on the static site
        nbformat.write(nb, path)
        print("install cell in", path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
