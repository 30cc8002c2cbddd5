"""Normalized margins of homogeneous models, and directional convergence.

The normalized margin in a norm is ``γ(θ) = min_i q_i(θ) / ‖θ‖^L`` with ``L`` the
homogeneity degree; it is scale-invariant, so it measures the *direction* of θ. Margins
in different norms are not comparable with each other: compare optimizers within a norm.
"""

from __future__ import annotations

import torch

from . import losses
from .norms import Norm, by_name


def _degree(model) -> float:
    degree = getattr(model, "degree", None)
    if degree is None:
        raise TypeError(
            f"{type(model).__name__} has no `degree`: margins need a homogeneous model "
            "(see implicit_bias.models), whose degree L makes min_i q_i / ‖θ‖^L scale-invariant."
        )
    return float(degree)


def _norm(norm, params) -> Norm:
    return by_name(norm, params) if isinstance(norm, str) else norm


def params_of(model) -> list[torch.Tensor]:
    return [p.detach() for p in model.parameters()]


@torch.no_grad()
def normalized_margin(model, X, y, norm="l2") -> float:
    """``min_i y_i f(x_i; θ) / ‖θ‖^L`` for ``norm`` (a :class:`Norm` or a name)."""
    degree = _degree(model)
    params = params_of(model)
    q = y * model(X)
    return float(q.min() / _norm(norm, params)(params) ** degree)


@torch.no_grad()
def smoothed_margin(model, X, y, norm="l2", loss: str = "logistic") -> float:
    """Lyu & Li's smoothed margin ``ℓ^{-1}(L(θ)) / ‖θ‖^L``: smooth in θ and a lower bound on
    the normalized margin. For the exponential loss it is within ``log(n) / ‖θ‖^L`` of it;
    for the logistic loss that holds only once the loss is small."""
    degree = _degree(model)
    params = params_of(model)
    log_l = losses.log_loss(y * model(X), loss)
    return float(losses.inverse_loss_from_log(log_l, loss) / _norm(norm, params)(params) ** degree)


def _flat(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().reshape(-1)
    if hasattr(x, "parameters"):
        x = list(x.parameters())
    return torch.cat([t.detach().reshape(-1) for t in x])


def direction_cosine(a, b) -> float:
    """Cosine between two parameter vectors (tensors, lists of tensors or models): the
    directional-convergence check ``cos(θ_t, θ_final)`` of the papers."""
    a, b = _flat(a), _flat(b)
    if a.shape != b.shape:
        raise ValueError(f"direction_cosine: sizes differ ({a.numel()} vs {b.numel()}).")
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        raise ValueError("direction_cosine: a zero vector has no direction.")
    return float(a @ b / (na * nb))
