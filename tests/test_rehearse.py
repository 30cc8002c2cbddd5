"""The paper size, rehearsed on a CPU: IMPLICIT_BIAS_MAX_STEPS caps every run, and
scripts/rehearse.py runs chapters at a run size, telling verdicts (which cannot hold after
a few steps) from errors (which a GPU run would meet)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import nbformat
import pytest
from implicit_bias import config, data
from implicit_bias.train import Run, train

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("raw, expected", [("", None), ("3", 3), (" 12 ", 12), ("0", ValueError),
                                           ("-1", ValueError), ("3.5", ValueError), ("three", ValueError)])
def test_max_steps_reads_a_positive_integer(monkeypatch, raw, expected):
    monkeypatch.setenv(config.MAX_STEPS_ENV, raw)
    if expected is ValueError:
        with pytest.raises(ValueError, match="IMPLICIT_BIAS_MAX_STEPS"):
            config.max_steps()
    else:
        assert config.max_steps() == expected


def test_the_cap_cuts_every_run_and_says_so(monkeypatch):
    X, y = data.gaussian(n=20, d=4, seed=0)
    runs = [Run("NormalizedGD", 0.1, 50), Run("SignGD", 0.01, 2)]
    monkeypatch.setenv(config.MAX_STEPS_ENV, "3")
    with pytest.warns(RuntimeWarning, match="cut to at most 3 steps"):
        capped = train(runs, (X, y), progress=False)
    assert [h.steps[-1] for h in capped] == [3, 2] and capped[0].run.steps == 3
    monkeypatch.delenv(config.MAX_STEPS_ENV)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no cap, no warning
        (full,) = train(runs[:1], (X, y), progress=False)
    assert full.steps[-1] == 50


def rehearse(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "rehearse.py"), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def notebook(tmp_path: Path, name: str, cells: list[str]) -> Path:
    path = tmp_path / name
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    return path


def test_a_failed_verdict_is_counted_and_an_error_is_reported(tmp_path):
    setup = "import implicit_bias as ib\nassert ib.profile() == 'paper' and ib.config.max_steps() == 3"
    # a verdict after the library warned (the warning names a library file: still the cell's)
    warned = "import warnings\nwarnings.warn_explicit('cut', RuntimeWarning, '/x/implicit_bias/train.py', 9)"
    good = notebook(tmp_path, "good.ipynb", [setup, "assert 1 + 1 == 3, 'a verdict'",
                                             warned + "\nassert 1 + 1 == 3, 'a verdict'", "x = 1"])
    bad = notebook(tmp_path, "bad.ipynb", [setup, "raise RuntimeError('shapes (3, 4) and (5, 6)')", "x = 1"])
    (tmp_path / "helper.py").write_text("def check():\n    assert False, 'inside a library'\n")
    inside = notebook(tmp_path, "inside.ipynb", [setup, f"import sys\nsys.path.insert(0, {str(tmp_path)!r})",
                                                 "import helper\nhelper.check()", "x = 1"])
    ok = rehearse(str(good))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "good.ipynb" in ok.stdout and "2 verdict(s) failed" in ok.stdout and ": ok" in ok.stdout
    failed = rehearse(str(bad))
    assert failed.returncode == 1
    assert "ERROR in cell 1" in failed.stdout and "RuntimeError: shapes (3, 4) and (5, 6)" in failed.stdout
    library = rehearse(str(inside))
    assert library.returncode == 1
    assert "ERROR in cell 2" in library.stdout and "inside a library" in library.stdout


def test_runs_that_have_not_separated_stop_the_chapter_without_an_error(tmp_path):
    cells = ["import implicit_bias as ib", "raise ib.margins.NotSeparatingError('min q = -0.3')", "x = 1"]
    out = rehearse(str(notebook(tmp_path, "short.ipynb", cells)))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "stopped at cell 1" in out.stdout and "have not separated the data in 3 steps" in out.stdout


def test_a_chapter_runs_at_the_paper_size_in_a_few_steps():
    out = rehearse(str(ROOT / "chapters" / "01_setting.ipynb"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rehearsing the paper size, every run cut to 3 steps" in out.stdout
    assert "1 of 1 chapters ran without an error" in out.stdout
