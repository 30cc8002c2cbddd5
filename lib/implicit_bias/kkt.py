"""Approximate-KKT certificates for the margin problem of a homogeneous model in a norm.

The margin problem for a norm ``‖·‖`` (see the reference, §0) is

    min ½‖θ‖²   s.t.   q_i(θ) = y_i f(x_i; θ) ≥ 1,

with KKT conditions: ``λ ≥ 0``, ``Σ_i λ_i ∇q_i(θ) ∈ ‖θ‖ ∂‖θ‖`` and ``λ_i (q_i − 1) = 0``,
where ``∂‖θ‖ = {v : ‖v‖_* ≤ 1, ⟨v, θ⟩ = ‖θ‖}``. :func:`kkt_certificate` measures how far
a trained model's direction is from being a KKT direction of that problem by solving the
small convex program

    ε = min_{λ ≥ 0, ‖v‖_* ≤ 1}  ‖Jᵀλ − ‖θ‖ v‖_* / ‖θ‖  +  (1 − ⟨v, θ⟩ / ‖θ‖)

over the multipliers λ of the (near-)active points and a dual-ball vector v, where J holds
the margin gradients ``∇q_i`` of the near-active points. The first term is the
*stationarity* residual (in the dual norm, relative to ‖θ‖, as in Lyu & Li's (ε, δ)-KKT
notion); the second, the *subgradient gap*, is ≥ 0 and vanishes exactly when
``v ∈ ∂‖θ‖``. Relaxing the subdifferential this way keeps the certificate continuous: for
ℓ∞ or spectral norms a nearly converged θ has several coordinates / singular values
*almost* at the maximum, and insisting on the exact subdifferential would make the value
jump. ``ε = 0`` with ``δ = 0`` is exactly the KKT condition; both are invariant to
rescaling θ (θ is first rescaled so that ``min_i q_i = 1``).

Reading the numbers. ``ε ≤ 1`` always (λ = 0, v = 0 is feasible), so ε near 1 means "no
evidence of stationarity" and ε → 0 at a KKT direction. Duality gives a geometric reading:

    ε = 1 − min { ‖θ/‖θ‖ + z‖ : ‖z‖ ≤ 1, ⟨∇q_i, z⟩ ≥ 0 for the near-active i },

so ε > 0 exactly when a step z that does not decrease any near-active margin (to first
order) shortens θ, and ε measures by how much. For ℓ2 this is ``ε = 1 − cos φ ≈ φ²/2``
with φ the angle between θ and the cone spanned by the near-active gradients, while the
residual of Lyu & Li's ``θ ≈ Σλ_i ∇q_i`` (``method='nnls'``) is ``sin φ ≈ φ``: the relaxed
certificate is roughly the *square* of the fixed-subgradient residual for smooth norms,
so compare ε across optimizers within one norm, not against residuals of another kind.
ε must be read together with ``delta_relative`` (see ``active_tol``).

Costs (2 CPU cores). The gradients are computed with ``torch.func.vmap`` over samples
(O(k·p) memory, about a second for k = 350, p ≈ 17k).

* ℓ2: the program is reduced *exactly* to k + 1 dimensions (everything lives in the span
  of the gradients and θ, see :func:`_solve_l2_reduced`): milliseconds after a QR.
* ℓ∞ (dual ℓ1): an LP with p rows and k dense columns. Generic sparse solvers handle
  dense columns badly (Clarabel: ~20 s, HiGHS: minutes, for p ≈ 17k and k = 350), so
  large programs (p·k ≥ :data:`IPM_MIN_SIZE`) use a dedicated interior-point method
  (:func:`_solve_linf_ipm`, a few seconds there) that stops at a relative duality gap of
  about 1e-6 to 1e-8 on such problems; small ones use Clarabel (gap 1e-8). Its residuals
  can understate its error: on one 200-digit instance it ended "optimal_inaccurate" with
  residuals of 9e-7 but ε 2.2e-5 above Clarabel's, so use ``method='cvxpy'`` when ε must be
  exact beyond 1e-4.
  ``method='cvxpy'`` forces Clarabel.
* ℓ1 (dual ℓ∞): an LP through cvxpy/Clarabel; slow for large p·k (like ℓ∞ above).
* max-spectral (dual: a sum of nuclear norms) and hybrid norms with a spectral block:
  semidefinite programs. Each matrix is first projected exactly onto the column and row
  spaces of its gradients and θ (:func:`_reduce`), so an (m × n) layer becomes at most
  ``min(m, k + n) × min(n, k + m)`` and the PSD blocks have that side sum; the columns of
  the gradient block are equilibrated and SCS starts from ``scale = 1`` (together 5–30×
  fewer iterations than SCS's defaults here). SCS solves it at ``eps = 1e-5``
  (:data:`SDP_DEFAULTS`; ε comes out within about 1e-5–1e-4 of the optimum; small
  programs, ``p·k ≤`` :data:`SMALL_SDP` after the reduction, go to Clarabel instead and
  are accurate to about 1e-8): for the
  256 × 64 layer of the benchmark about 2–6 s with 2 near-active points, 7–11 s with 16
  and 25–40 s with 75; with k ≥ 192 nothing is left to reduce (PSD side 320) and it
  takes minutes. Cap the active set (``max_points``) or loosen ``solver_options`` for
  big layers; interior-point solvers (Clarabel) are far slower on these SDPs (minutes
  for k = 2).

Whatever the solver's accuracy, the reported numbers are evaluated at a *feasible*
(λ, v) (λ clipped to ≥ 0, v scaled into the dual ball, and never worse than λ = 0,
v = 0), so the reported ε is always a valid upper bound on the program's minimum: an
inaccurate solve makes the certificate looser, never wrong.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
import torch
from torch.func import functional_call, grad, vmap

from .norms import L1, L2, Linf, MaxNorm, Norm, Spectral, _unflat, as_matrix, by_name

#: ℓ∞ programs whose gradient block has at least this many entries (p·k) use the
#: dedicated interior-point method (:func:`_solve_linf_ipm`); smaller ones use Clarabel.
IPM_MIN_SIZE = 200_000

#: Solver options used for semidefinite programs (spectral / hybrid norms) unless given.
SDP_DEFAULTS = {"solver": "SCS", "eps_abs": 1e-5, "eps_rel": 1e-5, "max_iters": 20000, "scale": 1.0}
#: Semidefinite programs with at most this many reduced parameters × candidates go to
#: Clarabel instead (interior point: accurate to ~1e-8 and fast while the program is small).
SMALL_SDP = 2000


@dataclass(repr=False)
class KKTCertificate:
    """The result of :func:`kkt_certificate`. All quantities refer to θ rescaled so that
    ``min_i q_i = 1``; ``multipliers`` are the λ of the margin problem at that θ."""

    epsilon: float  # stationarity + subgradient_gap
    stationarity: float  # ‖Jᵀλ − ‖θ‖v‖_* / ‖θ‖
    subgradient_gap: float  # 1 − ⟨v, θ⟩/‖θ‖ ≥ 0
    delta: float  # Σ λ_i (q_i − 1)
    delta_relative: float  # L·δ / ‖θ‖² (= δ / Σλ at a KKT point)
    multipliers: np.ndarray  # λ over all n samples, zero outside `active`
    support: np.ndarray  # indices with λ_i > 1e-6 · max λ
    active: np.ndarray  # the candidate (near-active) indices
    norm: str
    norm_value: float  # ‖θ‖ of the rescaled θ
    degree: float
    seconds: float
    status: str

    def __repr__(self):
        return (
            f"KKTCertificate(norm={self.norm!r}, epsilon={self.epsilon:.3e} "
            f"[stationarity={self.stationarity:.3e}, subgradient_gap={self.subgradient_gap:.3e}], "
            f"delta_relative={self.delta_relative:.3e}, active={len(self.active)}, "
            f"support={len(self.support)}, status={self.status!r}, seconds={self.seconds:.2f})"
        )


# --- margin gradients -----------------------------------------------------------------


def margin_jacobian(model, params, X, y, chunk_size: int | None = 256) -> torch.Tensor:
    """The ``k × p`` matrix of per-sample margin gradients ``∇_θ (y_i f(x_i; θ))`` at the
    parameters ``params`` (a list in ``model.parameters()`` order), flattened in C order."""
    names = [name for name, _ in model.named_parameters()]
    if len(names) != len(params):
        raise ValueError(f"Got {len(params)} parameter tensors for a model with {len(names)}.")

    def margin(ps, x, yi):
        return yi * functional_call(model, dict(zip(names, ps)), (x.unsqueeze(0),)).reshape(())

    grads = vmap(grad(margin), in_dims=(None, 0, 0), chunk_size=chunk_size)(tuple(params), X, y)
    return torch.cat([g.reshape(X.shape[0], -1) for g in grads], dim=1)


# --- dual norms as cvxpy expressions -----------------------------------------------------


def _slices(shapes):
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape)) if len(shape) else 1
        out.append((start, start + size))
        start += size
    return out


def _matrix_shape(shape) -> tuple[int, int]:
    return tuple(as_matrix(torch.empty(shape, device="meta")).shape)


def dual_norm_expr(norm: Norm, expr, shapes):
    """The cvxpy expression of ``norm.dual`` applied to ``expr``, a cvxpy vector holding a
    list of tensors of the given ``shapes`` flattened in C order (torch's order) and
    concatenated. Supports :class:`~norms.L2`, :class:`~norms.Linf`, :class:`~norms.L1`,
    :class:`~norms.Spectral` (nuclear norms: an SDP) and :class:`~norms.MaxNorm` over these."""
    if isinstance(norm, L2):
        return cp.norm(expr, 2)
    if isinstance(norm, Linf):
        return cp.norm(expr, 1)
    if isinstance(norm, L1):
        return cp.norm(expr, "inf")
    if isinstance(norm, Spectral):
        terms = []
        for shape, (a, b) in zip(shapes, _slices(shapes)):
            if len(shape) > 2:
                raise ValueError(f"Spectral: got a tensor of shape {tuple(shape)}; reshape it to 2-D.")
            m, n = _matrix_shape(shape)
            part = expr[a:b]
            if m == 1 or n == 1:  # a vector: its nuclear norm is its ℓ2 norm
                terms.append(cp.norm(part, 2))
            else:
                terms.append(cp.normNuc(cp.reshape(part, (m, n), order="C")))
        return cp.sum(cp.hstack(terms)) if len(terms) > 1 else terms[0]
    if isinstance(norm, MaxNorm):
        if len(shapes) != norm.size:
            raise ValueError(f"{norm.name}: built for {norm.size} tensors but got {len(shapes)}.")
        spans = _slices(shapes)
        terms = []
        for sub, idx, w in norm.blocks:
            parts = [expr[spans[i][0] : spans[i][1]] for i in idx]
            block = cp.hstack(parts) if len(parts) > 1 else parts[0]
            terms.append(dual_norm_expr(sub, block, [shapes[i] for i in idx]) / w)
        return cp.sum(cp.hstack(terms)) if len(terms) > 1 else terms[0]
    raise TypeError(
        f"kkt: no cvxpy dual for {type(norm).__name__}; supported norms are L2, Linf, L1, "
        "Spectral and MaxNorm over them."
    )


def _has_sdp(norm: Norm, shapes) -> bool:
    if isinstance(norm, Spectral):
        return any(min(_matrix_shape(s)) > 1 for s in shapes)
    if isinstance(norm, MaxNorm):
        return any(_has_sdp(sub, [shapes[i] for i in idx]) for sub, idx, _ in norm.blocks)
    return False


# --- exact reduction to the span of the data ----------------------------------------------


def _tensor_kinds(norm: Norm, count: int) -> list[str]:
    """Per parameter tensor: 'spectral' (a nuclear-norm dual), 'l2' (part of an ℓ2 dual) or
    'none' (ℓ1/ℓ∞ duals, which projections do not shrink)."""
    if isinstance(norm, Spectral):
        return ["spectral"] * count
    if isinstance(norm, L2):
        return ["l2"] * count
    if isinstance(norm, MaxNorm):
        kinds = ["none"] * count
        for sub, idx, _ in norm.blocks:
            for i, kind in zip(idx, _tensor_kinds(sub, len(idx))):
                kinds[i] = kind
        return kinds
    return ["none"] * count


def _basis(M: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """Orthonormal basis of the column space of M (singular values above ``rtol·max``).
    Dropping the tiny ones is harmless: the certificate is evaluated in the full space."""
    U, sv, _ = np.linalg.svd(M, full_matrices=False)
    return U[:, sv > rtol * sv.max()] if sv.size and sv.max() > 0 else U[:, :0]


def _reduce(norm: Norm, A, theta_hat, shapes):
    """Shrink the program exactly: for a tensor under a nuclear-norm (or ℓ2) dual, every
    gradient and θ lie in ``U · Vᵀ`` with U, V bases of the column and row spaces of
    ``[G_1, …, G_k, Θ]`` and ``[G_1ᵀ, …, G_kᵀ, Θᵀ]``. Projecting v onto that subspace
    (``v ↦ P_U v P_V``) never increases ‖·‖_* or the residual and keeps ⟨v, θ⟩, so the
    optimum has ``v = U c Vᵀ`` and only the small ``c`` is a variable. Returns the reduced
    ``(A, θ̂, shapes)`` and a function lifting a reduced v back to the full space."""
    kinds = _tensor_kinds(norm, len(shapes))
    spans = _slices(shapes)
    k = A.shape[1]
    blocks_A, blocks_t, new_shapes, lifts = [], [], [], []
    for shape, (a, b), kind in zip(shapes, spans, kinds):
        At, tt = A[a:b], theta_hat[a:b]
        m, n = _matrix_shape(shape) if kind == "spectral" else (1, b - a)
        if kind == "none" or (m == 1 and n <= k + 1) or (m > 1 and min(m, n) <= 1):
            blocks_A.append(At)
            blocks_t.append(tt)
            new_shapes.append(shape)
            lifts.append(None)
            continue
        G = np.concatenate([At.T.reshape(k, m, n), tt.reshape(1, m, n)])  # (k+1, m, n)
        U = np.ones((1, 1)) if m == 1 else _basis(G.transpose(1, 0, 2).reshape(m, -1))
        V = _basis(G.transpose(2, 0, 1).reshape(n, -1))
        if min(U.shape[1], V.shape[1]) == 0 or U.shape[1] * V.shape[1] >= m * n:
            blocks_A.append(At)
            blocks_t.append(tt)
            new_shapes.append(shape)
            lifts.append(None)
            continue
        R = np.einsum("mi,kmn,nj->kij", U, G, V)  # (k+1, r1, r2)
        blocks_A.append(R[:k].reshape(k, -1).T)
        blocks_t.append(R[k].reshape(-1))
        new_shapes.append((U.shape[1], V.shape[1]) if kind == "spectral" else (V.shape[1],))
        lifts.append((U, V))

    def lift(v_small):
        out, start = [], 0
        for shape, pair in zip(new_shapes, lifts):
            size = int(np.prod(shape)) if len(shape) else 1
            part = v_small[start : start + size]
            start += size
            if pair is None:
                out.append(part)
            else:
                U, V = pair
                out.append((U @ part.reshape(U.shape[1], V.shape[1]) @ V.T).reshape(-1))
        return np.concatenate(out)

    return np.concatenate(blocks_A), np.concatenate(blocks_t), new_shapes, lift


# --- the convex program -----------------------------------------------------------------


def _solve(problem: cp.Problem, solver, solver_options):
    options = dict(solver_options or {})
    if solver is not None:
        options["solver"] = solver
    problem.solve(**options)
    return problem.status


def _solve_generic(A, theta_hat, norm, shapes, solver, solver_options):
    """min_{μ ≥ 0, ‖v‖_* ≤ 1} ‖Aμ − v‖_* + 1 − ⟨v, θ̂⟩ with cvxpy, after the exact
    reduction of :func:`_reduce` for spectral and ℓ2 parts. The columns of A are scaled
    to unit length first (μ is scaled back): first-order solvers (SCS) need far fewer
    iterations on the equilibrated problem."""
    A, theta_hat, shapes, lift = _reduce(norm, A, theta_hat, shapes)
    p, k = A.shape
    col = np.linalg.norm(A, axis=0)
    col[col == 0] = 1.0
    A = A / col
    A_op = sp.csc_matrix(A) if np.count_nonzero(A) < 0.3 * A.size else A
    mu = cp.Variable(k, nonneg=True)
    v = cp.Variable(p)
    objective = dual_norm_expr(norm, A_op @ mu - v, shapes) + 1 - theta_hat @ v
    problem = cp.Problem(cp.Minimize(objective), [dual_norm_expr(norm, v, shapes) <= 1])
    if solver is None and _has_sdp(norm, shapes) and p * k > SMALL_SDP:
        status = _solve(problem, None, {**SDP_DEFAULTS, **(solver_options or {})})
    elif solver is None and _has_sdp(norm, shapes):
        status = _solve(problem, "CLARABEL", solver_options)
    else:
        status = _solve(problem, solver, solver_options)
    if mu.value is None or v.value is None:
        raise RuntimeError(f"kkt_certificate: the solver returned no solution (status {status}).")
    return np.asarray(mu.value) / col, lift(np.asarray(v.value)), status


def _l2_factor(A, theta_hat):
    """Thin QR of ``[A, θ̂]``: returns ``(Q, R_A, r_θ)`` with ``A = Q R_A``, ``θ̂ = Q r_θ``."""
    Q, R = np.linalg.qr(np.column_stack([A, theta_hat]))
    return Q, R[:, :-1], R[:, -1]


def _solve_l2_reduced(factors, solver, solver_options):
    """The ℓ2 program, reduced exactly to the span of the gradients and θ.

    With ``[A, θ̂] = QR`` (thin QR), any v splits as ``Qc + w`` with ``w ⊥ range(Q)``; then
    ``‖Aμ − v‖² = ‖R_A μ − c‖² + ‖w‖²``, ``‖v‖² = ‖c‖² + ‖w‖²`` and ``⟨v, θ̂⟩ = ⟨c, r_θ⟩``,
    so ``w = 0`` is optimal and the program lives in ``k + 1`` dimensions."""
    Q, RA, r_theta = factors
    mu = cp.Variable(RA.shape[1], nonneg=True)
    c = cp.Variable(RA.shape[0])
    problem = cp.Problem(cp.Minimize(cp.norm(RA @ mu - c, 2) + 1 - r_theta @ c), [cp.norm(c, 2) <= 1])
    status = _solve(problem, solver, solver_options)
    if mu.value is None or c.value is None:
        raise RuntimeError(f"kkt_certificate: the solver returned no solution (status {status}).")
    return np.asarray(mu.value), Q @ np.asarray(c.value), status


def _solve_linf_ipm(A, theta_hat, tol: float = 1e-8, max_iter: int = 100, cg_steps: int = 10):
    """The ℓ∞ program (dual norm ℓ1) by a small primal-dual interior-point method.

    ``min_{μ≥0, ‖v‖₁≤1} ‖Aμ − v‖₁ − ⟨v, θ̂⟩`` is the standard-form LP over
    ``x = (μ, v⁺, v⁻, r⁺, r⁻, w) ≥ 0`` with ``Aμ − v⁺ + v⁻ − r⁺ + r⁻ = 0`` and
    ``Σv⁺ + Σv⁻ + w = 1``. Generic sparse solvers choke on the dense columns of A (one per
    point, p long); here every coordinate is separable given μ, so the normal equations are
    a diagonal plus a rank-k term plus one row, solved exactly through a k × k Cholesky
    factorization (Woodbury): about p·k² flops per iteration (Mehrotra predictor-corrector,
    as in Nocedal & Wright, Alg. 14.3). Rows of A that are zero are dropped first: there
    ``|v_j| − v_j θ̂_j ≥ 0`` and v_j spends budget, so ``v_j = 0`` is optimal."""
    from scipy.linalg import cho_factor, cho_solve

    keep = np.flatnonzero(np.abs(A).sum(axis=1) > 0)
    col = np.linalg.norm(A[keep], axis=0)
    col[col == 0] = 1.0
    Ak, th = A[keep] / col, theta_hat[keep]  # unit columns; μ is scaled back at the end
    p, k = Ak.shape
    n = k + 4 * p + 1
    c = np.concatenate([np.zeros(k), -th, th, np.ones(p), np.ones(p), [0.0]])
    b1, b0 = np.zeros(p), 1.0
    cuts = np.cumsum([k, p, p, p, p])

    def E(x):
        mu, a, b, e, f, w = np.split(x, cuts)
        return Ak @ mu - a + b - e + f, a.sum() + b.sum() + w[0]

    def ET(y1, y0):
        return np.concatenate([Ak.T @ y1, -y1 + y0, y1 + y0, -y1, y1, [y0]])

    def factor(D):
        """A solver for (E D Eᵀ) Δy = r, with D > 0 diagonal."""
        Dmu, Da, Db, De, Df, Dw = np.split(D, cuts)
        d = Da + Db + De + Df
        B = Ak * np.sqrt(Dmu)
        Bd = B / d[:, None]
        chol = cho_factor(np.eye(k) + B.T @ Bd, lower=True)
        m = Db - Da
        m00 = Da.sum() + Db.sum() + Dw[0]

        def m11_inv(r):
            rd = r / d[:, None]
            return rd - Bd @ cho_solve(chol, B.T @ rd)

        t = m11_inv(m[:, None])[:, 0]
        schur = m00 - m @ t

        def solve_once(r1, r0):
            u = m11_inv(r1[:, None])[:, 0]
            dy0 = (r0 - m @ u) / schur
            return u - t * dy0, dy0

        def apply(y1, y0):
            return d * y1 + Ak @ (Dmu * (Ak.T @ y1)) + m * y0, m @ y1 + m00 * y0

        def solve(r1, r0):
            # Woodbury loses digits when D spans many orders of magnitude near the
            # optimum; conjugate gradients on the exact system, preconditioned by it,
            # recover them (a few cheap O(p·k) iterations).
            x1, x0 = solve_once(r1, r0)
            a1, a0 = apply(x1, x0)
            e1, e0 = r1 - a1, r0 - a0
            z1, z0 = solve_once(e1, e0)
            d1, d0 = z1, z0
            rz = e1 @ z1 + e0 * z0
            target = 1e-15 * np.sqrt(r1 @ r1 + r0**2)
            for _ in range(cg_steps):
                if np.sqrt(e1 @ e1 + e0**2) <= target or rz <= 0:
                    break
                q1, q0 = apply(d1, d0)
                curvature = d1 @ q1 + d0 * q0
                if not curvature > 0:
                    break
                alpha = rz / curvature
                x1, x0 = x1 + alpha * d1, x0 + alpha * d0
                e1, e0 = e1 - alpha * q1, e0 - alpha * q0
                z1, z0 = solve_once(e1, e0)
                rz_new = e1 @ z1 + e0 * z0
                d1, d0 = z1 + (rz_new / rz) * d1, z0 + (rz_new / rz) * d0
                rz = rz_new
            return x1, x0

        return solve

    def step(x, dx):
        neg = dx < 0
        return min(1.0, float(np.min(-x[neg] / dx[neg]))) if neg.any() else 1.0

    # A strictly feasible primal-dual start. Primal: v = 0, the budget half used, r = Aμ
    # split with a cushion. Dual: y₁ = −θ̂/2, y₀ = −2, feasible because ⟨A_i, θ̂⟩ = q_i > 0
    # (Euler's identity), so every slack is positive.
    mu0 = np.ones(k)
    r = Ak @ mu0
    cushion = np.abs(r).mean() + 1.0 / p
    x = np.concatenate([mu0, np.full(p, 0.25 / p), np.full(p, 0.25 / p),
                        np.maximum(r, 0) + cushion, np.maximum(-r, 0) + cushion, [0.5]])
    y1, y0 = -0.5 * th, -2.0
    s = c - ET(y1, y0)
    if s.min() <= 0:  # Aᵀθ̂ ≤ 0 somewhere (not a separating θ): fall back on a shift
        s = s + (1e-3 - s.min())

    status, best, best_x = "max_iter", np.inf, x
    c_norm = 1 + np.linalg.norm(c)
    for _ in range(max_iter):
        rb1, rb0 = E(x)
        rb1, rb0 = rb1 - b1, rb0 - b0
        rc = ET(y1, y0) + s - c
        gap = x @ s / n
        primal, dual_obj = c @ x, b0 * y0
        error = max(np.sqrt(rb1 @ rb1 + rb0**2) / (1 + abs(b0)), np.linalg.norm(rc) / c_norm,
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
        D = x / s
        try:
            solve = factor(D)
        except np.linalg.LinAlgError:
            break

        def direction(rxs, x=x, s=s, D=D, rc=rc, rb1=rb1, rb0=rb0, solve=solve):
            """Newton direction for E Δx = −r_b, EᵀΔy + Δs = −r_c, SΔx + XΔs = rxs."""
            g1, g0 = E(rxs / s + D * rc)
            dy1, dy0 = solve(-rb1 - g1, -rb0 - g0)
            ds = -rc - ET(dy1, dy0)
            return (rxs - x * ds) / s, dy1, dy0, ds

        dx, _, _, ds = direction(-x * s)  # predictor (affine scaling)
        ap, ad = step(x, dx), step(s, ds)
        sigma = (((x + ap * dx) @ (s + ad * ds)) / n / gap) ** 3
        dx, dy1, dy0, ds = direction(-x * s - dx * ds + sigma * gap)  # corrector
        ap, ad = 0.995 * step(x, dx), 0.995 * step(s, ds)
        if max(ap, ad) < 1e-8:
            break
        x, s = x + ap * dx, s + ad * ds
        y1, y0 = y1 + ad * dy1, y0 + ad * dy0

    if status != "optimal":
        status = f"{'optimal_inaccurate' if best <= 1e-5 else 'inaccurate'} (error {best:.1e})"
    mu, a, b = np.split(best_x, cuts)[:3]
    v = np.zeros(A.shape[0])
    v[keep] = a - b
    return mu / col, v, status


def _solve_nnls(factors, theta_hat):
    """ℓ2 with v fixed to θ̂ (the only point of ∂‖θ‖₂): ``min_{μ≥0} ‖Aμ − θ̂‖₂`` by NNLS,
    on the QR factors (``‖Aμ − θ̂‖ = ‖R_A μ − r_θ‖``: k + 1 rows instead of p). Gap 0; an
    upper bound on the relaxed program, which may also move v."""
    from scipy.optimize import nnls

    _, RA, r_theta = factors
    mu, _ = nnls(RA, r_theta, maxiter=50 * max(RA.shape[1], 1))
    return mu, theta_hat.copy(), "optimal"


def _evaluate(A, theta_hat, norm, shapes, mu, v):
    """(stationarity, gap, μ) at a feasible point: μ clipped to ≥ 0 and v scaled into the
    dual ball, so the sum is a valid upper bound on the program's minimum."""
    mu = np.clip(mu, 0.0, None)
    like = [torch.empty(s, dtype=torch.float64) for s in shapes]

    def dual(vec):
        return float(norm.dual(_unflat(torch.as_tensor(vec, dtype=torch.float64), like)))

    v_dual = dual(v)
    if v_dual > 1:
        v = v / v_dual
    return dual(A @ mu - v), max(float(1.0 - theta_hat @ v), 0.0), mu


def kkt_certificate(model, X, y, norm="l2", active_tol: float = 0.5, max_points: int | None = None,
                    method: str = "auto", solver: str | None = None,
                    solver_options: dict | None = None) -> KKTCertificate:
    """How close the model's direction is to a KKT direction of ``norm``'s margin problem.

    ``model`` is a homogeneous model (``model.degree`` = L), ``(X, y)`` the training data
    with labels ±1 and ``norm`` a :class:`~norms.Norm` or a name (``l2``, ``linf``, ``l1``,
    ``spectral``, ``hybrid``). Steps:

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
       whose margins on the eventual support have not equalized yet.
    3. The margin gradients of those points are computed with ``torch.func``.
    4. The convex program of the module docstring is solved for λ ≥ 0 and v.
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
    """
    start = time.perf_counter()
    degree = getattr(model, "degree", None)
    if degree is None:
        raise TypeError(f"{type(model).__name__} has no `degree`: KKT certificates need a homogeneous model.")
    degree = float(degree)
    if method not in ("auto", "cvxpy", "nnls", "ipm"):
        raise ValueError(f"method must be 'auto', 'cvxpy', 'ipm' or 'nnls', got {method!r}.")
    if not active_tol >= 0:
        raise ValueError(f"active_tol must be ≥ 0, got {active_tol}.")
    params = [p.detach() for p in model.parameters()]
    norm = by_name(norm, params) if isinstance(norm, str) else norm
    if method == "nnls" and not isinstance(norm, L2):
        raise ValueError("method='nnls' is the ℓ2 route; use 'auto' or 'cvxpy' for other norms.")
    if method == "ipm" and not isinstance(norm, Linf):
        raise ValueError("method='ipm' is the ℓ∞ route; use 'auto' or 'cvxpy' for other norms.")

    # 1. Rescale so that min_i q_i = 1.
    with torch.no_grad():
        q = (y * model(X)).detach()
    q_min = float(q.min())
    if not q_min > 0:
        raise ValueError(
            f"The model is not separating the data: margin ≤ 0 (min_i y_i f(x_i) = {q_min:.3g}); "
            "a KKT certificate needs a positive margin. Train longer first."
        )
    scale = q_min ** (-1.0 / degree)
    params = [p * scale for p in params]
    q = q / q_min

    # 2. Near-active candidates, smallest margins first.
    order = torch.argsort(q)
    active = order[q[order] <= 1.0 + active_tol]
    if max_points is not None:
        if max_points < 1:
            raise ValueError(f"max_points must be ≥ 1, got {max_points}.")
        active = active[:max_points]

    # 3. Margin gradients, scaled so that Σμ = 1 at a KKT point: λ = (‖θ‖²/L)·μ and
    #    Jᵀλ/‖θ‖ = Aμ with A = (‖θ‖/L)·Jᵀ; ⟨A_i, θ/‖θ‖⟩ = q_i ≈ 1.
    norm_value = float(norm(params))
    J = margin_jacobian(model, params, X[active], y[active])
    A = (J.T * (norm_value / degree)).cpu().double().numpy()
    flat_theta = torch.cat([p.reshape(-1) for p in params]).cpu().double().numpy()
    theta_hat = flat_theta / norm_value
    shapes = [tuple(p.shape) for p in params]

    # 4. The convex program.
    factors = _l2_factor(A, theta_hat) if method in ("auto", "nnls") and isinstance(norm, L2) else None
    if method == "nnls":
        mu, v, status = _solve_nnls(factors, theta_hat)
    elif factors is not None:
        mu, v, status = _solve_l2_reduced(factors, solver, solver_options)
    elif method == "ipm" or (method == "auto" and isinstance(norm, Linf) and A.size >= IPM_MIN_SIZE):
        with np.errstate(all="ignore"):  # a failed step is caught and the best iterate kept
            mu, v, status = _solve_linf_ipm(A, theta_hat)
    else:
        mu, v, status = _solve_generic(A, theta_hat, norm, shapes, solver, solver_options)

    stationarity, gap, mu = _evaluate(A, theta_hat, norm, shapes, mu, v)
    if stationarity + gap > 1.0:
        # λ = 0, v = 0 is always feasible with ε = 1: a failed solve can do no worse.
        stationarity, gap, mu = 0.0, 1.0, np.zeros_like(mu)
        status = f"{status}; fell back on λ = 0"
    if method == "auto" and factors is not None:
        # NNLS (v = θ/‖θ‖₂) is also feasible and more accurate when ε is near 0: keep the better.
        mu_n, v_n, _ = _solve_nnls(factors, theta_hat)
        alt = _evaluate(A, theta_hat, norm, shapes, mu_n, v_n)
        if alt[0] + alt[1] < stationarity + gap:
            stationarity, gap, mu = alt

    lam_active = mu * (norm_value**2 / degree)
    multipliers = np.zeros(len(q))
    idx = active.cpu().numpy()
    multipliers[idx] = lam_active
    q_active = q[active].cpu().double().numpy()
    delta = float(lam_active @ (q_active - 1.0))
    top = lam_active.max() if lam_active.size else 0.0
    support = np.sort(idx[lam_active > 1e-6 * top]) if top > 0 else np.array([], dtype=int)
    return KKTCertificate(
        epsilon=stationarity + gap,
        stationarity=stationarity,
        subgradient_gap=gap,
        delta=delta,
        delta_relative=degree * delta / norm_value**2,
        multipliers=multipliers,
        support=support,
        active=np.sort(idx),
        norm=getattr(norm, "name", type(norm).__name__),
        norm_value=norm_value,
        degree=degree,
        seconds=time.perf_counter() - start,
        status=str(status),
    )


__all__ = ["KKTCertificate", "kkt_certificate", "margin_jacobian", "dual_norm_expr", "SDP_DEFAULTS",
           "IPM_MIN_SIZE", "SMALL_SDP"]
