"""Exact max-margin solutions of linear models, with cvxpy.

``max_margin(X, y, norm)`` solves ``min ‖w‖ s.t. y_i x_i·w ≥ 1`` in any norm that has a
cvxpy expression (:meth:`~implicit_bias.norms.Norm.value_expr`): ℓ2 (a QP), ℓ∞ and ℓ1
(LPs), max-spectral for matrix inputs (an SDP), a Mahalanobis norm ``sqrt(wᵀ M w)`` (a QP)
or a user's own norm, and returns the unit-norm max-margin direction and the margin
``γ* = 1 / ‖w*‖``. Steepest descent in a norm converges in direction to the solution for
that norm (Soudry et al. 2018; Gunasekar et al. 2018).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import norms as _norms
from .data import check_labels
from .norms import _cvxpy


class NotSeparableError(ValueError):
    """The data cannot be separated by a linear predictor through the origin."""


@dataclass
class MaxMarginSolution:
    direction: np.ndarray  # unit-norm in `norm`
    margin: float  # max over unit-norm w of min_i y_i x_i·w
    norm: str
    dual: np.ndarray  # KKT multipliers λ of min ½‖w‖² s.t. y_i x_i·w ≥ 1 (any norm)
    support: np.ndarray  # indices of the active constraints

    def __repr__(self):
        return (f"MaxMarginSolution(norm={self.norm!r}, margin={self.margin:.6g}, "
                f"support={self.support.tolist()})")


def _as_numpy(a):
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=float)


def _as_norm(norm, shape=None) -> _norms.Norm:
    """A :class:`~implicit_bias.norms.Norm`, a registered name, or a symmetric
    positive-definite matrix M (or a positive vector, ``diag(M)``) for the Mahalanobis norm
    ``sqrt(wᵀMw)``. ``shape``, one weight's shape, builds norms that depend on it (hybrid)."""
    if isinstance(norm, (str, _norms.Norm)):
        params = None if shape is None else [torch.zeros(shape, dtype=torch.float64)]
        return _norms.as_norm(norm, params)
    return _norms.Mahalanobis(_as_numpy(norm))


def norm_value(w, norm) -> float:
    """Value of ``w`` (one weight, numpy or torch) in ``norm``: a Norm, a registered name or a
    PSD matrix M."""
    w = torch.as_tensor(_as_numpy(w))
    return float(_as_norm(norm, tuple(w.shape))([w]))


def _signed_inputs(X, y, norm: _norms.Norm):
    """``Z = y_i x_i`` flattened to (n, size), and the weight's shape."""
    X, y = _as_numpy(X), _as_numpy(y)
    check_labels(y)
    ndim = norm.max_margin_ndim
    if ndim == 2 and X.ndim != 3:
        raise ValueError(f"The {norm.name} max margin needs matrix inputs (n, a, b); got {X.shape}.")
    if X.ndim != ndim + 1 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be (n, d) with n = len(y); got {X.shape} and {y.shape}.")
    return y[:, None] * X.reshape(X.shape[0], -1), X.shape[1:]


def _solved(problem, w) -> None:
    problem.solve()
    if problem.status in ("infeasible", "infeasible_inaccurate"):
        raise NotSeparableError(
            "The data are not linearly separable through the origin, so no max-margin "
            "solution exists. Check the labels, or add a feature for a bias term."
        )
    if problem.status not in ("optimal", "optimal_inaccurate") or w.value is None:
        raise RuntimeError(f"cvxpy could not solve the max-margin problem: {problem.status}.")


def max_margin(X, y, norm="l2") -> MaxMarginSolution:
    """Max-margin direction of a linear model without bias in ``norm``: a
    :class:`~implicit_bias.norms.Norm` or its name (``'l2'``, ``'linf'``, ``'l1'``,
    ``'spectral'``, a registered one), or a symmetric positive-definite matrix ``M`` (or a
    positive vector, taken as ``diag(M)``) for ``‖w‖_M = sqrt(wᵀ M w)``. Inputs are
    vectors ``X`` (n, d), or matrices (n, a, b) for a matrix norm such as ``'spectral'``
    (the predictor is ``⟨W, x⟩`` and the norm is ``W``'s largest singular value, an SDP).
    The direction has the shape of one input.

    Raises :class:`NotSeparableError` when no ``w`` has ``y_i x_i·w > 0`` for all i."""
    cp = _cvxpy()
    X = _as_numpy(X)
    norm = _as_norm(norm, X.shape[1:])
    Z, shape = _signed_inputs(X, y, norm)
    w = cp.Variable(Z.shape[1])
    objective = norm.max_margin_objective(w, [shape])
    constraint = Z @ w >= 1
    problem = cp.Problem(cp.Minimize(objective), [constraint])
    _solved(problem, w)
    wv = np.asarray(w.value).reshape(shape)
    size = norm_value(wv, norm)
    direction = wv / size
    margins = Z @ direction.reshape(-1)
    dual = np.asarray(constraint.dual_value).reshape(-1)
    if not objective.is_quadratic():
        # ‖w‖ was minimized (½‖w‖² is a quadratic form, a norm never is): the multipliers
        # of min ½‖w‖² are ‖w*‖ times its multipliers.
        dual = dual * size
    gamma = float(margins.min())
    support = np.flatnonzero(margins <= gamma * (1 + 1e-6) + 1e-9)
    return MaxMarginSolution(direction, gamma, norm.name, dual, support)


