"""Time ``implicit_bias.kkt.kkt_certificate`` on a two-layer network fitted to the digits.

Trains a bias-free squared-ReLU network (width 256, p = 16,640 parameters) on the 1,797
digits, even vs odd, with normalized GD until it separates the data, then times the
certificate in the ℓ2, ℓ∞ and max-spectral norms: first with the default active set
(margins within 50 % of the minimum), then with larger active sets to show how the cost
grows with the number k of near-active points.

    .venv/bin/python benchmarks/kkt_certificate.py                 # about a minute
    .venv/bin/python benchmarks/kkt_certificate.py --spectral-k 16 # adds a slow SDP row
    .venv/bin/python benchmarks/kkt_certificate.py --cache /tmp/kkt_bench.pt

``--cache`` stores the trained model and reuses it on the next run. With the default 2,000
steps the network has only just separated the data, so every ε is large (far from KKT):
this script measures cost, not convergence; raise ``--steps`` for meaningful values.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import implicit_bias as ib
import torch
from implicit_bias.kkt import kkt_certificate
from implicit_bias.train import Run, train


def fitted_model(steps: int, width: int, cache: Path | None):
    X, y = ib.data.digits_even_odd()
    spec = {"kind": "two_layer", "width": width, "activation": "relu2"}
    model = ib.models.build(spec, X.shape[1])
    if cache is not None and cache.exists():
        model.load_state_dict(torch.load(cache))
        print(f"loaded the model from {cache}")
        return model, X, y
    start = time.perf_counter()
    run = Run("NormalizedGD", 1.0, steps, schedule=0.5, model=spec)
    history = train(run, (X, y), norms=("l2",), progress=False)[0]
    model = history.model
    print(f"trained {steps} steps of NormalizedGD in {time.perf_counter() - start:.1f} s; "
          f"log loss {history.log_loss[-1]:.3g}")
    if cache is not None:
        torch.save(model.state_dict(), cache)
    return model, X, y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--spectral-k", type=int, default=0,
                        help="also time the spectral certificate with this many points (slow)")
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, X, y = fitted_model(args.steps, args.width, args.cache)
    q = model.margins(X, y).detach()
    if not (q > 0).all():
        raise SystemExit(f"{int((q <= 0).sum())} points are misclassified: train longer (--steps).")
    p = sum(t.numel() for t in model.parameters())
    ratio = q / q.min()
    print(f"n = {len(y)}, p = {p}; points with q_i ≤ (1 + t)·min q: "
          + ", ".join(f"t={t:g}: {int((ratio <= 1 + t).sum())}" for t in (0.5, 1, 2, 5)))

    cases = [("l2", {}), ("linf", {}), ("spectral", {}),
             ("l2", {"active_tol": 2.0}), ("linf", {"active_tol": 2.0}),
             ("l2", {"active_tol": 5.0}), ("linf", {"active_tol": 5.0})]
    if args.spectral_k:
        cases.append(("spectral", {"active_tol": 100.0, "max_points": args.spectral_k}))

    header = (f"{'norm':<9} {'active_tol':>10} {'k':>5} {'epsilon':>10} {'delta_rel':>10} "
              f"{'seconds':>8}  status")
    print(header)
    print("-" * len(header))
    for name, options in cases:
        cert = kkt_certificate(model, X, y, name, **options)
        print(f"{name:<9} {options.get('active_tol', 0.5):>10g} {len(cert.active):>5d} "
              f"{cert.epsilon:>10.4g} {cert.delta_relative:>10.3g} {cert.seconds:>8.2f}  {cert.status}",
              flush=True)


if __name__ == "__main__":
    main()
