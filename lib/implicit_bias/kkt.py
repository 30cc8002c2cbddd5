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

Duality gives a geometric reading of ε:

    ε = 1 − min { ‖θ/‖θ‖ + z‖ : ‖z‖ ≤ 1, ⟨∇q_i, z⟩ ≥ 0 for the near-active i },

so ε > 0 exactly when some direction z decreases the norm of θ to first order without
decreasing any near-active margin, and ε measures how much.

Costs. The gradients are computed with ``torch.func.vmap`` over samples (O(k·p) memory).
For ℓ2 the program is reduced *exactly* to k + 1 dimensions (everything lives in the span
of the gradients and θ, see :func:`_solve_l2_reduced`), so it takes milliseconds after
the QR factorization. ℓ∞ and ℓ1 are linear programs in about 3p variables with a sparse
(p × k) block (Clarabel, a few seconds for p ≈ 17k and k of a few hundred). The
max-spectral norm (dual: a sum of nuclear norms) and hybrid norms with a spectral block
are semidefinite programs with two PSD blocks of side ``m + n`` per (m × n) matrix; they
are solved with SCS at a moderate tolerance (``eps = 1e-5`` by default) and take
much longer — tens of seconds or more for a 256 × 64 layer — and their time grows quickly
with the matrix size, so cap the active set (``max_points``) for big layers. Whatever the
solver's accuracy, the reported numbers are evaluated at a *feasible* (λ, v) (λ clipped
to ≥ 0, v scaled into the dual ball), so the reported ε is always a valid upper bound on
the program's minimum: an inaccurate solve makes the certificate looser, never wrong.
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

#: Solver options used for semidefinite programs (spectral / hybrid norms) unless given.
SDP_DEFAULTS = {"solver": "SCS", "eps_abs": 1e-5, "eps_rel": 1e-5, "max_iters": 20000}


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
    raise NotImplementedError(
        f"kkt: no cvxpy dual for {type(norm).__name__}; supported norms are L2, Linf, L1, "
        "Spectral and MaxNorm over them."
    )


def _has_sdp(norm: Norm, shapes) -> bool:
    if isinstance(norm, Spectral):
        return any(min(_matrix_shape(s)) > 1 for s in shapes)
    if isinstance(norm, MaxNorm):
        return any(_has_sdp(sub, [shapes[i] for i in idx]) for sub, idx, _ in norm.blocks)
    return False


# --- the convex program -----------------------------------------------------------------


def _solve(problem: cp.Problem, solver, solver_options):
    options = dict(solver_options or {})
    if solver is not None:
        options["solver"] = solver
    problem.solve(**options)
    return problem.status


def _solve_generic(A, theta_hat, norm, shapes, solver, solver_options):
    """min_{μ ≥ 0, ‖v‖_* ≤ 1} ‖Aμ − v‖_* + 1 − ⟨v, θ̂⟩ with cvxpy on the full p-vector v."""
    p, k = A.shape
    A_op = sp.csc_matrix(A) if np.count_nonzero(A) < 0.3 * A.size else A
    mu = cp.Variable(k, nonneg=True)
    v = cp.Variable(p)
    objective = dual_norm_expr(norm, A_op @ mu - v, shapes) + 1 - theta_hat @ v
    problem = cp.Problem(cp.Minimize(objective), [dual_norm_expr(norm, v, shapes) <= 1])
    if solver is None and not solver_options and _has_sdp(norm, shapes):
        status = _solve(problem, None, SDP_DEFAULTS)
    else:
        status = _solve(problem, solver, solver_options)
    if mu.value is None or v.value is None:
        raise RuntimeError(f"kkt_certificate: the solver returned no solution (status {status}).")
    return np.asarray(mu.value), np.asarray(v.value), status


def _solve_l2_reduced(A, theta_hat, solver, solver_options):
    """The ℓ2 program, reduced exactly to the span of the gradients and θ.

    With ``[A, θ̂] = QR`` (thin QR), any v splits as ``Qc + w`` with ``w ⊥ range(Q)``; then
    ``‖Aμ − v‖² = ‖R_A μ − c‖² + ‖w‖²``, ``‖v‖² = ‖c‖² + ‖w‖²`` and ``⟨v, θ̂⟩ = ⟨c, r_θ⟩``,
    so ``w = 0`` is optimal and the program lives in ``k + 1`` dimensions."""
    Q, R = np.linalg.qr(np.column_stack([A, theta_hat]))
    RA, r_theta = R[:, :-1], R[:, -1]
    mu = cp.Variable(A.shape[1], nonneg=True)
    c = cp.Variable(R.shape[0])
    problem = cp.Problem(cp.Minimize(cp.norm(RA @ mu - c, 2) + 1 - r_theta @ c), [cp.norm(c, 2) <= 1])
    status = _solve(problem, solver, solver_options)
    if mu.value is None or c.value is None:
        raise RuntimeError(f"kkt_certificate: the solver returned no solution (status {status}).")
    return np.asarray(mu.value), Q @ np.asarray(c.value), status


def _solve_nnls(A, theta_hat):
    """ℓ2 with v fixed to θ̂ (the only point of ∂‖θ‖₂): ``min_{μ≥0} ‖Aμ − θ̂‖₂`` by NNLS.
    Gap 0; an upper bound on the relaxed program (which may also move v)."""
    from scipy.optimize import nnls

    mu, _ = nnls(A, theta_hat, maxiter=50 * A.shape[1])
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
       violation is bounded by ``δ = Σ λ_i (q_i − 1) ≤ active_tol · Σ λ_i``.
    3. The margin gradients of those points are computed with ``torch.func``.
    4. The convex program of the module docstring is solved for λ ≥ 0 and v.
       ``method='auto'`` uses the exact k+1-dimensional reduction for ℓ2 and the full
       cvxpy program otherwise; ``'cvxpy'`` forces the full program; ``'nnls'`` (ℓ2 only)
       fixes v = θ/‖θ‖₂ and solves non-negative least squares (an upper bound).
       ``solver``/``solver_options`` go to ``cvxpy.Problem.solve`` (spectral and hybrid
       norms default to SCS with ``eps = 1e-5``, see :data:`SDP_DEFAULTS`).

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
    if method not in ("auto", "cvxpy", "nnls"):
        raise ValueError(f"method must be 'auto', 'cvxpy' or 'nnls', got {method!r}.")
    if not active_tol >= 0:
        raise ValueError(f"active_tol must be ≥ 0, got {active_tol}.")
    params = [p.detach() for p in model.parameters()]
    norm = by_name(norm, params) if isinstance(norm, str) else norm
    if method == "nnls" and not isinstance(norm, L2):
        raise ValueError("method='nnls' is the ℓ2 route; use 'auto' or 'cvxpy' for other norms.")

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
    if method == "nnls":
        mu, v, status = _solve_nnls(A, theta_hat)
    elif method == "auto" and isinstance(norm, L2):
        mu, v, status = _solve_l2_reduced(A, theta_hat, solver, solver_options)
    else:
        mu, v, status = _solve_generic(A, theta_hat, norm, shapes, solver, solver_options)

    stationarity, gap, mu = _evaluate(A, theta_hat, norm, shapes, mu, v)
    if method == "auto" and isinstance(norm, L2):
        # NNLS (v = θ/‖θ‖₂) is also feasible and more accurate when ε is near 0: keep the better.
        mu_n, v_n, _ = _solve_nnls(A, theta_hat)
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


__all__ = ["KKTCertificate", "kkt_certificate", "margin_jacobian", "dual_norm_expr", "SDP_DEFAULTS"]
