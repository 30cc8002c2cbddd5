"""The certificate itself: rescale θ, pick the near-active points, build the program, route
it to a solver and report the result at a feasible point (see the package docstring)."""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from ..margins import NotSeparatingError, as_pairs, checked_margins
from ..norms import Norm, _unflat, as_norm
from .jacobian import margin_jacobian
from .solve_cvxpy import solve_cvxpy
from .solve_l2 import Factors, qr_factors, solve_l2_reduced, solve_nnls
from .solve_linf import solve_linf_ipm

#: ℓ∞ programs whose gradient block has at least this many entries (p·k) use the
#: dedicated interior-point method (:func:`.solve_linf.solve_linf_ipm`); smaller ones use Clarabel.
IPM_MIN_SIZE = 200_000
METHODS = ("auto", "cvxpy", "nnls", "ipm")


@dataclass(repr=False)
class KKTCertificate:
    """The result of :func:`kkt_certificate`. All quantities refer to θ rescaled so that
    ``min_i q_i = 1``; ``multipliers`` are the λ of the margin problem at that θ."""

    epsilon: float  # stationarity + subgradient_gap
    stationarity: float  # ‖Jᵀλ − ‖θ‖v‖_* / ‖θ‖
    subgradient_gap: float  # 1 − ⟨v, θ⟩/‖θ‖ ≥ 0
    delta: float  # Σ λ_i (q_i − 1)
    delta_relative: float  # L·δ / ‖θ‖² (= δ / Σλ at a KKT point)
    multipliers: np.ndarray  # λ over all n samples (multiclass: n(k−1) pairs), zero outside `active`
    support: np.ndarray  # indices with λ_i > 1e-6 · max λ
    active: np.ndarray  # the candidate (near-active) indices
    norm: str
    norm_value: float  # ‖θ‖ of the rescaled θ
    degree: float
    seconds: float
    status: str

    def __repr__(self) -> str:
        return (
            f"KKTCertificate(norm={self.norm!r}, epsilon={self.epsilon:.3e} "
            f"[stationarity={self.stationarity:.3e}, subgradient_gap={self.subgradient_gap:.3e}], "
            f"delta_relative={self.delta_relative:.3e}, active={len(self.active)}, "
            f"support={len(self.support)}, status={self.status!r}, seconds={self.seconds:.2f})"
        )


@dataclass
class Program:
    """``min_{μ ≥ 0, ‖v‖_* ≤ 1} ‖Aμ − v‖_* + 1 − ⟨v, θ̂⟩``: ``A = (‖θ‖/L)·Jᵀ`` (p × k, so
    that ⟨A_i, θ̂⟩ = q_i and Σμ = 1 at a KKT point), ``θ̂ = θ/‖θ‖`` and the parameters'
    shapes, in ``norm``."""

    A: np.ndarray
    theta_hat: np.ndarray
    shapes: list[tuple[int, ...]]
    norm: Norm


def _check_arguments(method: str, active_tol: float, max_points: int | None) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be 'auto', 'cvxpy', 'ipm' or 'nnls', got {method!r}.")
    if not (isinstance(active_tol, numbers.Real) and not isinstance(active_tol, bool)
            and float(active_tol) > 0):
        # 0 is refused: margins that are equal in exact arithmetic differ by rounding (and by
        # a solver's tolerance), so "exactly active" would keep one point of the support.
        raise ValueError(
            f"active_tol must be a number > 0, got {active_tol!r}: the candidates are the points "
            "with q_i ≤ 1 + active_tol, and at 0 rounding leaves only the smallest margin. Use about "
            "1e-6 for an exact max-margin solution and 0.1–1 for a trained network.")
    if max_points is not None and not (isinstance(max_points, numbers.Integral)
                                       and not isinstance(max_points, bool) and int(max_points) >= 1):
        raise ValueError(f"max_points must be None or a positive integer, got {max_points!r}.")


def _check_route(norm: Norm, method: str) -> None:
    if method == "nnls" and norm.lp != 2:
        raise ValueError("method='nnls' is the ℓ2 route; use 'auto' or 'cvxpy' for other norms.")
    if method == "ipm" and norm.lp != math.inf:
        raise ValueError("method='ipm' is the ℓ∞ route; use 'auto' or 'cvxpy' for other norms.")


