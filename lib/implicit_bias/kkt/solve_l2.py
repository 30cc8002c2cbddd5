"""The ℓ2 certificate program (``norm.lp == 2``): exactly reduced to k + 1 dimensions after
a QR factorization, and the fixed-subgradient variant by non-negative least squares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..norms import _cvxpy
from .solve_cvxpy import solve_problem

#: ``(Q, R_A, r_θ)``: the thin QR factors of ``[A, θ̂]`` (:func:`qr_factors`).
Factors = tuple[np.ndarray, np.ndarray, np.ndarray]


def qr_factors(A: np.ndarray, theta_hat: np.ndarray) -> Factors:
    """Thin QR of ``[A, θ̂]``: returns ``(Q, R_A, r_θ)`` with ``A = Q R_A``, ``θ̂ = Q r_θ``."""
    Q, R = np.linalg.qr(np.column_stack([A, theta_hat]))
    return Q, R[:, :-1], R[:, -1]


def solve_l2_reduced(factors: Factors, solver: str | None,
                     solver_options: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray, str]:
    """The ℓ2 program, reduced exactly to the span of the gradients and θ.

    With ``[A, θ̂] = QR`` (thin QR), any v splits as ``Qc + w`` with ``w ⊥ range(Q)``; then
    ``‖Aμ − v‖² = ‖R_A μ − c‖² + ‖w‖²``, ``‖v‖² = ‖c‖² + ‖w‖²`` and ``⟨v, θ̂⟩ = ⟨c, r_θ⟩``,
    so ``w = 0`` is optimal and the program lives in ``k + 1`` dimensions."""
    cp = _cvxpy()
    Q, RA, r_theta = factors
    mu = cp.Variable(RA.shape[1], nonneg=True)
    c = cp.Variable(RA.shape[0])
    problem = cp.Problem(cp.Minimize(cp.norm(RA @ mu - c, 2) + 1 - r_theta @ c), [cp.norm(c, 2) <= 1])
    status = solve_problem(problem, solver, solver_options)
    if mu.value is None or c.value is None:
        raise RuntimeError(f"kkt_certificate: the solver returned no solution (status {status}).")
    return np.asarray(mu.value), Q @ np.asarray(c.value), status


def solve_nnls(factors: Factors, theta_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """ℓ2 with v fixed to θ̂ (the only point of ∂‖θ‖₂): ``min_{μ≥0} ‖Aμ − θ̂‖₂`` by NNLS,
    on the QR factors (``‖Aμ − θ̂‖ = ‖R_A μ − r_θ‖``: k + 1 rows instead of p). Gap 0; an
    upper bound on the relaxed program, which may also move v."""
    from scipy.optimize import nnls

    _, RA, r_theta = factors
    mu, _ = nnls(RA, r_theta, maxiter=50 * max(RA.shape[1], 1))
    return mu, theta_hat.copy(), "optimal"
