"""The command line: ``python -m implicit_bias sweep FILE.toml`` trains a TOML sweep into a
store with a progress bar over runs (and resumes it), ``report STORE`` prints the mean ±
interval over seeds per optimizer and norm and saves the figures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from implicit_bias import store, sweep
from implicit_bias import train as training
from implicit_bias.__main__ import main

ROOT = Path(__file__).resolve().parent.parent

SWEEP = """
store = "out"
norms = ["l2", "linf"]
log_points = 20
directions = false

[data]
set = "digits_even_odd"
n = 120

[[runs]]
optimizer = ["NormalizedGD", "SignGD"]
lr = {smoke = 0.01, book = 0.02}
schedule = 0.5
seeds = 3
steps = {smoke = 40, book = 400}
model = {kind = "two_layer", width = 8, activation = "relu2"}

[[runs]]
optimizer = "Adam"
lr = [0.01, 0.02]
seed = 0
steps = {smoke = 40, book = 400}
options = {betas = [0.9, 0.95]}
model = {kind = "two_layer", width = 8, activation = "relu2"}
"""


def cli(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "lib"), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "implicit_bias", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def test_a_sweep_file_is_a_product_of_runs_at_the_run_size(tmp_path, monkeypatch):
    (tmp_path / "s.toml").write_text(SWEEP)
    monkeypatch.setenv("IMPLICIT_BIAS_PROFILE", "smoke")
    spec = sweep.load(tmp_path / "s.toml")
    assert len(spec.runs) == 2 * 3 + 2 and spec.store == tmp_path / "out"
    assert {r.steps for r in spec.runs} == {40} and spec.runs[0].lr == 0.01
    assert [r.seed for r in spec.runs[:3]] == [0, 1, 2] and spec.runs[-1].options["betas"] == (0.9, 0.95)
    assert spec.options == {"norms": ["l2", "linf"], "log_points": 20, "directions": False}
    assert spec.data["data"][0].shape == (120, 64)
    monkeypatch.setenv("IMPLICIT_BIAS_PROFILE", "book")
    assert {r.steps for r in sweep.load(tmp_path / "s.toml").runs} == {400}


@pytest.mark.parametrize("text, match", [
    ("[[runs]]\noptimizer = 'SignGD'\nlr = 0.1\nsteps = 5\nwarmup = 3\n", "unknown run fields"),
    ("[[runs]]\noptimizer = 'SignGD'\nlr = -1.0\nsteps = 5\n", "[Ll]earning rate"),
    ("stor = 'x'\n[[runs]]\noptimizer = 'SignGD'\nlr = 0.1\nsteps = 5\n", "unknown keys"),
    ("[data]\nset = 'nope'\n[[runs]]\noptimizer = 'SignGD'\nlr = 0.1\nsteps = 5\n", "Unknown data set"),
    ("store = 'x'\n", "no \\[\\[runs\\]\\]"),
])
def test_a_bad_sweep_file_is_refused_before_training(tmp_path, text, match):
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(ValueError, match=match):
        sweep.load(tmp_path / "s.toml")


def test_sweep_then_report_from_the_command_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "s.toml").write_text(SWEEP)
    done = cli("sweep", "s.toml", "--profile", "smoke", cwd=tmp_path)  # a real command line
    assert done.returncode == 0, done.stderr
    assert "8/8" in done.stderr and "run/s" in done.stderr  # tqdm's bar over runs
    assert "8 runs stored in out" in done.stdout
    assert len(store.RunStore(tmp_path / "out")) == 8
    # The same, in this process: all found, nothing to train; then the report.
    monkeypatch.setenv("IMPLICIT_BIAS_PROFILE", "smoke")
    monkeypatch.setattr(training, "train_chunk", lambda *a, **k: pytest.fail("trained again"))
    assert main(["sweep", str(tmp_path / "s.toml")]) == 0
    assert "8/8" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "8 runs in 4 groups" in lines[0]
    header = lines[1].split()
    assert header[:4] == ["runs", "seeds", "log10", "loss"] and header[-2:] == ["l2", "linf"]
    row = next(line for line in lines if line.strip().startswith("SignGD"))
    assert " 3 " in row and row.count("±") == 3  # 3 seeds: mean ± interval for loss, l2, linf
    assert any(line.strip().startswith("Adam (lr=0.01)") for line in lines)
    for name in ("final_margins", "margins", "loss"):
        path = tmp_path / "out" / "report" / f"{name}.png"
        assert path.exists() and path.read_bytes()[:4] == b"\x89PNG"


def test_errors_are_reported_without_a_traceback(tmp_path, capsys):
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no stored runs" in capsys.readouterr().err
    (tmp_path / "s.toml").write_text("[[runs]]\noptimizer = 'SignGD'\nlr = 0.1\nsteps = 5\n")
    assert main(["sweep", str(tmp_path / "s.toml")]) == 2
    assert "no store" in capsys.readouterr().err
