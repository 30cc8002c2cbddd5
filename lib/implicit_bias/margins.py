"""Normalized margins of homogeneous models, and directional convergence.

The normalized margin in a norm is ``γ(θ) = min_i q_i(θ) / ‖θ‖^L`` with ``L`` the
homogeneity degree; it is scale-invariant, so it measures the *direction* of θ. Margins
in different norms are not comparable with each other: compare optimizers within a norm.

Every margin here first checks its input (:func:`checked_margins`): finite data, labels ±1 of shape
``(n,)``, one output per sample, and the declared degree measured on the data once per
model (:mod:`implicit_bias.homogeneity`) — a wrong one would give a number, not an error.
"""

from __future__ import annotations

import torch

from . import losses
from .data import check_data
from .homogeneity import check_homogeneous, check_output, declared_degree
from .norms import Norm, as_norm


def _norm(norm, params) -> Norm:
    return as_norm(norm, params)


def params_of(model) -> list[torch.Tensor]:
    return [p.detach() for p in model.parameters()]


def check_targets(X, y) -> None:
    """Raise unless ``X`` is a tensor of finite rows and ``y`` holds one label in {−1, +1}
    per row (:func:`~implicit_bias.data.check_data`)."""
    for name, a in (("X", X), ("y", y)):
        if not isinstance(a, torch.Tensor):
            raise TypeError(f"{name} must be a torch tensor, got {type(a).__name__}: use "
                            f"`torch.as_tensor({name}, dtype=torch.float64)`.")
    check_data(X, y)


def _check_dtype(model, X) -> None:
    dtypes = {p.dtype for p in model.parameters()}
    if len(dtypes) == 1 and X.dtype not in dtypes:
        (dtype,) = dtypes
        raise TypeError(f"X has dtype {X.dtype} but {type(model).__name__}'s parameters are {dtype}: "
                        f"use `X.to({dtype})`.")


def checked_margins(model, X, y) -> tuple[torch.Tensor, float]:
    """The per-sample margins ``q_i = y_i f(x_i; θ)`` and the degree ``L``, after checking the
    data (finite rows, labels ±1 of shape ``(n,)``, X in the model's dtype), the output shape
    and (once per model: :func:`~implicit_bias.homogeneity.check_homogeneous`) the declared
    degree."""
    degree = declared_degree(model)
    check_targets(X, y)
    _check_dtype(model, X)
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
