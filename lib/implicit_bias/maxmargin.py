"""Exact max-margin solutions of linear models, with cvxpy.

``max_margin(X, y, norm)`` solves ``min ‖w‖ s.t. y_i x_i·w ≥ 1`` for ℓ2 (a QP), ℓ∞ and ℓ1
(LPs) or a Mahalanobis norm ``sqrt(wᵀ M w)`` (a QP), and returns the unit-norm max-margin
direction and the margin ``γ* = 1 / ‖w*‖``. Steepest descent in a norm converges in
direction to the solution for that norm (Soudry et al. 2018; Gunasekar et al. 2018).
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import torch

from .data import check_labels


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


def norm_value(w, norm) -> float:
    """Value of ``w`` in a norm name (``l2``, ``linf``, ``l1``) or a PSD matrix M."""
    w = _as_numpy(w)
    if isinstance(norm, str):
        if norm == "spectral":
            return float(np.linalg.norm(w.reshape(w.shape[0], -1), 2))
        return float({"l2": np.linalg.norm(w), "linf": np.abs(w).max(),
                      "l1": np.abs(w).sum()}[norm])
    return float(np.sqrt(w @ _as_numpy(norm) @ w))


def max_margin(X, y, norm="l2") -> MaxMarginSolution:
    """Max-margin direction of a linear model without bias in ``norm``: ``'l2'``,
    ``'linf'``, ``'l1'``, ``'spectral'`` (for matrix inputs ``X`` of shape (n, a, b): the
    predictor is ``⟨W, x⟩`` and the norm is ``W``'s largest singular value, an SDP), or a
    symmetric positive-definite matrix ``M`` (or a positive vector, taken as ``diag(M)``)
    for ``‖w‖_M = sqrt(wᵀ M w)``. The direction has the shape of one input.

    Raises :class:`NotSeparableError` when no ``w`` has ``y_i x_i·w > 0`` for all i."""
    X, y = _as_numpy(X), _as_numpy(y)
    check_labels(y)
    shape = X.shape[1:]
    spectral = isinstance(norm, str) and norm == "spectral"  # norm may be a matrix M
    if spectral and X.ndim != 3:
        raise ValueError(f"The spectral max margin needs matrix inputs (n, a, b); got {X.shape}.")
    if X.ndim != (3 if spectral else 2) or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be (n, d) with n = len(y); got {X.shape} and {y.shape}.")
    X = X.reshape(X.shape[0], -1)
    Z = y[:, None] * X
    w = cp.Variable(X.shape[1])
    if spectral:
        objective, name = cp.sigma_max(cp.reshape(w, shape, order="C")), "spectral"
    elif isinstance(norm, str):
        objective = {"l2": 0.5 * cp.sum_squares(w), "linf": cp.norm(w, "inf"),
                     "l1": cp.norm(w, 1)}.get(norm)
        if objective is None:
            raise ValueError(f"Unknown norm {norm!r}; use 'l2', 'linf', 'l1' or a PSD matrix.")
        name = norm
    else:
        M = _as_numpy(norm)
        M = np.diag(M) if M.ndim == 1 else M
        if M.shape != (X.shape[1],) * 2 or not np.allclose(M, M.T):
            raise ValueError(f"M must be a symmetric {X.shape[1]}×{X.shape[1]} matrix.")
        if np.linalg.eigvalsh(M).min() <= 0:
            raise ValueError("M must be positive definite for sqrt(wᵀMw) to be a norm.")
        objective = 0.5 * cp.quad_form(w, cp.psd_wrap(M))
        norm, name = M, "mahalanobis"
    constraint = Z @ w >= 1
    problem = cp.Problem(cp.Minimize(objective), [constraint])
    problem.solve()
    if problem.status in ("infeasible", "infeasible_inaccurate"):
        raise NotSeparableError(
            "The data are not linearly separable through the origin, so no max-margin "
            "solution exists. Check the labels, or add a feature for a bias term."
        )
    if problem.status not in ("optimal", "optimal_inaccurate") or w.value is None:
        raise RuntimeError(f"cvxpy could not solve the max-margin problem: {problem.status}.")
    wv = np.asarray(w.value).reshape(shape)
    size = norm_value(wv, norm)
    direction = wv / size
    margins = Z @ direction.reshape(-1)
    dual = np.asarray(constraint.dual_value).reshape(-1)
    if name in ("linf", "l1", "spectral"):
        # These problems minimize ‖w‖; the multipliers of min ½‖w‖² are ‖w*‖ times theirs.
        dual = dual * size
    gamma = float(margins.min())
    support = np.flatnonzero(margins <= gamma * (1 + 1e-6) + 1e-9)
    return MaxMarginSolution(direction, gamma, name, dual, support)


def solution_spread(X, y, norm="linf", tol: float = 1e-9) -> float:
    """How far apart two max-margin solutions can be: the largest coordinate range over
    the set of unit-norm directions whose margin is within ``tol`` (relative) of the
    maximum. About 0 when the solution is unique; ℓ∞ and ℓ1 solutions often are not, and
    then a cosine with one solver's answer is no test of convergence (compare margins).
    Strictly convex norms (ℓ2, Mahalanobis) have a unique solution: 0 without solving."""
    if not isinstance(norm, str) or norm == "l2":
        return 0.0
    X, y = _as_numpy(X), _as_numpy(y)
    best = max_margin(X, y, norm)
    Z = y[:, None] * X
    w = cp.Variable(X.shape[1])
    size = {"linf": cp.norm(w, "inf"), "l1": cp.norm(w, 1)}[norm]
    feasible = [size <= 1, Z @ w >= best.margin * (1 - tol)]
    spread = 0.0
    for j in range(X.shape[1]):
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