def _rescaled(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, params: list[torch.Tensor],
              degree: float) -> tuple[list[torch.Tensor], torch.Tensor]:
    """θ / (min q)^{1/L} and its margins q (so that min q = 1)."""
    with torch.no_grad():
        q = (y * model(X)).detach()
    q_min = float(q.min())
    if not q_min > 0:
        raise NotSeparatingError(
            f"The model is not separating the data: margin ≤ 0 (min_i y_i f(x_i) = {q_min:.3g}); "
            "a KKT certificate needs a positive margin. Train longer first."
        )
    scale = q_min ** (-1.0 / degree)
    return [p * scale for p in params], q / q_min


def _near_active(q: torch.Tensor, active_tol: float, max_points: int | None) -> torch.Tensor:
    """Indices with ``q_i ≤ 1 + active_tol``, smallest margins first, at most ``max_points``."""
    order = torch.argsort(q)
    active = order[q[order] <= 1.0 + active_tol]
    return active if max_points is None else active[:max_points]


def _program(model: torch.nn.Module, params: list[torch.Tensor], X: torch.Tensor, y: torch.Tensor, norm: Norm,
             norm_value: float, degree: float) -> Program:
    J = margin_jacobian(model, params, X, y)
    A = (J.T * (norm_value / degree)).cpu().double().numpy()
    flat_theta = torch.cat([p.reshape(-1) for p in params]).cpu().double().numpy()
    return Program(A, flat_theta / norm_value, [tuple(p.shape) for p in params], norm)


