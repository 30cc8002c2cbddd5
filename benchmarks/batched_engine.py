"""Throughput of the batched engine against the reference loop, measured in one run.

Trains K two-layer squared-ReLU networks on the digits (even vs odd) with both engines of
``implicit_bias.train.train`` and prints one table: device, threads, K, width, samples,
run-steps per second of the loop and of the batched engine, their ratio, the batched
engine's achieved GFLOP/s (forward and backward matrix products), this device's measured
float64 matrix-product peak for scale, and the batched engine's peak memory.

    .venv/bin/python benchmarks/batched_engine.py    # the 2-core target row and a book-sized row
    .venv/bin/python benchmarks/batched_engine.py --runs 100 --width 2048 --samples 1797  # GPU

The loop's throughput does not depend on K (it trains one run after another), so it is
timed on ``--loop-runs`` of the K runs (default 4) to keep the script short. Both engines
log 60 points per run, as the book does. Timings are only comparable within one run of
this script: they depend on the machine's load, so each is the best of ``--repeats``.
``benchmarks/peers.py`` times the engine against what a researcher would write instead (a
plain PyTorch loop, a ``torch.func`` ensemble, a compiled one).
"""

from __future__ import annotations

import argparse
import time

import implicit_bias as ib
import torch
from implicit_bias.train import Run, train


def matmul_peak(dev: torch.device, dtype=torch.float64) -> float:
    """GFLOP/s of a large square product on ``dev`` (best of 3)."""
    size = 4096 if dev.type == "cuda" else 1024
    a = torch.randn(size, size, dtype=dtype, device=dev)
    best = float("inf")
    for _ in range(4):
        _sync(dev)
        start = time.perf_counter()
        a @ a
        _sync(dev)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def step_flops(n: int, d: int, width: int) -> float:
    """Matrix-product FLOPs of one forward and backward pass of one two-layer net."""
    return 4.0 * n * d * width + 4.0 * n * width


def throughput(runs, data, dev, engine, repeats) -> tuple[float, dict]:
    """Run-steps per second, the best of ``repeats`` timings (a shared machine's load only
    ever slows a run down)."""
    best = float("inf")
    for _ in range(repeats):
        _sync(dev)
        start = time.perf_counter()
        histories = train(runs, data, norms=("l2",), progress=False, device=dev, engine=engine)
        _sync(dev)
        best = min(best, time.perf_counter() - start)
    return sum(r.steps for r in runs) / best, histories[0].engine


def row(K, width, samples, steps, optimizer, loop_runs, dev, repeats):
    X, y = ib.data.digits_even_odd()
    X, y = X[:samples], y[:samples]
    net = {"kind": "two_layer", "width": width, "activation": "relu2"}
    runs = [Run(optimizer, 0.1, steps, schedule=0.5, seed=s, model=net) for s in range(K)]
    train(runs[:1], (X, y), norms=("l2",), progress=False, device=dev, engine="batched")  # warm-up
    loop, _ = throughput(runs[:loop_runs], (X, y), dev, "loop", repeats)
    fast, engine = throughput(runs, (X, y), dev, "auto", repeats)
    gflops = fast * step_flops(len(y), X.shape[1], width) / 1e9
    return dict(K=K, width=width, n=len(y), loop=loop, batched=fast, ratio=fast / loop,
                gflops=gflops, chunk=engine.get("runs"), peak=engine.get("peak_bytes", 0) / 2**20)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[30, 30], help="K per row")
    parser.add_argument("--width", type=int, nargs="+", default=[128, 32], help="width per row")
    parser.add_argument("--samples", type=int, nargs="+", default=[1797, 600], help="digits per row")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--optimizer", default="NormalizedGD")
    parser.add_argument("--loop-runs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="timings per engine; the best is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default=None, help="default: CUDA when present")
    args = parser.parse_args()
    if not len(args.runs) == len(args.width) == len(args.samples):
        parser.error("--runs, --width and --samples need one value per row each.")
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device) if args.device else ib.config.device()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    peak = matmul_peak(dev)
    print(f"device: {name} ({dev}), torch threads: {torch.get_num_threads()}, float64, "
          f"{args.optimizer}, {args.steps} steps, loop timed on {args.loop_runs} runs, "
          f"best of {args.repeats}")
    print(f"float64 matmul peak on this device: {peak:.1f} GFLOP/s\n")
    header = ("K", "width", "n", "loop steps/s", "batched steps/s", "ratio", "GFLOP/s",
              "% of peak", "chunk", "peak MiB")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for K, width, samples in zip(args.runs, args.width, args.samples):
        r = row(K, width, samples, args.steps, args.optimizer, min(args.loop_runs, K), dev, args.repeats)
        print(f"{r['K']} | {r['width']} | {r['n']} | {r['loop']:.0f} | {r['batched']:.0f} | "
              f"{r['ratio']:.2f}× | {r['gflops']:.1f} | {100 * r['gflops'] / peak:.0f}% | "
              f"{r['chunk']} | {r['peak']:.0f}")


if __name__ == "__main__":
    main()
