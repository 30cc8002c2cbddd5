"""The ℓ∞ certificate program (dual norm ℓ1, ``norm.lp == inf``) by a small primal-dual
interior-point method.

``min_{μ≥0, ‖v‖₁≤1} ‖Aμ − v‖₁ − ⟨v, θ̂⟩`` is the standard-form LP over
``x = (μ, v⁺, v⁻, r⁺, r⁻, w) ≥ 0`` with ``Aμ − v⁺ + v⁻ − r⁺ + r⁻ = 0`` and
``Σv⁺ + Σv⁻ + w = 1``. Generic sparse solvers choke on the dense columns of A (one per
point, p long); here every coordinate is separable given μ, so the normal equations are a
diagonal plus a rank-k term plus one row, solved exactly through a k × k Cholesky
factorization (Woodbury): about p·k² flops per iteration (Mehrotra predictor-corrector, as
in Nocedal & Wright, Alg. 14.3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np

#: A solve of the normal equations (or their product with a vector): ``(r₁, r₀) ↦ (Δy₁, Δy₀)``.
_Solve = Callable[[np.ndarray, float], tuple[np.ndarray, float]]


class _LinfLP:
    """The LP ``min cᵀx s.t. E x = b, x ≥ 0`` of the module docstring, for unit-column
    ``Ak`` (p × k) and θ̂ restricted to the same rows; ``b = (0, 1)``."""

    def __init__(self, Ak: np.ndarray, th: np.ndarray) -> None:
        self.Ak, self.th = Ak, th
        p, k = self.p, self.k = Ak.shape
        self.n = k + 4 * p + 1
        self.c = np.concatenate([np.zeros(k), -th, th, np.ones(p), np.ones(p), [0.0]])
        self.b1, self.b0 = np.zeros(p), 1.0
        self.cuts = np.cumsum([k, p, p, p, p])

    def E(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        mu, a, b, e, f, w = np.split(x, self.cuts)
        return self.Ak @ mu - a + b - e + f, a.sum() + b.sum() + w[0]

    def ET(self, y1: np.ndarray, y0: float) -> np.ndarray:
        return np.concatenate([self.Ak.T @ y1, -y1 + y0, y1 + y0, -y1, y1, [y0]])

    def start(self) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        """A strictly feasible primal-dual start. Primal: v = 0, the budget half used, r = Aμ
        split with a cushion. Dual: y₁ = −θ̂/2, y₀ = −2, feasible because ⟨A_i, θ̂⟩ = q_i > 0
        (Euler's identity), so every slack is positive."""
        p = self.p
        mu0 = np.ones(self.k)
        r = self.Ak @ mu0
        cushion = np.abs(r).mean() + 1.0 / p
        x = np.concatenate([mu0, np.full(p, 0.25 / p), np.full(p, 0.25 / p),
                            np.maximum(r, 0) + cushion, np.maximum(-r, 0) + cushion, [0.5]])
        y1, y0 = -0.5 * self.th, -2.0
        s = self.c - self.ET(y1, y0)
        if s.min() <= 0:  # Aᵀθ̂ ≤ 0 somewhere (not a separating θ): fall back on a shift
            s = s + (1e-3 - s.min())
        return x, y1, y0, s

    def normal_solver(self, D: np.ndarray, cg_steps: int) -> _Solve:
        """A solver for the normal equations ``(E D Eᵀ) Δy = r``, with D > 0 diagonal."""
        from scipy.linalg import cho_factor, cho_solve

        Ak = self.Ak
        Dmu, Da, Db, De, Df, Dw = np.split(D, self.cuts)
        d = Da + Db + De + Df
        B = Ak * np.sqrt(Dmu)
        Bd = B / d[:, None]
        chol = cho_factor(np.eye(self.k) + B.T @ Bd, lower=True)
        m = Db - Da
        m00 = Da.sum() + Db.sum() + Dw[0]

        def m11_inv(r: np.ndarray) -> np.ndarray:
            rd = r / d[:, None]
            out: np.ndarray = rd - Bd @ cho_solve(chol, B.T @ rd)  # scipy has no hints
            return out

        t = m11_inv(m[:, None])[:, 0]
        schur = m00 - m @ t

        def woodbury(r1: np.ndarray, r0: float) -> tuple[np.ndarray, float]:
            u = m11_inv(r1[:, None])[:, 0]
            dy0 = (r0 - m @ u) / schur
            return u - t * dy0, dy0

        def apply(y1: np.ndarray, y0: float) -> tuple[np.ndarray, float]:
            return d * y1 + Ak @ (Dmu * (Ak.T @ y1)) + m * y0, m @ y1 + m00 * y0

        return lambda r1, r0: _refined(woodbury, apply, r1, r0, cg_steps)


def _refined(woodbury: _Solve, apply: _Solve, r1: np.ndarray, r0: float,
             cg_steps: int) -> tuple[np.ndarray, float]:
    """Woodbury loses digits when D spans many orders of magnitude near the optimum;
    conjugate gradients on the exact system (``apply``), preconditioned by it, recover
    them (a few cheap O(p·k) iterations)."""
    x1, x0 = woodbury(r1, r0)
    a1, a0 = apply(x1, x0)
    e1, e0 = r1 - a1, r0 - a0
    z1, z0 = woodbury(e1, e0)
    d1, d0 = z1, z0
    rz = cast(float, e1 @ z1 + e0 * z0)  # a dot product: a scalar (numpy's hints say array)
    target = 1e-15 * np.sqrt(r1 @ r1 + r0**2)
    for _ in range(cg_steps):
        if np.sqrt(e1 @ e1 + e0**2) <= target or rz <= 0:
            break
        q1, q0 = apply(d1, d0)
        curvature = cast(float, d1 @ q1 + d0 * q0)
        if not curvature > 0:
            break
        alpha = rz / curvature
        x1, x0 = x1 + alpha * d1, x0 + alpha * d0
        e1, e0 = e1 - alpha * q1, e0 - alpha * q0
        z1, z0 = woodbury(e1, e0)
        rz_new = cast(float, e1 @ z1 + e0 * z0)
        d1, d0 = z1 + (rz_new / rz) * d1, z0 + (rz_new / rz) * d0
        rz = rz_new
    return x1, x0


def _step_length(x: np.ndarray, dx: np.ndarray) -> float:
    neg = dx < 0
    return min(1.0, float(np.min(-x[neg] / dx[neg]))) if neg.any() else 1.0


def _mehrotra_step(lp: _LinfLP, x: np.ndarray, y1: np.ndarray, y0: float, s: np.ndarray, rb1: np.ndarray,
                   rb0: float, rc: np.ndarray, gap: float,
                   solve: _Solve) -> tuple[np.ndarray, np.ndarray, float, np.ndarray] | None:
    """One predictor-corrector step; None when it stalls (step lengths below 1e-8)."""

    def direction(rxs: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        """Newton direction for E Δx = −r_b, EᵀΔy + Δs = −r_c, SΔx + XΔs = rxs."""
        g1, g0 = lp.E(rxs / s + D * rc)
        dy1, dy0 = solve(-rb1 - g1, -rb0 - g0)
        ds = -rc - lp.ET(dy1, dy0)
        return (rxs - x * ds) / s, dy1, dy0, ds

    D = x / s
    dx, _, _, ds = direction(-x * s)  # predictor (affine scaling)
    ap, ad = _step_length(x, dx), _step_length(s, ds)
    sigma = (((x + ap * dx) @ (s + ad * ds)) / lp.n / gap) ** 3
    dx, dy1, dy0, ds = direction(-x * s - dx * ds + sigma * gap)  # corrector
    ap, ad = 0.995 * _step_length(x, dx), 0.995 * _step_length(s, ds)
    if max(ap, ad) < 1e-8:
        return None
    return x + ap * dx, y1 + ad * dy1, y0 + ad * dy0, s + ad * ds


def _interior_point(lp: _LinfLP, tol: float, max_iter: int, cg_steps: int) -> tuple[np.ndarray, str, float]:
    """Iterate from ``lp.start()`` until the scaled residuals and duality gap are below
    ``tol``; returns the best iterate, the status and its error."""
    x, y1, y0, s = lp.start()
    status, best, best_x = "max_iter", np.inf, x
    c_norm = 1 + np.linalg.norm(lp.c)
    for _ in range(max_iter):
        rb1, rb0 = lp.E(x)
        rb1, rb0 = rb1 - lp.b1, rb0 - lp.b0
        rc = lp.ET(y1, y0) + s - lp.c
        gap = x @ s / lp.n
        primal, dual_obj = lp.c @ x, lp.b0 * y0
        error = max(np.sqrt(rb1 @ rb1 + rb0**2) / (1 + abs(lp.b0)), np.linalg.norm(rc) / c_norm,
                    abs(primal - dual_obj) / (1 + abs(primal)))
        if not np.isfinite(error):
            break
        if error < best:
            best, best_x = error, x
        elif best < 1e-4 and error > 10 * best:  # rounding has taken over: keep the best
            break
        if error <= tol:
            status = "optimal"
            break
        try:
            solve = lp.normal_solver(x / s, cg_steps)
        except np.linalg.LinAlgError:
            break
        step = _mehrotra_step(lp, x, y1, y0, s, rb1, rb0, rc, gap, solve)
        if step is None:
            break
        x, y1, y0, s = step
    return best_x, status, best


def solve_linf_ipm(A: np.ndarray, theta_hat: np.ndarray, tol: float = 1e-8, max_iter: int = 100,
                   cg_steps: int = 10) -> tuple[np.ndarray, np.ndarray, str]:
    """The ℓ∞ program by the interior-point method of the module docstring; returns
    ``(μ, v, status)``. Rows of A that are zero are dropped first: there
    ``|v_j| − v_j θ̂_j ≥ 0`` and v_j spends budget, so ``v_j = 0`` is optimal."""
    keep = np.flatnonzero(np.abs(A).sum(axis=1) > 0)
    col = np.linalg.norm(A[keep], axis=0)
    col[col == 0] = 1.0
    lp = _LinfLP(A[keep] / col, theta_hat[keep])  # unit columns; μ is scaled back at the end
    x, status, best = _interior_point(lp, tol, max_iter, cg_steps)
    if status != "optimal":
        status = f"{'optimal_inaccurate' if best <= 1e-5 else 'inaccurate'} (error {best:.1e})"
    mu, a, b = np.split(x, lp.cuts)[:3]
    v = np.zeros(A.shape[0])
    v[keep] = a - b
    return mu / col, v, status
