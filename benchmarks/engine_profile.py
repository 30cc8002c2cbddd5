"""Where the batched engine's time goes, per row of the peers table: what bounds it.

For each optimizer, K and width it times the peers table's runs in the engine (two-layer
squared-ReLU nets on the digits, float64, ``η_t = η_0 t^{-1/2}``, the book's log density;
best of ``--repeats``), then the step's matrix products alone at the same shapes (the
forward ``X Wᵀ`` and the backward ``Sᵀ (df ⊙ X)`` of K runs, batched as the engine does, and
as one product over the K runs' weights side by side). It prints:

* the products' share of the engine's time: the rest is the memory-bound passes
  (activation, slopes, loss, update, logging) and Python;
* the GFLOP/s the products reach alone at these shapes, as a share of the machine's float64
  peak: the engine cannot beat that share, whatever else it saves;
* the engine's own share of the peak.

    .venv/bin/python benchmarks/engine_profile.py                        # the peers table's rows
    .venv/bin/python benchmarks/engine_profile.py --optimizers Muon --ks 1 --widths 32

A profiler is not used: on steps of a millisecond its own overhead is larger than the ops.
Commit the output beside this file (``engine_profile_cpu_2core.txt``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import implicit_bias as ib
import torch
from implicit_bias.train import Run, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batched_engine import step_flops  # noqa: E402
from peers import SETTINGS, log_points, matmul_peak  # noqa: E402


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def products(K: int, X: torch.Tensor, width: int, repeats: int = 20) -> tuple[float, float]:
    """Seconds of one step's matrix products for K runs: batched as the engine does them,
    and as one product over the K runs' weights side by side."""
    n, d = X.shape
    W = torch.randn(K, width, d, dtype=X.dtype, device=X.device)
    S = torch.randn(K, n, width, dtype=X.dtype, device=X.device)
    dfX = torch.randn(K, n, d, dtype=X.dtype, device=X.device)
    P = torch.randn(n, K * width, dtype=X.dtype, device=X.device)
    batched = best_of(lambda: (torch.bmm(X.expand(K, n, d), W.mT), torch.bmm(S.mT, dfX)), repeats)
    wide = best_of(lambda: (X @ W.reshape(K * width, d).T, P.T @ X), repeats)
    return batched, wide


def profile_row(optimizer: str, K: int, width: int, steps: int, dev: torch.device, repeats: int) -> dict:
    X, y = ib.data.digits_even_odd()
    X, y = X.to(dev), y.to(dev)
    net = {"kind": "two_layer", "width": width, "activation": "relu2"}
    s = SETTINGS[optimizer]
    runs = [Run(optimizer, s["lr"], steps, schedule=0.5, seed=k, model=net, options=s["options"])
            for k in range(K)]
    kw = dict(norms=("l2",), log_points=log_points(steps), progress=False, device=dev, engine="batched")
    train(runs, (X, y), **kw)  # warm-up
    wall = best_of(lambda: train(runs, (X, y), **kw), repeats)
    batched, wide = products(K, X, width)
    n, d = X.shape
    return {"wall": wall, "products": batched * steps, "flops": step_flops(n, d, width) * K,
            "batched": batched, "wide": wide, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--optimizers", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 30])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # Adam's regime warning: the timing is the point here
    dev = ib.device()
    peak = matmul_peak(dev)
    print(f"{dev}, {torch.get_num_threads()} threads, torch {torch.__version__}; float64 matmul peak "
          f"{peak:.1f} GFLOP/s; {args.steps} steps, best of {args.repeats}; load before: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print("\noptimizer | K | width | engine s | products' share | rest (memory-bound passes, Python) | "
          "products alone % peak | as one wide product % peak | engine % peak\n" + " | ".join(["---"] * 9))
    for optimizer in args.optimizers:
        for width in args.widths:
            for K in args.ks:
                r = profile_row(optimizer, K, width, args.steps, dev, args.repeats)
                share = r["products"] / r["wall"]
                alone = r["flops"] / r["batched"] / 1e9 / peak
                wide = r["flops"] / r["wide"] / 1e9 / peak
                engine = r["flops"] * r["steps"] / r["wall"] / 1e9 / peak
                print(f"{optimizer} | {K} | {width} | {r['wall']:.2f} | {share:.0%} | {1 - share:.0%} | "
                      f"{alone:.0%} | {wide:.0%} | {engine:.0%}")
    print("load after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
