"""Normalized margins of homogeneous models, and directional convergence.

The normalized margin in a norm is ``γ(θ) = min_i q_i(θ) / ‖θ‖^L`` with ``L`` the
homogeneity degree; it is scale-invariant, so it measures the *direction* of θ. Margins
in different norms are not comparable with each other: compare optimizers within a norm.

Every margin here first checks its input (:func:`checked_margins`): labels ±1 of shape
``(n,)``, one output per sample, and the declared degree measured on the data once per
model (:mod:`implicit_bias.homogeneity`) — a wrong one would give a number, not an error.
"""

from __future__ import annotations

import torch

from . import losses
from .data import check_labels
from .homogeneity import check_homogeneous, check_output, declared_degree
from .norms import Norm, as_norm


def _norm(norm, params) -> Norm:
    return as_norm(norm, params)


def params_of(model) -> list[torch.Tensor]:
    return [p.detach() for p in model.parameters()]


def check_targets(X, y) -> None:
    """Raise unless ``y`` holds one label in {−1, +1} per row of ``X``."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch tensor of labels ±1, got {type(y).__name__}: use "
                        "`torch.as_tensor(y, dtype=X.dtype)`.")
    n = X.shape[0]
    if tuple(y.shape) != (n,):
        fix = ": flatten it with `y.reshape(-1)`" if y.numel() == n else ""
        raise ValueError(f"y must have shape ({n},), one label per row of X; got {tuple(y.shape)}{fix}.")
    check_labels(y)


def checked_margins(model, X, y) -> tuple[torch.Tensor, float]:
    """The per-sample margins ``q_i = y_i f(x_i; θ)`` and the degree ``L``, after checking the
    labels, the output shape and (once per model: :func:`~implicit_bias.homogeneity.check_homogeneous`)
    the declared degree."""
    degree = declared_degree(model)
    check_targets(X, y)
    check_homogeneous(model, X, degree)
    f = model(X)
    check_output(model, X, f)
    return y * f, degree


@torch.no_grad()
def normalized_margin(model, X, y, norm="l2") -> float:
    """``min_i y_i f(x_i; θ) / ‖θ‖^L`` for ``norm`` (a :class:`Norm` or a name)."""
    q, degree = checked_margins(model, X, y)
    params = params_of(model)
    return float(q.min() / _norm(norm, params)(params) ** degree)


@torch.no_grad()
def smoothed_margin(model, X, y, norm="l2", loss: str = "logistic") -> float:
    """Lyu & Li's smoothed margin ``ℓ^{-1}(L(θ)) / ‖θ‖^L``: smooth in θ and a lower bound on
    the normalized margin. For the exponential loss it is within ``log(n) / ‖θ‖^L`` of it;
    for the logistic loss that holds only once the loss is small."""
    q, degree = checked_margins(model, X, y)
    params = params_of(model)
    log_l = losses.log_loss(q, loss)
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
