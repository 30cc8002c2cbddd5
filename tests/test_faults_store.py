"""Faults of the store, in real processes (issue 28, item 8): a writer SIGKILLed again and
again at random moments leaves only whole files, and the resumed sweep equals an
uninterrupted one; two writers in one store at once leave every run whole and equal to a
single process's; a full disk ends the command line with one line naming the file and
what to do, and leaves no partial file; a store that cannot be written is refused in one
line before anything trains. (A killed sweep resuming: test_resume.py; a diverging run, a
killed pool worker, Ctrl-C: test_faults_sweep.py; damaged and stale files, an unwritable
store from Python: test_store_damage.py.)"""

from __future__ import annotations

import functools
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from implicit_bias import store
from implicit_bias import train as training
from implicit_bias.__main__ import main

ROOT = Path(__file__).resolve().parent.parent

# Runs of about 0.6 MB each, one per chunk (a stack of one: any subset of them trains to
# the same bits), so that a good part of a sweep's time is spent writing files.
SWEEP = """
import implicit_bias as ib
from implicit_bias.train import Run, train
DATA = ib.data.gaussian(n=50, d=64, seed=0)
NET = {"kind": "two_layer", "width": 64, "activation": "relu2"}
RUNS = [Run("SignGD", 0.01, 30, seed=s, model=NET) for s in range(32)]
OPTIONS = dict(norms=("l2",), log_points=30, max_batch=1, progress=False)
"""


def sweep():
    scope = {}
    exec(SWEEP, scope)
    return scope["RUNS"], scope["DATA"], scope["OPTIONS"]


@functools.cache
def uninterrupted():
    runs, data, options = sweep()
    return training.train(runs, data, **options)


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "lib"), "MPLBACKEND": "Agg",
            "PYTHONUNBUFFERED": "1"}


# The writers are forked from one server that has imported torch and drawn the data once
# (a fresh interpreter takes seconds to import torch): each is a real process, killed or
# run as any other. ``start EXPR FOLDER`` forks a writer training EXPR (SWEEP's names) into
# the store FOLDER and answers its pid; ``wait PID`` answers its wait status.
SERVER = SWEEP + """
import os, sys, traceback
for line in sys.stdin:
    command, *args = line.split()
    if command == "wait":
        print(os.waitpid(int(args[0]), 0)[1], flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        try:
            train(eval(args[0]), DATA, store=args[1], **OPTIONS)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    print(pid, flush=True)
"""


class Writers:
    """The writers' server (see SERVER)."""

    def __init__(self, log: Path):
        self.log = open(log, "w")  # noqa: SIM115 - closed by close()
        self.server = subprocess.Popen([sys.executable, "-c", SERVER], env=env(), text=True,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)

    def ask(self, line: str) -> int:
        self.server.stdin.write(line + "\n")
        self.server.stdin.flush()
        answer = self.server.stdout.readline()
        assert answer, f"the writers' server died: {Path(self.log.name).read_text()}"
        return int(answer)

    def start(self, folder: Path, runs: str = "RUNS") -> int:
        """A writer training ``runs`` (an expression without spaces) into ``folder``: its pid."""
        return self.ask(f"start {runs} {folder}")

    def wait(self, pid: int) -> int:
        """``pid``'s wait status, once it ended."""
        return self.ask(f"wait {pid}")

    def close(self):
        self.server.stdin.close()
        self.server.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def writers(tmp_path_factory):
    w = Writers(tmp_path_factory.mktemp("writers") / "stderr.txt")
    yield w
    w.close()


def stored_files(folder: Path) -> list[Path]:
    return sorted((folder / "runs").glob("*.npz")) if (folder / "runs").exists() else []


