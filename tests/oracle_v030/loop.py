"""The reference training loop of version 0.3.0 (``train._train_one`` without its
logging), frozen with the optimizers of this package: the oracle the engines of the
current library are compared with. Models, losses and per-sample gradients come from the
current library (they are not update rules)."""

from __future__ import annotations

import math

import numpy as np
import torch
from implicit_bias import losses, models

from . import optim

FRAME_SLACK = 20.0


def batches(scheme, n, size, seed=0):
    rng = np.random.default_rng([int(seed), 0xBA7C4])
    while True:
        if scheme == "replacement":
            yield torch.as_tensor(rng.integers(n, size=size))
            continue
        order = np.arange(n) if scheme == "cyclic" else rng.permutation(n)
        for start in range(0, n, size):
            yield torch.as_tensor(order[start:start + size])


def train(run, X, y, frame: bool = True):
    """Train ``run`` (an ``implicit_bias`` Run) as version 0.3.0's loop did; returns the
    model and the final log-loss."""
    from implicit_bias.train import per_sample_gradients

    dtype = getattr(torch, run.dtype)
    X, y = X.to(dtype), y.to(dtype)
    d = X.shape[1] if X.dim() == 2 else tuple(X.shape[1:])
    model = models.build(run.model, d, seed=run.seed, dtype=dtype)
    opt = optim.make(run.optimizer, list(model.parameters()), run.lr, **run.options)
    schedule = optim.power_schedule(opt, run.schedule)
    F, n = 0.0, X.shape[0]
    sampler = None if run.batch == "full" else batches(run.batch, n, run.batch_size, run.seed)
    per_sample = getattr(opt, "needs_per_sample_gradients", False)
    for _ in range(run.steps):
        opt.zero_grad(set_to_none=True)
        if sampler is None:
            terms = losses.log_terms(y * model(X), run.loss)
            log_l = float(losses.logsumexp(terms.detach()))
        else:
            with torch.no_grad():
                log_l = float(losses.log_loss(y * model(X), run.loss))
        if frame and abs(log_l + F) > FRAME_SLACK:
            shift = -log_l - F
            while shift:
                piece = max(-700.0, min(700.0, shift))
                opt.rescale_gradients(math.exp(piece))
                shift -= piece
            F = -log_l
        if sampler is None and not per_sample:
            torch.exp(terms + F).sum().backward()
        else:
            idx = slice(None) if sampler is None else next(sampler)
            Xb, yb, scale = X[idx], y[idx], n / len(y[idx])
            if per_sample:
                for p, g in zip(model.parameters(),
                                per_sample_gradients(model, Xb, yb, run.loss, F, scale)):
                    p.grad_sample = g
                    p.grad = g.sum(dim=0)
            else:
                (torch.exp(losses.log_terms(yb * model(Xb), run.loss) + F).sum() * scale).backward()
        opt.step()
        schedule.step()
    with torch.no_grad():
        return model, float(losses.log_loss(y * model(X), run.loss))
