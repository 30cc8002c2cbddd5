"""The book's structure: every chapter in the table of contents exists, comes in the order
of its number, installs the library's release in Colab from the repository named in
_config.yml, says which run size is active, and is stored without outputs. (Control
characters and TeX are checked in tests/test_sources.py, the release tag in
tests/test_release.py.)"""

from __future__ import annotations

import importlib.util
import pathlib
import re

import nbformat
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("install_cell", ROOT / "scripts" / "install_cell.py")
install_cell = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(install_cell)

TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
FILES = [c["file"] for part in TOC["parts"] for c in part["chapters"]]
NOTEBOOKS = [f for f in FILES if f.startswith("chapters/")]


def test_every_toc_entry_exists():
    for f in FILES:
        assert (ROOT / f"{f}.ipynb").exists() or (ROOT / f"{f}.md").exists(), f
    on_disk = {f"chapters/{p.stem}" for p in (ROOT / "chapters").glob("*.ipynb")}
    assert on_disk == set(NOTEBOOKS), "every chapter notebook must be in _toc.yml"


def test_toc_follows_chapter_numbers():
    numbers = [int(re.match(r"chapters/(\d+)_", f).group(1)) for f in NOTEBOOKS]
    assert numbers == sorted(numbers), f"_toc.yml lists chapters out of order: {NOTEBOOKS}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_chapter_installs_reports_its_size_and_has_no_outputs(name):
    nb = nbformat.read(ROOT / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source == install_cell.cell_source(install_cell.repository_url()), (
        f"{name}: run `python scripts/install_cell.py` to refresh the install cell")
    assert "remove-cell" in code[0].metadata.get("tags", [])
    assert any("ib.profile()" in c.source for c in code[1:3]), f"{name} must print its run size early"
    assert all(not c.outputs and c.execution_count is None for c in code), f"{name} has stored outputs"
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_the_build_executes_every_chapter_longest_first():
    """scripts/execute_chapters.py runs every notebook of the toc (none left for the build to
    execute serially), the chapters measured longest first; _config.yml reads its cache."""
    spec = importlib.util.spec_from_file_location("execute", ROOT / "scripts" / "execute_chapters.py")
    execute = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(execute)
    files = [f.relative_to(ROOT).with_suffix("").as_posix() for f in execute.chapters()]
    assert sorted(files) == sorted(NOTEBOOKS)
    assert files[0] == "chapters/08_hybrid" and files[-1] == "chapters/01_setting"
    assert execute.CACHE == ROOT / "_build" / ".jupyter_cache"
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "cache" and not config["execute"].get("cache")


def test_the_execution_cache_is_emptied_when_the_library_or_run_size_changes(tmp_path, monkeypatch):
    """The cache keys a chapter by its code; everything else its outputs depend on is in
    inputs_key: a library edit or another run size changes it (every chapter runs again), a
    chapter's edit does not (jupyter-cache reruns that chapter alone, a prose edit nothing)."""
    spec = importlib.util.spec_from_file_location("execute", ROOT / "scripts" / "execute_chapters.py")
    execute = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(execute)
    for name, text in [("lib/implicit_bias/train.py", "A = 1\n"), ("requirements.txt", "torch\n"),
                       ("pyproject.toml", "[project]\n"), ("results/08/abc.json", "{}\n"),
                       ("chapters/08_hybrid.ipynb", "{}\n")]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(execute, "ROOT", tmp_path)
    monkeypatch.setenv("IMPLICIT_BIAS_PROFILE", "book")
    key = execute.inputs_key()
    (tmp_path / "chapters/08_hybrid.ipynb").write_text('{"cells": []}\n')
    assert execute.inputs_key() == key
    for name in ("lib/implicit_bias/train.py", "requirements.txt", "results/08/abc.json"):
        (tmp_path / name).write_text((tmp_path / name).read_text() + " ")
        assert execute.inputs_key() != key, name
        key = execute.inputs_key()
    monkeypatch.setenv("IMPLICIT_BIAS_PROFILE", "smoke")
    assert execute.inputs_key() != key


def test_a_chapter_that_fails_once_is_executed_again_and_one_that_always_fails_is_reported(
        tmp_path, monkeypatch, capsys):
    """A kernel whose reply is lost on a loaded machine leaves its chapter failed at the
    timeout; the build executes such a chapter once more, alone. The mutant: a chapter that
    fails every time still fails the build, with its traceback."""
    spec = importlib.util.spec_from_file_location("execute", ROOT / "scripts" / "execute_chapters.py")
    execute = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(execute)
    marker = tmp_path / "tried"
    flaky = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"import pathlib\nfirst = not pathlib.Path({str(marker)!r}).exists()\n"
        f"pathlib.Path({str(marker)!r}).touch()\nassert not first, 'the first try fails'")])
    broken = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise RuntimeError('always')")])
    for name, nb in (("flaky", flaky), ("broken", broken)):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    monkeypatch.setattr(execute, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(execute, "inputs_key", lambda: "key")
    monkeypatch.setattr(execute, "ROOT", tmp_path)
    monkeypatch.setattr(execute, "chapters", lambda: [tmp_path / "flaky.ipynb"])
    assert execute.main() == 0 and marker.exists()
    assert "executing them again" in capsys.readouterr().err
    monkeypatch.setattr(execute, "chapters", lambda: [tmp_path / "broken.ipynb"])
    assert execute.main() == 1
    assert "broken.ipynb failed" in capsys.readouterr().err
