"""The certificate program for any norm, with cvxpy: the norm's own dual expression
(:meth:`~implicit_bias.norms.Norm.dual_expr`) after the exact reduction of :mod:`.reduce`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..norms import Expr, Norm, Shapes, _cvxpy
from .reduce import reduce_program

#: Solver options used for semidefinite programs (spectral / hybrid norms) unless given.
SDP_DEFAULTS: dict[str, Any] = {"solver": "SCS", "eps_abs": 1e-5, "eps_rel": 1e-5, "max_iters": 20000,
                                "scale": 1.0}
#: Semidefinite programs with at most this many reduced parameters × candidates go to
#: Clarabel instead (interior point: accurate to ~1e-8 and fast while the program is small).
SMALL_SDP = 2000
#: Seconds one solve may take: Clarabel and SCS stop there (cvxpy's own choice of solver,
#: ``solver=None`` outside the semidefinite programs, is bounded by :data:`MAX_ENTRIES`).
TIME_LIMIT = 600.0
_TIME_OPTION = {"CLARABEL": "time_limit", "SCS": "time_limit_secs"}
#: The largest program, in entries ``p × k`` of its reduced matrix (parameters × candidate
#: points), handed to cvxpy; beyond it the certificate is refused with its size.
MAX_ENTRIES = 20_000_000


def dual_norm_expr(norm: Norm, expr: Expr, shapes: Shapes) -> Expr:
    """The cvxpy expression of ``norm.dual`` applied to ``expr``, a cvxpy vector holding a
    list of tensors of the given ``shapes`` flattened in C order (torch's order) and
    concatenated: the norm's :meth:`~implicit_bias.norms.Norm.dual_expr`."""
    return norm.dual_expr(expr, shapes)


def solve_problem(problem: Any, solver: str | None, solver_options: Mapping[str, Any] | None) -> str:
    """Solve a cvxpy problem with ``solver`` (None: cvxpy's choice) and options; its status.
    Clarabel and SCS get :data:`TIME_LIMIT` unless the options set their own; a solve that
    stops there returns its last iterate (status ``user_limit``) or no solution."""
    options = dict(solver_options or {})
    if solver is not None:
        options["solver"] = solver
    limit = _TIME_OPTION.get(str(options.get("solver", "")).upper())
    if limit is not None:
        options.setdefault(limit, TIME_LIMIT)
    problem.solve(**options)
    status: str = problem.status  # problem: a cvxpy Problem (cvxpy has no hints)
    return status


def solve_cvxpy(A: np.ndarray, theta_hat: np.ndarray, norm: Norm, shapes: Shapes, solver: str | None,
                solver_options: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray, str]:
    """min_{μ ≥ 0, ‖v‖_* ≤ 1} ‖Aμ − v‖_* + 1 − ⟨v, θ̂⟩ with cvxpy, after the exact
    reduction. The columns of A are scaled to unit length first (μ is scaled back):
    first-order solvers (SCS) need far fewer iterations on the equilibrated problem.
    Semidefinite programs go to SCS at :data:`SDP_DEFAULTS`, or to Clarabel when small
    (:data:`SMALL_SDP`), unless ``solver`` is given; with no ``solver`` named,
    ``solver_options`` adjust SCS's defaults and the small programs keep Clarabel's own (one
    call can then mix both without passing SCS options to Clarabel). Returns ``(μ, v, status)``."""
    cp = _cvxpy()
    import scipy.sparse as sp

    A, theta_hat, shapes, lift = reduce_program(norm, A, theta_hat, shapes)
    p, k = A.shape
    if p * k > MAX_ENTRIES:
        raise ValueError(f"kkt_certificate: the program has {p:,} parameters × {k:,} candidate points = "
                         f"{p * k:,} entries, more than the {MAX_ENTRIES:,} cvxpy solves in reasonable time. "
                         "Lower max_points or active_tol (fewer candidates), or use method='ipm' for ℓ∞.")
    col = np.linalg.norm(A, axis=0)
    col[col == 0] = 1.0
    A = A / col
    A_op = sp.csc_matrix(A) if np.count_nonzero(A) < 0.3 * A.size else A
    mu = cp.Variable(k, nonneg=True)
    v = cp.Variable(p)
    objective = norm.dual_expr(A_op @ mu - v, shapes) + 1 - theta_hat @ v
    problem = cp.Problem(cp.Minimize(objective), [norm.dual_expr(v, shapes) <= 1])
    if solver is None and norm.dual_is_sdp(shapes) and p * k > SMALL_SDP:
        options = {**SDP_DEFAULTS, **(solver_options or {})}
        try:
            status = solve_problem(problem, None, options)
        except cp.error.SolverError:  # seen on 2 of 90 network SDPs: a smaller scale solved them
            status = solve_problem(problem, None, {**options, "scale": 0.3 * options.get("scale", 1.0)})
    elif solver is None and norm.dual_is_sdp(shapes):
        status = solve_problem(problem, "CLARABEL", None)
    else:
        status = solve_problem(problem, solver, solver_options)
    if mu.value is None or v.value is None:
        raise RuntimeError(f"kkt_certificate: the solver returned no solution (status {status}) on "
                           f"{p:,} parameters × {k:,} candidates; it may have reached its time limit "
                           f"({TIME_LIMIT:g} s, kkt.solve_cvxpy.TIME_LIMIT). Lower max_points or active_tol.")
    return np.asarray(mu.value) / col, lift(np.asarray(v.value)), status