def evaluate(program: Program, mu: np.ndarray, v: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(stationarity, gap, μ) at a feasible point: μ clipped to ≥ 0 and v scaled into the
    dual ball, so the sum is a valid upper bound on the program's minimum."""
    mu = np.clip(mu, 0.0, None)
    like = [torch.empty(s, dtype=torch.float64) for s in program.shapes]

    def dual(vec: np.ndarray) -> float:
        return float(program.norm.dual(_unflat(torch.as_tensor(vec, dtype=torch.float64), like)))

    v_dual = dual(v)
    if v_dual > 1:
        v = v / v_dual
    return dual(program.A @ mu - v), max(float(1.0 - program.theta_hat @ v), 0.0), mu


def _solve(program: Program, method: str, solver: str | None,
           solver_options: Mapping[str, Any] | None) -> tuple[float, float, np.ndarray, str]:
    """Route the program to its solver (the ℓ2 and ℓ∞ fast paths key on ``norm.lp``);
    returns ``(stationarity, gap, μ, status)`` at a feasible point."""
    A, theta_hat, norm = program.A, program.theta_hat, program.norm
    factors = qr_factors(A, theta_hat) if method in ("auto", "nnls") and norm.lp == 2 else None
    if method == "nnls":  # ℓ2 only (_check_route), so factored above
        mu, v, status = solve_nnls(cast(Factors, factors), theta_hat)
    elif factors is not None:
        mu, v, status = solve_l2_reduced(factors, solver, solver_options)
    elif method == "ipm" or (method == "auto" and norm.lp == math.inf and A.size >= IPM_MIN_SIZE):
        with np.errstate(all="ignore"):  # a failed step is caught and the best iterate kept
            mu, v, status = solve_linf_ipm(A, theta_hat)
    else:
        mu, v, status = solve_cvxpy(A, theta_hat, norm, program.shapes, solver, solver_options)
    stationarity, gap, mu = evaluate(program, mu, v)
    if stationarity + gap > 1.0:
        # λ = 0, v = 0 is always feasible with ε = 1: a failed solve can do no worse.
        stationarity, gap, mu = 0.0, 1.0, np.zeros_like(mu)
        status = f"{status}; fell back on λ = 0"
    if method == "auto" and factors is not None:
        # NNLS (v = θ/‖θ‖₂) is also feasible and more accurate when ε is near 0: keep the better.
        mu_n, v_n, _ = solve_nnls(factors, theta_hat)
        alt = evaluate(program, mu_n, v_n)
        if alt[0] + alt[1] < stationarity + gap:
            stationarity, gap, mu = alt
    return stationarity, gap, mu, str(status)


def kkt_certificate(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, norm: Norm | str = "l2",
                    active_tol: float = 0.5, max_points: int | None = None, method: str = "auto",
                    solver: str | None = None,
                    solver_options: dict[str, Any] | None = None) -> KKTCertificate:
    """How close the model's direction is to a KKT direction of ``norm``'s margin problem.

    ``model`` is a homogeneous model (``model.degree`` = L), ``(X, y)`` the training data
    with labels ±1 and ``norm`` a :class:`~implicit_bias.norms.Norm` (any one with a
    ``dual_expr``, a user's own included) or a registered name (``l2``, ``linf``, ``l1``,
    ``spectral``, ``hybrid``, …). Steps:

    1. ``q = y·f(X; θ)``; if ``min q ≤ 0`` the model does not separate the data and a
       ``ValueError`` is raised. θ is rescaled to ``θ / (min q)^{1/L}`` so ``min q = 1``,
       which makes every number below invariant to rescaling θ.
    2. Only near-active points ``q_i ≤ 1 + active_tol`` (default 0.5) get multipliers, at
       most ``max_points`` of them (the smallest margins). This is safe: restricting the
       multipliers to a subset can only make the minimal residual larger, so a small ε is
       still a valid certificate (it is conservative), and the complementary-slackness
       violation is bounded by ``δ = Σ λ_i (q_i − 1) ≤ active_tol · Σ λ_i``. Read ε with
       ``delta_relative``: a larger ``active_tol`` can only lower ε, and when the candidates'
       gradients span the parameter space (few parameters, many candidates) any θ gets a
       small ε by leaning on points that are not active — δ then shows it. Use a small
       ``active_tol`` (e.g. 1e-6) for exact solutions, and 0.1–1 for trained networks,
       whose margins on the eventual support have not equalized yet. 0 is refused: equal
       margins differ by rounding, so it would keep only the smallest one.
    3. The margin gradients of those points are computed with ``torch.func``.
    4. The convex program of the package docstring is solved for λ ≥ 0 and v.
       ``method='auto'``: ℓ2 by the exact (k+1)-dimensional reduction (and NNLS, keeping
       the better); ℓ∞ by the dedicated interior-point method when ``p·k ≥ IPM_MIN_SIZE``;
       everything else by cvxpy after the exact reduction of spectral / ℓ2 parts.
       ``'cvxpy'`` forces cvxpy; ``'ipm'`` (ℓ∞ only) forces the interior-point method;
       ``'nnls'`` (ℓ2 only) fixes v = θ/‖θ‖₂ and solves non-negative least squares (an
       upper bound, ``sin φ`` instead of ``1 − cos φ``). ``solver``/``solver_options`` go
       to ``cvxpy.Problem.solve`` (semidefinite programs default to SCS with
       ``eps = 1e-5``, see :data:`SDP_DEFAULTS`).

    Returns a :class:`KKTCertificate`: ``epsilon = stationarity + subgradient_gap``,
    ``delta`` and the scale-free ``delta_relative = L·δ/‖θ‖²`` (at a KKT point
    ``Σλ_i = ‖θ‖²/L`` by Euler's identity ``⟨∇q_i, θ⟩ = L q_i``, so this is δ/Σλ there),
    the multipliers over all samples, their support and the candidate set.

    A multi-output model (``num_classes = k``) with integer class labels is certified for
    Lyu & Li's multiclass margin problem, ``min ½‖θ‖² s.t. f_{y_i}(x_i) − f_j(x_i) ≥ 1`` for
    every ``j ≠ y_i``: one constraint, and one multiplier, per pair (``i``, ``j``), indexed
    as the rows of :func:`~implicit_bias.data.class_pairs` (sample i's ``k − 1`` pairs at
    ``i(k−1) …``).
    """
    start = time.perf_counter()
    _check_arguments(method, active_tol, max_points)
    model, X, y = as_pairs(model, X, y)  # a multi-output model: one constraint per (sample, other class)
    _, degree = checked_margins(model, X, y)  # the labels, the output's shape, the declared degree
    params = [p.detach() for p in model.parameters()]
    norm = as_norm(norm, params)
    _check_route(norm, method)
    params, q = _rescaled(model, X, y, params, degree)
    active = _near_active(q, active_tol, max_points)
    norm_value = float(norm(params))
    program = _program(model, params, X[active], y[active], norm, norm_value, degree)
    stationarity, gap, mu, status = _solve(program, method, solver, solver_options)

    lam_active = mu * (norm_value**2 / degree)
    multipliers = np.zeros(len(q))
    idx = active.cpu().numpy()
    multipliers[idx] = lam_active
    delta = float(lam_active @ (q[active].cpu().double().numpy() - 1.0))
    top = lam_active.max() if lam_active.size else 0.0
    support = np.sort(idx[lam_active > 1e-6 * top]) if top > 0 else np.array([], dtype=int)
    return KKTCertificate(
        epsilon=stationarity + gap, stationarity=stationarity, subgradient_gap=gap, delta=delta,
        delta_relative=degree * delta / norm_value**2, multipliers=multipliers, support=support,
        active=np.sort(idx), norm=norm.name, norm_value=norm_value, degree=degree,
        seconds=time.perf_counter() - start, status=status,
    )
