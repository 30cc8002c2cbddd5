"""The Colab install cell installs ``main`` of the repository named in _config.yml: the one
reference the published repository carries. The reference must exist as a branch, and the
version in pyproject.toml and ``implicit_bias.__version__`` must agree."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("install_cell", ROOT / "scripts" / "install_cell.py")
install_cell = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(install_cell)


def init_version(text: str) -> str:
    return re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M).group(1)


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def test_versions_agree():
    version = install_cell.version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    assert init_version((ROOT / "lib" / "implicit_bias" / "__init__.py").read_text()) == version, (
        "lib/implicit_bias/__init__.py __version__ differs from pyproject.toml's version")


def test_install_cell_installs_main_from_the_configured_repository():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), f"not a GitHub repository URL: {url}"
    source = install_cell.cell_source(install_cell.repository_url())
    assert f'"implicit-bias[solvers,plots] @ git+{url}@main"' in source


def test_install_reference_is_a_published_branch():
    """The reference the Colab cell installs exists in this clone as a branch (CI clones
    ``main``, the one branch published). A tag fails: tags are not published, so a cell
    pinned to one installs nothing."""
    if shutil.which("git") is None or git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout: no branches to ask")
    ref = install_cell.REFERENCE
    branches = [f"refs/heads/{ref}", f"refs/remotes/origin/{ref}"]
    assert any(git("rev-parse", "--verify", "--quiet", b).returncode == 0 for b in branches), (
        f"the install cell names {ref!r}, which is not a branch of this repository")


def test_a_tag_is_not_a_published_reference(monkeypatch):
    """The mutant: the cell pinned to the release tag (as 0.4.0 did) fails the check above."""
    if shutil.which("git") is None or git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout")
    monkeypatch.setattr(install_cell, "REFERENCE", f"v{install_cell.version()}")
    with pytest.raises(AssertionError, match="not a branch"):
        test_install_reference_is_a_published_branch()
