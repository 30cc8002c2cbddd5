"""Resume: a sweep killed mid-way (SIGKILL or Ctrl-C, in a real subprocess) and run again
ends with the results of an uninterrupted sweep, to the bit; finished runs are not
trained again."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import implicit_bias as ib
import numpy as np
import pytest
import torch
from implicit_bias import store
from implicit_bias import train as training

ROOT = Path(__file__).resolve().parent.parent

# The sweep, as the subprocess and this test both build it: 9 runs in stacks of 2.
SWEEP = """
import implicit_bias as ib
from implicit_bias.train import Run, train
DATA = ib.data.digits_even_odd(n=200)
NET = {"kind": "two_layer", "width": 16, "activation": "relu2"}
RUNS = [Run(o, lr, 200, schedule=0.5, seed=s, model=NET)
        for o, lr in [("NormalizedGD", 0.5), ("SignGD", 0.01), ("Adam", 0.01)] for s in range(3)]
OPTIONS = dict(norms=("l2", "linf"), max_batch=2, progress=False, directions=4)
"""


# In the subprocess only: Ctrl-C raises KeyboardInterrupt as in a terminal (a pytest-xdist
# worker's children inherit SIGINT ignored: CI saw all 9 runs stored after the Ctrl-C), and
# each stored run takes 0.3 s more, so the signal arrives mid-sweep on a loaded machine.
# The runs are unchanged.
SLOW_SAVES = """
import signal
import time
signal.signal(signal.SIGINT, signal.default_int_handler)  # an xdist worker's child ignores SIGINT
from implicit_bias import store as _store
_save = _store.RunStore.save
def _slow_save(self, *args, **kwargs):
    out = _save(self, *args, **kwargs)
    time.sleep(0.3)
    return out
_store.RunStore.save = _slow_save
"""


@functools.cache
def uninterrupted():
    runs, data, options = sweep()
    return training.train(runs, data, **options)


def sweep():
    scope = {}
    exec(SWEEP, scope)
    return scope["RUNS"], scope["DATA"], scope["OPTIONS"]


def interrupted(folder: Path, sig) -> int:
    """Start the sweep in a subprocess, send it ``sig`` once its first runs are stored,
    and return how many runs it had stored."""
    code = SWEEP + SLOW_SAVES + f"train(RUNS, DATA, store={str(folder)!r}, **OPTIONS)\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "lib")}
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    runs = folder / "runs"
    deadline = time.monotonic() + 50
    while not (runs.exists() and any(runs.glob("*.npz"))):
        assert child.poll() is None, f"the sweep ended before it could be killed: {child.stderr.read()}"
        assert time.monotonic() < deadline, "no run was stored in 50 s"
        time.sleep(0.01)
    child.send_signal(sig)
    child.wait(timeout=30)
    stored = len(list(runs.glob("*.npz")))
    errors = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    assert stored < 9, f"the sweep finished before the signal landed; its stderr:\n{errors[-2000:]}"
    return stored


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_a_killed_sweep_resumes_to_the_results_of_an_uninterrupted_one(tmp_path, sig, monkeypatch):
    runs, data, options = sweep()
    done = interrupted(tmp_path, sig)
    assert 1 <= done < len(runs), done  # killed mid-sweep
    assert all(not p.name.endswith(".tmp") or p.name.startswith(".") for p in (tmp_path / "runs").iterdir())
    trained = []
    real = training.train_chunk
    monkeypatch.setattr(training, "train_chunk", lambda rs, *a, **k: trained.extend(rs) or real(rs, *a, **k))
    resumed = training.train(runs, data, store=tmp_path, **options)
    # Only the chunks (stacks of 2, written in order) not wholly stored are trained again.
    assert len(trained) == len(runs) - 2 * (done // 2)
    whole = uninterrupted()
    for a, b in zip(whole, resumed, strict=True):
        assert a.run == b.run
        for name in ("steps", "log_loss", "param_norm", "directions", "direction_steps"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert all(np.array_equal(a.margins[n], b.margins[n]) for n in a.margins)
        assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    # Run again: everything is found, nothing is trained.
    trained.clear()
    again = training.train(runs, data, store=tmp_path, **options)
    assert trained == [] and again.keys == resumed.keys
    assert len(store.RunStore(tmp_path)) == len(runs)
    assert ib.__version__  # the store records it, the key does not hold it (test_store.py)