def solution_spread(X, y, norm="linf", tol: float = 1e-9) -> float:
    """How far apart two max-margin solutions can be: the largest coordinate range over
    the set of unit-norm directions whose margin is within ``tol`` (relative) of the
    maximum. About 0 when the solution is unique; ℓ∞ and ℓ1 solutions often are not, and
    then a cosine with one solver's answer is no test of convergence (compare margins).
    Strictly convex norms (ℓ2, Mahalanobis) have a unique solution: 0 without solving."""
    cp = _cvxpy()
    X = _as_numpy(X)
    norm = _as_norm(norm, X.shape[1:])
    if norm.strictly_convex:
        return 0.0
    best = max_margin(X, y, norm)
    Z, shape = _signed_inputs(X, y, norm)
    w = cp.Variable(Z.shape[1])
    feasible = [norm.value_expr(w, [shape]) <= 1, Z @ w >= best.margin * (1 - tol)]
    spread = 0.0
    for j in range(Z.shape[1]):
        hi = cp.Problem(cp.Maximize(w[j]), feasible)
        hi.solve()
        top = w.value[j]
        lo = cp.Problem(cp.Minimize(w[j]), feasible)
        lo.solve()
        spread = max(spread, float(top - w.value[j]))
    return spread


class FixedPointError(RuntimeError):
    """The dual fixed-point iteration of :func:`adaptive_mahalanobis` did not converge."""


@dataclass
class AdaptiveNormSolution:
    """The data-adaptive Mahalanobis max margin of per-sample Adam (Baek, Song & Yun 2025)."""

    direction: np.ndarray  # unit-‖·‖_M limit direction M^{-1} Σ α_i z_i
    margin: float  # max-margin of the direction in ‖·‖_M
    M: np.ndarray  # diagonal of M(α) = diag(sqrt(Σ_i α_i² z_i∘z_i))
    multipliers: np.ndarray  # α: the fixed point, on the simplex
    support: np.ndarray  # indices of the active constraints
    iterations: int
    residuals: np.ndarray  # ‖λ(α_k)/Σλ − α_k‖₁ per iteration

    def __repr__(self):
        return (f"AdaptiveNormSolution(margin={self.margin:.6g}, support={self.support.tolist()}, "
                f"iterations={self.iterations}, residual={self.residuals[-1]:.2g})")


def adaptive_matrix(Z, alpha) -> np.ndarray:
    """The diagonal of ``M(α) = diag(sqrt(Σ_i α_i² z_i∘z_i))``: AdamProxy's denominator
    ``sqrt(Σ_i ∇L_i²)`` when the per-sample loss weights are proportional to α."""
    Z, alpha = _as_numpy(Z), _as_numpy(alpha)
    return np.sqrt((alpha[:, None] ** 2 * Z**2).sum(axis=0))


def adaptive_mahalanobis(X, y, damping: float = 0.5, tol: float = 1e-9,
                         max_iter: int = 500) -> AdaptiveNormSolution:
    """The limit direction of AdamProxy (β2 → 1 per-sample Adam; Baek, Song & Yun 2025)
    on separable data ``(X, y)``, by the dual fixed point: with ``z_i = y_i x_i`` and
    weights α on the simplex, let ``M(α) = diag(sqrt(Σ_i α_i² z_i∘z_i))``, solve the
    M-norm SVM ``min ½ wᵀ M w s.t. z_i·w ≥ 1`` for its multipliers λ, and iterate
    ``α ← (1 − damping) α + damping λ/Σλ`` from the uniform α until
    ``‖λ/Σλ − α‖₁ ≤ tol``. The direction is ``M^{-1} Σ_i α_i z_i`` — the M-norm
    max-margin direction. On generalized Rademacher data M ∝ I and the answer is ℓ2.

    Raises :class:`FixedPointError` (with the last residuals) when ``max_iter`` iterations
    do not reach ``tol``, and :class:`NotSeparableError` for non-separable data."""
    if not (isinstance(damping, (int, float)) and 0 < damping <= 1):
        raise ValueError(f"damping must lie in (0, 1], got {damping!r}.")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be > 0, got {tol!r}.")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}.")
    X, y = _as_numpy(X), _as_numpy(y)
    check_labels(y)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be (n, d) with n = len(y); got {X.shape} and {y.shape}.")
    Z = y[:, None] * X
    alpha = np.full(len(y), 1.0 / len(y))
    residuals = []
    for _ in range(max_iter):
        M = adaptive_matrix(Z, alpha)
        if M.min() <= 0:
            raise FixedPointError(
                f"M(α) has a zero diagonal entry (coordinates {np.flatnonzero(M <= 0).tolist()}): "
                "no sample with weight α_i > 0 uses them, so ‖·‖_M is not a norm. Drop "
                "coordinates that are zero on every sample.")
        lam = max_margin(X, y, M).dual.clip(min=0)
        target = lam / lam.sum()
        residuals.append(float(np.abs(target - alpha).sum()))
        alpha = (1 - damping) * alpha + damping * target
        if residuals[-1] <= tol:
            break
    else:
        raise FixedPointError(
            f"The dual fixed point did not converge in {max_iter} iterations: the last "
            f"residuals ‖λ/Σλ − α‖₁ were {', '.join(f'{r:.2g}' for r in residuals[-3:])} "
            f"(tol {tol:g}). Lower the damping (now {damping:g}) or raise max_iter.")
    M = adaptive_matrix(Z, alpha)
    w = (Z.T @ alpha) / M
    direction = w / np.sqrt(w @ (M * w))
    margins = Z @ direction
    gamma = float(margins.min())
    support = np.flatnonzero(margins <= gamma * (1 + 1e-6) + 1e-9)
    return AdaptiveNormSolution(direction, gamma, M, alpha, support, len(residuals), np.array(residuals))