def assert_whole(folder: Path) -> int:
    """Every run file of the store loads whole; anything else in runs/ is a writer's
    temporary file (``.<name>.tmp``, never read as a run). Returns the run files' count."""
    s = store.RunStore(folder)
    files = stored_files(folder)
    for path in files:
        s.load(path, expected=path.stem)
    others = [p.name for p in (folder / "runs").iterdir() if p.suffix != ".npz"]
    assert all(name.startswith(".") and name.endswith(".tmp") for name in others), others
    return len(files)


def assert_equal(a, b) -> None:
    assert a.run == b.run
    for name in ("steps", "log_loss", "param_norm", "directions"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert all(np.array_equal(a.margins[n], b.margins[n]) for n in a.margins)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))


def counting(monkeypatch) -> list:
    """The runs trained in this process from now on."""
    trained, real = [], training.train_chunk
    monkeypatch.setattr(training, "train_chunk", lambda rs, *a, **k: trained.extend(rs) or real(rs, *a, **k))
    return trained


# --- SIGKILL during writes ----------------------------------------------------------------


def temporary_files(folder: Path) -> set[str]:
    """The temporary files of run files being written (``.<key>.npz.<random>.tmp``)."""
    try:
        return {name for name in os.listdir(folder / "runs") if name.endswith(".tmp") and ".npz." in name}
    except FileNotFoundError:
        return set()


def kill_moment(folder: Path, mid_write: bool, rng: random.Random) -> None:
    """Wait for a moment to kill the writer of ``folder``: once it stored a new run, a
    random time later (up to 0.3 s); or (``mid_write``) the moment a run file's temporary
    file appears, the write under way."""
    files, tmps = len(stored_files(folder)), temporary_files(folder)
    deadline = time.monotonic() + 60
    while (temporary_files(folder) <= tmps) if mid_write else (len(stored_files(folder)) == files):
        assert time.monotonic() < deadline, "no run was written in 60 s"
        time.sleep(0 if mid_write else 0.002)
    if not mid_write:
        time.sleep(rng.uniform(0, 0.3))


def test_a_writer_killed_again_and_again_leaves_whole_files_and_resumes_to_the_same_results(
        tmp_path, monkeypatch, writers):
    rng = random.Random(28)
    runs, data, options = sweep()
    left = []  # the temporary files each kill left
    for kill in range(6):  # at random moments and in the middle of writes, alternately
        before, tmps = len(stored_files(tmp_path)), temporary_files(tmp_path)
        pid = writers.start(tmp_path)
        kill_moment(tmp_path, kill % 2 == 1, rng)
        os.kill(pid, signal.SIGKILL)
        status = writers.wait(pid)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL  # killed, not finished
        now = assert_whole(tmp_path)
        assert before <= now < len(runs), (kill, before, now)
        left.append(len(temporary_files(tmp_path) - tmps))
    assert any(left[1::2]), left  # a kill did land in a write (its file is then not a run file)
    trained = counting(monkeypatch)
    resumed = training.train(runs, data, store=tmp_path, **options)
    assert len(trained) == len(runs) - now  # every whole file was kept
    for a, b in zip(uninterrupted(), resumed, strict=True):
        assert_equal(a, b)
    assert assert_whole(tmp_path) == len(runs)


# --- two writers at once ------------------------------------------------------------------


def test_two_writers_in_one_store_leave_every_run_whole_and_equal(tmp_path, monkeypatch, writers):
    runs, data, options = sweep()
    # Overlapping sweeps, started together: runs 8 to 19 are written by both.
    pids = [writers.start(tmp_path, "RUNS[:20]"), writers.start(tmp_path, "RUNS[8:]")]
    assert [writers.wait(pid) for pid in pids] == [0, 0]
    assert assert_whole(tmp_path) == len(runs)
    trained = counting(monkeypatch)
    got = training.train(runs, data, store=tmp_path, **options)
    assert trained == []  # every file was found whole
    for a, b in zip(uninterrupted(), got, strict=True):
        assert_equal(a, b)


# --- a full disk, a store that cannot be written: the command line ------------------------

