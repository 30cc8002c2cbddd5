"""The batched engine against its peers, measured in one run, interleaved.

K two-layer squared-ReLU networks (no biases) on the digits (even vs odd), logistic loss,
float64, the rate ``η_t = η_0 t^{-1/2}``, trained by each contender from the same
initializations:

* **A** the batched engine: ``train(runs, data, norms=("l2",))``, the library's default
  (log points with margins and directions, the loss frame, the checks);
* **C** a plain PyTorch loop, run after run, as a researcher writes it: an ``nn.Module``,
  ``softplus(−y f).sum()``, ``loss.backward()``, a hand-written normalized step,
  ``torch.optim.Adam`` or a simple Muon (EMA momentum, polar factor by SVD); it keeps the
  loss at the same log points;
* **D** a ``torch.func`` ensemble: ``vmap`` of ``grad`` over parameters stacked with
  ``functional_call``, one vectorized update for the K runs;
* **E** D's whole step under ``torch.compile`` (its compile time is printed apart).

Every contender logs as densely as a book run (60 points in 3,000 steps), so that the short
timings here weigh logging as the book does.

Each row is one optimizer, K and width; each contender's time is the best of
``--repeats`` timings taken in turn (a loaded machine only ever slows a timing down, and
interleaving lets every contender see the same load). It prints run-steps per second,
the engine's speed over each peer, achieved GFLOP/s (forward and backward matrix
products only) against this machine's measured float64 matrix-product peak, the machine
load before and after, and checks that the contenders trained the same nets (their final
losses agree).

    .venv/bin/python benchmarks/peers.py --quick     # a fast check (under a minute)
    .venv/bin/python benchmarks/peers.py             # the full table (minutes on 2 cores)
    .venv/bin/python benchmarks/peers.py --optimizers NormalizedGD --ks 30 --widths 128

Width 2048 is added on a GPU. C's throughput does not depend on K (it trains one run after
another), so it is timed on at most ``--loop-runs`` of the K runs.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

import implicit_bias as ib
import numpy as np
import torch
import torch.nn.functional as nnf
from implicit_bias.history import log_grid
from implicit_bias.train import Run, train
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batched_engine import _sync, step_flops  # noqa: E402

#: Each optimizer's settings, the same for every contender. Adam's ε is positive so that
#: torch.optim.Adam (which has no 0/0 := 0) can run it.
SETTINGS = {
    "NormalizedGD": dict(lr=0.5, options={}),
    "Adam": dict(lr=0.01, options={"betas": (0.9, 0.99), "eps": 1e-8}),
    "Muon": dict(lr=0.1, options={"momentum": 0.9}),
}
SCHEDULE = 0.5

#: Every contender logs as densely as a book run does: 60 points in 3,000 steps (the
#: engine records the loss, the margins and the direction; the peers keep the loss).
BOOK_LOG_DENSITY = 60 / 3000


def log_points(steps: int) -> int:
    return max(2, round(BOOK_LOG_DENSITY * steps))


# --- C: the plain loop -------------------------------------------------------------------


class TwoLayer(nn.Module):
    """f(x) = Σ_j a_j relu(w_j·x)²: what a researcher writes."""

    def __init__(self, W, a):
        super().__init__()
        self.W, self.a = nn.Parameter(W.clone()), nn.Parameter(a.clone())

    def forward(self, X):
        return torch.relu(X @ self.W.T).square() @ self.a


def polar(m):
    """U Vᵀ of a matrix (Muon's direction)."""
    u, _, vh = torch.linalg.svd(m, full_matrices=False)
    return u @ vh


def plain_loop(optimizer, inits, X, y, steps, lr):
    """Train each run on its own; returns each run's final log-loss."""
    grid = set(log_grid(steps, log_points(steps)).tolist())
    finals = []
    for W0, a0 in inits:
        net = TwoLayer(W0, a0)
        params = list(net.parameters())
        if optimizer == "Adam":
            opt = torch.optim.Adam(params, lr=lr, **SETTINGS["Adam"]["options"])
        momenta = [torch.zeros_like(p) for p in params]
        logged = []
        for t in range(1, steps + 1):
            loss = nnf.softplus(-y * net(X)).sum()
            net.zero_grad()
            loss.backward()
            lr_t = lr * t ** -SCHEDULE
            with torch.no_grad():
                if optimizer == "NormalizedGD":
                    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
                    for p in params:
                        p -= lr_t * p.grad / norm
                elif optimizer == "Adam":
                    opt.param_groups[0]["lr"] = lr_t
                    opt.step()
                else:  # Muon: polar factor of the EMA momentum, each parameter as a matrix
                    beta = SETTINGS["Muon"]["options"]["momentum"]
                    for p, m in zip(params, momenta):
                        m.mul_(beta).add_(p.grad, alpha=1 - beta)
                        matrix = m if m.dim() > 1 else m[None]  # a vector is a 1 × n matrix
                        p -= lr_t * polar(matrix).reshape(p.shape)
            if t in grid:
                logged.append(loss.item())
        with torch.no_grad():
            finals.append(math.log(nnf.softplus(-y * net(X)).sum().item()))
    return finals


# --- D and E: the torch.func ensemble --------------------------------------------------


def ensemble_step(optimizer, X, y):
    """One step of the K stacked runs, as a pure function of tensors:
    ``step(W, a, state, lr_t, t) -> (W, a, state, losses)`` (``lr_t`` a (K,) tensor, ``t`` a
    0-dim tensor, ``state`` a tuple of stacked tensors)."""
    template = TwoLayer(torch.zeros(1, X.shape[1], dtype=X.dtype), torch.zeros(1, dtype=X.dtype)).to("meta")

    def loss_one(params):
        return nnf.softplus(-y * functional_call(template, params, (X,))).sum()

    grads_of = vmap(grad_and_value(loss_one))
    options = SETTINGS[optimizer]["options"]

    def step(W, a, state, lr_t, t):
        g, loss = grads_of({"W": W, "a": a})
        gW, ga = g["W"], g["a"]
        lw, la = lr_t[:, None, None], lr_t[:, None]
        if optimizer == "NormalizedGD":
            norm = torch.sqrt((gW ** 2).sum(dim=(1, 2)) + (ga ** 2).sum(dim=1))
            return W - lw * gW / norm[:, None, None], a - la * ga / norm[:, None], state, loss
        if optimizer == "Adam":
            (b1, b2), eps = options["betas"], options["eps"]
            mW, ma, vW, va = state
            mW, ma = b1 * mW + (1 - b1) * gW, b1 * ma + (1 - b1) * ga
            vW, va = b2 * vW + (1 - b2) * gW ** 2, b2 * va + (1 - b2) * ga ** 2
            c1, c2 = 1 - b1 ** t, 1 - b2 ** t
            W = W - lw * (mW / c1) / ((vW / c2).sqrt() + eps)
            a = a - la * (ma / c1) / ((va / c2).sqrt() + eps)
            return W, a, (mW, ma, vW, va), loss
        beta = options["momentum"]  # Muon
        mW, ma = state
        mW, ma = beta * mW + (1 - beta) * gW, beta * ma + (1 - beta) * ga
        return W - lw * polar(mW), a - la * ma / ma.norm(dim=1, keepdim=True), (mW, ma), loss

    return step


def ensemble(step, optimizer, inits, X, y, steps, lr):
    """Train the K runs together with ``step``; returns their final log-losses."""
    W = torch.stack([w for w, _ in inits])
    a = torch.stack([v for _, v in inits])
    state = {"NormalizedGD": (), "Adam": (W, a, W, a), "Muon": (W, a)}[optimizer]
    state = tuple(torch.zeros_like(s) for s in state)
    grid = set(log_grid(steps, log_points(steps)).tolist())
    logged = []
    for t in range(1, steps + 1):
        lr_t = torch.full((len(inits),), lr * t ** -SCHEDULE, dtype=X.dtype, device=X.device)
        W, a, state, loss = step(W, a, state, lr_t, torch.tensor(float(t), dtype=X.dtype, device=X.device))
        if t in grid:
            logged.append(loss.cpu())
    with torch.no_grad():
        f = torch.relu(torch.einsum("nd,khd->knh", X, W)).square() @ a[..., None]
        return torch.log(nnf.softplus(-y * f[..., 0]).sum(dim=1)).tolist()


# --- A: the engine ---------------------------------------------------------------------


def engine(optimizer, runs, X, y, dev):
    histories = train(runs, (X, y), norms=("l2",), log_points=log_points(runs[0].steps), progress=False,
                      device=dev, engine="batched")
    return [float(h.log_loss[-1]) for h in histories]


# --- the table ---------------------------------------------------------------------------


CLOCK = time.perf_counter


def matmul_peak(dev: torch.device, dtype=torch.float64) -> float:
    """GFLOP/s of a large square product on ``dev``, the best of 4 (on :data:`CLOCK`)."""
    size = 4096 if dev.type == "cuda" else 1024
    a = torch.randn(size, size, dtype=dtype, device=dev)
    best = min(timed(lambda: a @ a, dev)[0] for _ in range(5))
    return 2 * size**3 / best / 1e9


def timed(fn, dev):
    _sync(dev)
    start = CLOCK()
    out = fn()
    _sync(dev)
    return CLOCK() - start, out


def row(optimizer, K, width, steps, X, y, dev, args):
    net = {"kind": "two_layer", "width": width, "activation": "relu2"}
    lr, options = SETTINGS[optimizer]["lr"], SETTINGS[optimizer]["options"]
    runs = [Run(optimizer, lr, steps, schedule=SCHEDULE, seed=s, model=net, options=options)
            for s in range(K)]
    inits = []
    for r in runs:
        m = r.build_model(X.shape[1], X.dtype).to(dev)
        inits.append((m.W.detach().clone(), m.a.detach().clone()))
    loop_k = min(K, args.loop_runs)
    step = ensemble_step(optimizer, X, y)
    contenders = {
        "A": lambda: engine(optimizer, runs, X, y, dev),
        "C": lambda: plain_loop(optimizer, inits[:loop_k], X, y, steps, lr),
        "D": lambda: ensemble(step, optimizer, inits, X, y, steps, lr),
    }
    compile_s = None
    if args.compile and K in args.compile_ks:
        compiled = torch.compile(step, fullgraph=False, dynamic=False)
        contenders["E"] = lambda: ensemble(compiled, optimizer, inits, X, y, steps, lr)
        try:  # the first call compiles (a short run of the same shapes)
            compile_s, _ = timed(lambda: ensemble(compiled, optimizer, inits, X, y, 2, lr), dev)
        except Exception as err:  # noqa: BLE001 - a platform where inductor cannot compile
            print(f"  (torch.compile failed on this platform: {type(err).__name__}: {err}; E skipped)")
            del contenders["E"]
    engine(optimizer, runs[:1], X, y, dev)  # warm-up: first calls allocate and load kernels
    ensemble(step, optimizer, inits, X, y, 2, lr)
    best, finals = {name: math.inf for name in contenders}, {}
    names = list(contenders)
    for r in range(args.repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:  # each contender goes first in turn
            seconds, finals[name] = timed(contenders[name], dev)
            best[name] = min(best[name], seconds)
    rate = {name: (loop_k if name == "C" else K) * steps / best[name] for name in best}
    # The contenders train the same nets: their final losses must agree (C on its first runs).
    spread = max(abs(finals[name][k] - finals["A"][k]) / max(1.0, abs(finals["A"][k]))
                 for name in finals for k in range(len(finals[name])))
    return rate, compile_s, spread


def steps_for(K, width, args) -> int:
    """Steps per timing: about ``--budget`` run-steps of a width-128 net, so that every
    timing takes a similar time; at least ``--min-steps``."""
    budget = args.budget * 128 / width
    return int(min(args.max_steps, max(args.min_steps, round(budget / K))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--optimizers", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 30, 100])
    parser.add_argument("--widths", type=int, nargs="+", default=None,
                        help="default: 32 128 (and 2048 on a GPU)")
    parser.add_argument("--samples", type=int, default=1797)
    parser.add_argument("--budget", type=int, default=400,
                        help="run-steps per timing at width 128 (times 128/width at other widths)")
    parser.add_argument("--min-steps", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=400)
    parser.add_argument("--loop-runs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="timings per contender; the best is kept")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip E")
    parser.add_argument("--compile-ks", type=int, nargs="+", default=[30],
                        help="K at which E is compiled and timed (each shape compiles anew)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default=None, help="default: CUDA when present")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time by this process's CPU seconds instead of wall seconds: with --threads 1, "
                             "a measure that a machine loaded by other jobs disturbs less")
    parser.add_argument("--quick", action="store_true",
                        help="a fast check: K 1 and 30, width 32, few steps, two timings, no E")
    args = parser.parse_args()
    if args.quick:
        args.ks, args.widths = [1, 30], args.widths or [32]
        args.budget, args.min_steps, args.repeats, args.compile = 200, 10, 2, False
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        global CLOCK
        CLOCK = time.process_time
    dev = torch.device(args.device) if args.device else ib.config.device()
    widths = args.widths or ([32, 128, 2048] if dev.type == "cuda" else [32, 128])
    warnings.simplefilter("ignore")  # regime and dead-coordinate warnings: only the timing matters
    X, y = ib.data.digits_even_odd()
    X = torch.as_tensor(X[:args.samples], dtype=torch.float64, device=dev)
    y = torch.as_tensor(y[:args.samples], dtype=torch.float64, device=dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    load = os.getloadavg()
    peak = matmul_peak(dev)
    print(f"device: {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, float64, "
          f"{len(y)} digits, best of {args.repeats} interleaved timings"
          + (" (CPU seconds)" if args.cpu_time else ""))
    print(f"machine load (1, 5, 15 min) before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"float64 matmul peak on this device: {peak:.1f} GFLOP/s\n")
    header = ["optimizer", "K", "width", "steps", "A engine", "C plain loop", "D torch.func", "E compiled",
              "A/C", "A/D", "A/E", "A GFLOP/s", "A % peak", "best peer % peak", "E compile s", "loss spread"]
    print("run-steps per second; A/X = the engine's speed over X\n")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    start = time.perf_counter()
    for optimizer in args.optimizers:
        for width in widths:
            for K in args.ks:
                steps = steps_for(K, width, args)
                rate, compile_s, spread = row(optimizer, K, width, steps, X, y, dev, args)
                flops = step_flops(len(y), X.shape[1], width) / 1e9
                best_peer = max(v for k, v in rate.items() if k != "A")

                def cell(key, rate=rate):
                    return f"{rate[key]:.0f}" if key in rate else "–"

                def ratio(key, rate=rate):
                    return f"{rate['A'] / rate[key]:.2f}" if key in rate else "–"

                print(" | ".join([
                    optimizer, str(K), str(width), str(steps), cell("A"), cell("C"), cell("D"), cell("E"),
                    ratio("C"), ratio("D"), ratio("E"), f"{rate['A'] * flops:.1f}",
                    f"{100 * rate['A'] * flops / peak:.0f}%", f"{100 * best_peer * flops / peak:.0f}%",
                    "–" if compile_s is None else f"{compile_s:.0f}", f"{spread:.0e}"]), flush=True)
    load = os.getloadavg()
    print(f"\nmachine load (1, 5, 15 min) after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{time.perf_counter() - start:.0f} s")
    print("loss spread: the largest relative difference of a run's final log-loss between a peer and A "
          "(the contenders train the same nets)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
