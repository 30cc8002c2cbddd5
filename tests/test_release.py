"""The Colab install cell pins a release: the tag ``v<version>`` in the repository named in
_config.yml. The tag, the version in pyproject.toml, ``implicit_bias.__version__`` and the
URL must agree, or a reader in Colab gets a different library from the one the book ran."""

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
    assert install_cell.release_tag() == f"v{version}"


def test_install_cell_pins_the_release_from_the_configured_repository():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), f"not a GitHub repository URL: {url}"
    source = install_cell.cell_source(install_cell.repository_url())
    assert f'"implicit-bias[solvers,plots] @ git+{url}@v{install_cell.version()}"' in source


def test_release_tag_matches_the_version():
    """The tag exists and, at the tag, pyproject.toml and __init__.py carry this version.

    Skips only where there is no git history to ask (an unpacked archive) or the clone
    carries no tags at all (``git clone`` of a mirror without them); once any tag exists,
    a version without its tag fails, so a version bump must come with its tag."""
    if shutil.which("git") is None or git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout: no tags to compare")
    if not git("tag", "--list").stdout.strip():
        pytest.skip("this clone carries no tags (create one with `git tag -a v<version>`)")
    tag = install_cell.release_tag()
    assert git("rev-parse", "--verify", "--quiet", f"refs/tags/{tag}").returncode == 0, (
        f"no tag {tag} for version {install_cell.version()}: "
        f"`git tag -a {tag} -m 'implicit-bias {install_cell.version()}'` on the release commit")
    at_tag = git("show", f"{tag}:pyproject.toml").stdout
    assert re.search(rf'^version\s*=\s*"{re.escape(install_cell.version())}"', at_tag, re.M), (
        f"pyproject.toml at {tag} has another version")
    assert init_version(git("show", f"{tag}:lib/implicit_bias/__init__.py").stdout) == install_cell.version()