# Three small runs, then one whose file (about 3 MB) does not fit under the size limit.
GROWING = """
store = "out"
norms = "l2"
log_points = 20

[data]
set = "gaussian"
n = 40
d = 8

[[runs]]
optimizer = "SignGD"
lr = 0.01
steps = 20
seeds = 3
model = {kind = "two_layer", width = 4, activation = "relu2"}

[[runs]]
optimizer = "SignGD"
lr = 0.01
steps = 20
model = {kind = "two_layer", width = 2048, activation = "relu2"}
"""

#: The largest file the full-disk test's writer may write (its small runs' are ~10 kB).
FILE_LIMIT = 256 * 1024


def cli(*args, cwd, preexec_fn=None):
    return subprocess.run([sys.executable, "-m", "implicit_bias", *args], env=env(), cwd=cwd, text=True,
                          capture_output=True, timeout=120, preexec_fn=preexec_fn)


def small_disk():
    """In the child: files larger than FILE_LIMIT cannot be written. With SIGXFSZ ignored,
    a write past the limit fails with EFBIG, as one on a full disk fails with ENOSPC."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


def one_error_line(stderr: str) -> str:
    """The command's message: its last line, the only one starting ``error:``; no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and stderr.rstrip().splitlines()[-1] == errors[0], stderr
    return errors[0]


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE") or not hasattr(signal, "SIGXFSZ"),
                    reason="no file-size limit (RLIMIT_FSIZE, SIGXFSZ) on this platform")
def test_a_full_disk_ends_the_sweep_in_one_line_and_leaves_no_partial_file(tmp_path):
    (tmp_path / "s.toml").write_text(GROWING)
    done = cli("sweep", "s.toml", cwd=tmp_path, preexec_fn=small_disk)
    assert done.returncode == 2, done.stderr
    line = one_error_line(done.stderr)
    runs = tmp_path / "out" / "runs"
    assert line.startswith(f"error: {Path('out') / 'runs'}/") and line.endswith(
        ".npz: File too large: free some space (or raise the file-size limit, ulimit -f), or choose "
        "another --store."), line
    # The three small runs, stored before it, load; the large one left nothing behind.
    assert sorted(p.suffix for p in runs.iterdir()) == [".npz"] * 3
    assert assert_whole(tmp_path / "out") == 3
    assert {store.RunStore(tmp_path / "out").load(p).model.W.shape[0] for p in runs.iterdir()} == {4}


def assert_refused(stderr: str, folder: Path) -> None:
    assert stderr.startswith(f"error: {folder / 'runs'}: cannot write the store there (")
    assert stderr.endswith("); choose a writable folder (store=..., --store) or fix its permissions.\n")
    assert len(stderr.splitlines()) == 1  # no progress bar: nothing trained


def test_a_store_that_cannot_be_written_is_one_line_before_training(tmp_path):
    # Root writes into read-only folders: a file where the store's runs/ folder goes.
    (tmp_path / "s.toml").write_text(GROWING)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "runs").write_text("not a folder")
    done = cli("sweep", "s.toml", "--store", "taken", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert_refused(done.stderr, Path("taken"))
    assert done.stdout == "" and not (tmp_path / "taken" / "chunks").exists()
    assert (tmp_path / "taken" / "runs").read_text() == "not a folder"


def test_a_store_on_a_file_system_no_one_may_write_is_one_line(tmp_path, capsys):
    folder = Path("/sys/implicit_bias_store")  # a pseudo-file system: not even root makes folders
    try:
        folder.mkdir()
    except OSError:
        pass
    else:
        folder.rmdir()
        pytest.skip("a folder can be made under /sys here")
    (tmp_path / "s.toml").write_text(GROWING)
    assert main(["sweep", str(tmp_path / "s.toml"), "--store", str(folder)]) == 2
    out, err = capsys.readouterr()
    assert_refused(err, folder)
    assert out == "" and not folder.exists()
