"""Sweeps on one process against a process pool and a local Dask cluster, and storing's
cost, measured in one run.

Each contender runs ``python -m implicit_bias sweep FILE --executor E`` in a fresh process
and a fresh store, so start-up (interpreter, torch, the workers) is counted as a user pays
it. Two sweeps:

* ``examples/sweep.toml`` at the book size (200 small runs, seconds in one process): a
  pool must never be slower than one process;
* a larger sweep written here (the same grid, more seeds and steps: about a minute in one
  process), where start-up is amortized: two workers should be ≥ 1.3× one process.

Then storing: a sweep of many tiny runs trained with and without a store (in this
process), the store's share of the time.

    .venv/bin/python benchmarks/dispatch.py            # both sweeps, every executor, storing
    .venv/bin/python benchmarks/dispatch.py --workers 2 --repeats 1 --skip-large

Prints one table; commit its output beside this file (``dispatch_cpu_2core.txt``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "sweep.toml"


def large_sweep(folder: Path, seeds: int, steps: int) -> Path:
    """examples/sweep.toml with ``seeds`` seeds and ``steps`` steps at every size."""
    text = EXAMPLE.read_text().replace("seeds = 10", f"seeds = {seeds}")
    text = text.replace("steps = {smoke = 100, book = 300, paper = 30000}", f"steps = {steps}")
    path = folder / "large.toml"
    path.write_text(text)
    return path


def timed_sweep(file: Path, executor: str | None, store: Path) -> float:
    """Seconds for the command line to train ``file`` into the empty folder ``store``."""
    shutil.rmtree(store, ignore_errors=True)
    cmd = [sys.executable, "-m", "implicit_bias", "sweep", str(file), "--store", str(store),
           "--profile", "book"]
    if executor:
        cmd += ["--executor", executor]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return seconds


def storing(runs: int, steps: int, repeats: int) -> tuple[float, float]:
    """Best seconds for ``runs`` tiny runs (a linear model on 40 points) without and with a
    store, timed in turn."""
    import implicit_bias as ib
    from implicit_bias.train import Run, train

    X, y = ib.data.gaussian(n=40, d=8)
    sweep = [Run("NormalizedGD", 0.1, steps, schedule=0.5, seed=s, model={"kind": "linear"})
             for s in range(runs)]
    train(sweep[:2], (X, y), norms=("l2",), progress=False)  # warm up
    bare, stored = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        train(sweep, (X, y), norms=("l2",), progress=False)
        bare.append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory(dir=ROOT) as folder:  # the repository's disk
            start = time.perf_counter()
            train(sweep, (X, y), norms=("l2",), progress=False, store=folder)
            stored.append(time.perf_counter() - start)
    return min(bare), min(stored)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeats", type=int, default=2, help="timings per contender; the best is kept")
    parser.add_argument("--seeds", type=int, default=60, help="seeds of the large sweep")
    parser.add_argument("--steps", type=int, default=600, help="steps of the large sweep")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--store-runs", type=int, default=2000)
    args = parser.parse_args()

    n = args.workers
    executors = [None, f"processes:{n}", f"dask-local:{n}"]
    print(f"{os.cpu_count()} cores; {n} workers; load (1, 5, 15 min) before: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sweeps = [("examples/sweep.toml (200 runs, book)", EXAMPLE)]
        if not args.skip_large:
            runs = 4 * 5 * args.seeds
            large = large_sweep(folder, args.seeds, args.steps)
            sweeps.append((f"large ({runs} runs, {args.steps} steps)", large))
        print("\nsweep | executor | seconds (best of "
              f"{args.repeats}) | one process / this\n--- | --- | --- | ---")
        for name, file in sweeps:
            best: dict[str | None, float] = {}
            for _ in range(args.repeats):  # in turn, so every contender sees the same load
                for ex in executors:
                    t = timed_sweep(file, ex, folder / "store")
                    best[ex] = min(best.get(ex, t), t)
            for ex in executors:
                print(f"{name} | {ex or 'this process'} | {best[ex]:.1f} | {best[None] / best[ex]:.2f}")
    bare, stored = storing(args.store_runs, 100, args.repeats)
    print(f"\nstoring {args.store_runs} tiny runs (100 steps each): {bare:.1f} s without a store, "
          f"{stored:.1f} s with one: the store adds {(stored - bare) / bare:.0%} of training")
    print("load after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
