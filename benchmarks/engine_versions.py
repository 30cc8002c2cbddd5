"""The batched engine of this checkout against the engine of an earlier revision, timed
alternately in one run of this script (so both see the same machine load).

Each timing trains K two-layer squared-ReLU networks on the digits with
``train(..., engine='batched')`` in a fresh process whose ``implicit_bias`` is either this
checkout's ``lib/`` or ``git archive REV lib`` unpacked to a temporary folder. Prints
run-steps per second per optimizer (best of ``--repeats``) and the ratio new / old.

    .venv/bin/python benchmarks/engine_versions.py --against 7c05213
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(args):
    import warnings

    import implicit_bias as ib
    import torch
    from implicit_bias.train import Run, train

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # regime and dead-coordinate warnings: only the timing matters
    X, y = ib.data.digits_even_odd()
    X, y = X[:args.samples], y[:args.samples]
    net = {"kind": "two_layer", "width": args.width, "activation": "relu2"}
    out = {"file": ib.__file__}
    for name in args.optimizers:
        runs = [Run(name, 0.01, args.steps, schedule=0.5, seed=s, model=net) for s in range(args.runs)]
        train(runs[:2], (X, y), norms=("l2",), progress=False, device="cpu", engine="batched")  # warm-up
        clock = time.process_time if args.cpu_time else time.perf_counter
        best = float("inf")
        for _ in range(3):  # the best of three in this process, then the best over processes
            start = clock()
            train(runs, (X, y), norms=("l2",), progress=False, device="cpu", engine="batched")
            best = min(best, clock() - start)
        out[name] = args.runs * args.steps / best
    print(json.dumps(out))


def unpack(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", rev, "lib"], cwd=ROOT, check=True, capture_output=True).stdout
    path = into / "archive.tar"
    path.write_bytes(archive)
    with tarfile.open(path) as tar:
        tar.extractall(into, filter="data")
    return into / "lib"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", default="7c05213", help="the earlier revision (default: version 0.3.0)")
    parser.add_argument("--optimizers", nargs="+",
                        default=["NormalizedGD", "Signum", "Adam", "Muon", "MuonAdam"])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu-time", action="store_true",
                        help="time by CPU seconds instead of wall seconds (with --threads 1: less "
                             "disturbed by a machine loaded with other jobs)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory() as tmp:
        libs = {"new": ROOT / "lib", "old": unpack(args.against, Path(tmp))}
        best = {version: {} for version in libs}
        argv = [a for a in sys.argv[1:]]
        for repeat in range(args.repeats):
            for version in sorted(libs, reverse=repeat % 2 == 1):  # alternate which goes first
                lib = libs[version]
                env = dict(os.environ, PYTHONPATH=str(lib))
                result = subprocess.run([sys.executable, __file__, "--child", *argv], env=env, check=True,
                                        capture_output=True, text=True)
                timing = json.loads(result.stdout.strip().splitlines()[-1])
                assert timing.pop("file").startswith(str(lib)), "the child imported another implicit_bias"
                for name, rate in timing.items():
                    best[version][name] = max(best[version].get(name, 0.0), rate)
    print(f"batched engine, K = {args.runs}, width {args.width}, {args.samples} digits, {args.steps} steps, "
          f"{args.threads} threads, best of 3 × {args.repeats} processes (alternating"
          f"{', CPU seconds' if args.cpu_time else ''}); "
          f"old = {args.against}\n")
    print("optimizer | old run-steps/s | new run-steps/s | new / old")
    print("--- | --- | --- | ---")
    for name in args.optimizers:
        old, new = best["old"][name], best["new"][name]
        print(f"{name} | {old:.0f} | {new:.0f} | {new / old:.2f}")


if __name__ == "__main__":
    main()
