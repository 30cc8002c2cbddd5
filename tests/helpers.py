"""Small helpers shared by the test modules (imported as ``from helpers import ...``)."""

from __future__ import annotations

import contextlib

import torch
from implicit_bias import losses

F64 = torch.float64


@contextlib.contextmanager
def one_thread():
    """Tiny problems on one torch thread: more threads only add contention on a busy
    machine (two on two busy cores cost several times the CPU time)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def flat(params) -> torch.Tensor:
    """All tensors of a list, a single tensor or a model's parameters as one vector."""
    if isinstance(params, torch.Tensor):
        return params.detach().reshape(-1)
    if hasattr(params, "parameters"):
        params = list(params.parameters())
    return torch.cat([p.detach().reshape(-1) for p in params])


def rel_err(a, b) -> float:
    """``‖a − b‖ / ‖b‖`` over whole parameter lists, tensors or models."""
    a, b = flat(a), flat(b)
    return float((a - b).norm() / b.norm())


def logistic_loss(model, X, y, scale: float = 1.0) -> torch.Tensor:
    """``scale · Σ_i log(1 + e^{−y_i f(x_i)})``: the (optionally rescaled) training loss."""
    return scale * losses.loss(y * model(X), "logistic")


def thinned(history, keep: int):
    """``history`` as ``train(..., directions=keep)`` returns it: ``train``'s own thinning,
    applied to a copy (``test_train.py`` checks that the two agree)."""
    import copy

    from implicit_bias.train import _thin

    return _thin(copy.copy(history), keep)
