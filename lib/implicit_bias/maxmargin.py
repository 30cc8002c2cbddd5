"""Exact max-margin solutions of linear models, with cvxpy, checked before they are returned.

``max_margin(X, y, norm)`` solves ``min ‖w‖ s.t. y_i x_i·w ≥ 1`` in any norm that has a
cvxpy expression (:meth:`~implicit_bias.norms.Norm.value_expr`): ℓ2 (a QP), ℓ∞ and ℓ1
(LPs), max-spectral for matrix inputs (an SDP), a Mahalanobis norm ``sqrt(wᵀ M w)`` (a QP)
or a user's own norm, and returns the unit-norm max-margin direction and the margin
``γ* = 1 / ‖w*‖``. Steepest descent in a norm converges in direction to the solution for
that norm (Soudry et al. 2018; Gunasekar et al. 2018).

Nothing is returned unchecked, at any scale of the data:

* the data are divided by a power of two so that ``max |y_i x_i| ∈ [½, 1)`` (exact, see
  :func:`_rescaled`), and the margin and multipliers are scaled back;
* a checked answer proves the data separable; when an answer fails, a scale-free LP
  (:func:`_check_separable`) decides, so :class:`NotSeparableError` means the data are not
  separable, never that a solver failed;
* the problem goes to Clarabel, an interior-point solver (first-order solvers such as OSQP
  stop far from the optimum on badly scaled data); SCS is tried, with a warning, only when
  Clarabel's answer fails the checks;
* every answer is checked (:func:`_failed_check`): its constraints are tight to
  :data:`CONSTRAINT_RTOL`, the duality gap of the direction and the returned multipliers
  is at most :data:`GAP_RTOL` (so the margin is within that of the maximum), and
  :func:`~implicit_bias.kkt.kkt_certificate` certifies the direction to :data:`KKT_EPS`.
  An answer that fails raises :class:`MaxMarginSolverError` naming the check.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from scipy.linalg import solve_triangular

from . import models
from . import norms as _norms
from .data import check_data
from .kkt import kkt_certificate
from .norms import Shapes, _cvxpy

#: Data or a weight: a tensor or anything numpy makes an array of.
Array = torch.Tensor | npt.ArrayLike
#: What ``norm`` may be: a Norm, a registered name, or a symmetric positive-definite matrix M
#: (or a positive vector, ``diag(M)``) for the Mahalanobis norm ``sqrt(wᵀMw)``.
NormLike = _norms.Norm | str | torch.Tensor | npt.ArrayLike
#: The weight's named blocks: ``{name: shape}``, or a linear model whose parameters name them.
Blocks = dict[str, int | Sequence[int]] | torch.nn.Module
#: A solution's direction: one array, or one per named block.
Direction = np.ndarray | dict[str, np.ndarray]

#: The solver's ``w`` must have ``min_i y_i x_i·w = 1`` to this relative tolerance: below
#: it is infeasible, above it is not the shortest ``w``.
CONSTRAINT_RTOL = 1e-6
#: Largest relative duality gap ``‖Σ λ̂_i y_i x_i‖_* / γ − 1`` (λ̂ = λ/Σλ) accepted: it bounds
#: how far the returned margin γ can be below the maximum.
GAP_RTOL = 1e-6
#: Largest KKT certificate ε accepted (:func:`~implicit_bias.kkt.kkt_certificate` with
#: ``active_tol`` :data:`KKT_ACTIVE_TOL`).
KKT_EPS = 1e-5
KKT_ACTIVE_TOL = 1e-6
#: Data count as separable when some ``w`` with ``‖w‖∞ ≤ 1`` has margin above this times
#: ``max |x|`` (rounding in ``x·w`` is about 1e-16 of that).
SEPARABLE_TOL = 1e-9
#: Solvers tried in turn, with their options: interior point first. Clarabel runs to 1e-12
#: (default 1e-8): where a constraint is active with a zero multiplier (a point exactly on
#: the margin that is not a support vector) interior-point iterates approach the solution
#: like the square root of the tolerance, so 1e-8 left directions 1e-4 off.
SOLVERS = {"CLARABEL": {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12},
           "SCS": {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iters": 100_000}}
#: Seconds one solve may take (each solver's own time limit): past it the solve ends and,
#: if no answer passed the checks, :class:`MaxMarginSolverError` says so.
TIME_LIMIT = 300.0
_TIME_OPTION = {"CLARABEL": "time_limit", "SCS": "time_limit_secs", "HIGHS": "time_limit"}
#: ℓ∞ and ℓ1 problems (linear programs) larger than this, in entries ``n × p`` of the data,
#: go to HiGHS (Clarabel took 3 s at 2·10⁵ entries, and grows faster than linearly).
LP_TO_HIGHS = 1_000_000
#: The largest problem given to cvxpy's solvers, in entries ``n × p``; other norms' larger
#: problems are refused with the size (below it, :data:`TIME_LIMIT` bounds a solve). Chapter
#: 4's ℓ2 problem at the book size has 1.15·10⁶ entries, at the paper size 3.5·10⁶.
MAX_CVXPY_ENTRIES = 10_000_000
#: The largest problem :func:`solution_spread` takes, in entries ``n × p × p``.
MAX_SPREAD_ENTRIES = 10_000_000
#: The largest linear program given to HiGHS, in entries ``n × p``.
MAX_LP_ENTRIES = 50_000_000


class NotSeparableError(ValueError):
    """The data cannot be separated by a linear predictor through the origin."""


class MaxMarginSolverError(RuntimeError):
    """No solver returned a max-margin solution that passed the checks."""


@dataclass
class MaxMarginSolution:
    direction: Direction  # unit-norm in `norm` ({name: array} with blocks)
    margin: float  # max over unit-norm w of min_i y_i x_i·w
    norm: str
    dual: np.ndarray  # KKT multipliers λ of min ½‖w‖² s.t. y_i x_i·w ≥ 1 (any norm)
    support: np.ndarray  # indices of the active constraints
    gap: float  # certified: the maximum margin is at most margin · (1 + gap)
    solver: str  # the solver whose answer passed the checks

    def __repr__(self) -> str:
        return (f"MaxMarginSolution(norm={self.norm!r}, margin={self.margin:.6g}, "
                f"support={self.support.tolist()}, gap={self.gap:.1e})")


def _as_numpy(a: Array) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=float)


def _as_norm(norm: NormLike, shapes: Shapes | None = None) -> _norms.Norm:
    """A :class:`~implicit_bias.norms.Norm`, a registered name, or a symmetric
    positive-definite matrix M (or a positive vector, ``diag(M)``) for the Mahalanobis norm
    ``sqrt(wᵀMw)``. ``shapes``, the weight's blocks, builds norms that depend on them (hybrid)."""
    if isinstance(norm, (str, _norms.Norm)):
        params = None if shapes is None else [torch.zeros(s, dtype=torch.float64) for s in shapes]
        return _norms.as_norm(norm, params)
    return _norms.Mahalanobis(_as_numpy(norm))


def _blocks(ws: npt.ArrayLike, shapes: Shapes) -> list[torch.Tensor]:
    """The flat weight ``ws`` as one tensor per block."""
    return _norms._unflat(torch.as_tensor(np.asarray(ws, dtype=float).reshape(-1)),
                          [torch.empty(s, device="meta") for s in shapes])


def _value(ws: npt.ArrayLike, shapes: Shapes, norm: _norms.Norm) -> float:
    return float(norm(_blocks(ws, shapes)))


def norm_value(w: Array, norm: NormLike) -> float:
    """Value of ``w`` (one weight, numpy or torch) in ``norm``: a Norm, a registered name or a
    PSD matrix M."""
    w = _as_numpy(w)
    return _value(w, [w.shape], _as_norm(norm, [w.shape]))


def _weight_shapes(X: np.ndarray,
                   blocks: Blocks | None) -> tuple[list[tuple[int, ...]], dict[str, tuple[int, ...]] | None]:
    """The weight's block shapes and names: one block shaped like an input, or ``blocks``
    (a dict ``{name: shape}``, or a model whose parameters name them, which must then be the
    linear model ``f(x) = Σ_k ⟨θ_k, x_k⟩`` on these inputs)."""
    if blocks is None:
        return [X.shape[1:]], None
    if isinstance(blocks, torch.nn.Module):
        _check_block_linear(blocks, X)
        blocks = {name: tuple(p.shape) for name, p in blocks.named_parameters()}
    named = models.block_shapes(blocks)
    total = sum(int(np.prod(s)) for s in named.values())
    if X.ndim != 2 or X.shape[1] != total:
        raise ValueError(f"With blocks {named}, X must be (n, {total}): each input the blocks' inputs "
                         f"flattened and concatenated in that order; got {X.shape}.")
    return list(named.values()), named


def _check_block_linear(model: torch.nn.Module, X: np.ndarray) -> None:
    """Refuse a model that is not ``⟨θ, x⟩`` on X (its max-margin problem is not this one)."""
    with torch.no_grad():
        theta = torch.cat([p.detach().reshape(-1).double().cpu() for p in model.parameters()])
        Xt = torch.as_tensor(X, dtype=torch.float64)
        f = model(Xt.to(next(model.parameters()).dtype)).double().cpu().reshape(-1)
    linear = Xt.ndim == 2 and Xt.shape[1] == theta.numel()
    if not (linear and torch.allclose(f, Xt @ theta, rtol=1e-9, atol=1e-12)):
        raise ValueError(f"max_margin(blocks={type(model).__name__}(...)): the exact solver is for a linear "
                         "model f(x) = Σ_k ⟨θ_k, x_k⟩ whose inputs are its blocks' inputs concatenated "
                         "in parameter order; this model's outputs on X are not. Pass blocks as a dict "
                         "{name: shape} for a linear model, or certify a network with kkt_certificate.")


def _signed_inputs(X: Array, y: Array, norm: _norms.Norm, shapes: Shapes) -> np.ndarray:
    """``Z = y_i x_i`` flattened to (n, size)."""
    X, y = _as_numpy(X), _as_numpy(y)
    check_data(X, y)
    ndim = norm.max_margin_ndim
    if len(shapes) == 1 and ndim == 2 and X.ndim != 3:
        raise ValueError(f"The {norm.name} max margin needs matrix inputs (n, a, b); got {X.shape}.")
    if len(shapes) == 1 and (X.ndim != ndim + 1 or X[0].size == 0):
        raise ValueError(f"X must be (n, d) with d ≥ 1 for the {norm.name} max margin; got {X.shape}.")
    Z: np.ndarray = y[:, None] * X.reshape(X.shape[0], -1)  # numpy's arithmetic on float arrays is Any
    return Z


def _rescaled(Z: np.ndarray) -> tuple[np.ndarray, int]:
    """``(Z / 2^e, e)`` with ``max |Z / 2^e|`` in [½, 1).

    Exact: every ``w`` has margin ``min_i c z_i·w = c · min_i z_i·w`` on the data ``cZ``
    (c > 0), so ``cZ`` has the same max-margin direction as ``Z`` and c times its margin, and
    its multipliers are those of ``Z`` divided by c². Dividing by a power of two changes
    exponents only, with no rounding (unless an entry drops below 1e-308), so the solver
    sees the same problem with entries of order 1 whatever the scale of the data."""
    e = int(np.frexp(np.abs(Z).max())[1])
    return np.ldexp(Z, -e), e


def _rows_rescaled(Z: np.ndarray) -> np.ndarray:
    """Each row ``z_i`` divided by the power of two that brings ``max |z_i|`` into [½, 1):
    exact, and ``z_i·w > 0`` for the same ``w`` as before, so the separating directions are
    unchanged, while rows of 1e-150 and 1e150 in one set no longer under- or overflow."""
    exponents = np.frexp(np.abs(Z).max(axis=1))[1]  # 0 for a zero row, which stays zero
    rows: np.ndarray = np.ldexp(Z, -exponents[:, None])  # a ufunc's result is Any to mypy
    return rows


def _spread(Z: np.ndarray) -> str:
    """Words for a set whose samples' scales span more than float64 can solve together."""
    sizes = np.abs(Z).max(axis=1)
    low, high = sizes[sizes > 0].min(), sizes.max()
    if high / low < 1e12:
        return ""
    return (f"their samples' scales span from {low:.2g} to {high:.2g} (max |x_i|), more than one "
            "float64 problem can hold: rescale the samples or drop the outlying ones")


def _check_separable(Z: np.ndarray) -> None:
    """Raise :class:`NotSeparableError` unless some ``w`` has ``z_i·w > 0`` for all i.

    Gordan's alternative decided by the LP ``max t s.t. z_i·w ≥ t, ‖w‖∞ ≤ 1`` (HiGHS) on
    the data with every row at its own scale (:func:`_rows_rescaled`): its value is 0 for
    non-separable data and positive otherwise. The decision rests on the LP's ``w``
    itself, its margin recomputed here, so an inaccurate LP solve cannot call separable
    data non-separable or the reverse beyond :data:`SEPARABLE_TOL` (relative to each
    row's ``max |z_i|``)."""
    from scipy.optimize import linprog

    Zr = _rows_rescaled(Z)
    n, p = Zr.shape
    result = linprog(np.r_[np.zeros(p), -1.0], A_ub=np.c_[-Zr, np.ones(n)], b_ub=np.zeros(n),
                     bounds=[(-1, 1)] * p + [(None, None)], method="highs",
                     options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10,
                              "time_limit": TIME_LIMIT})
    if result.x is None:
        raise MaxMarginSolverError(f"The separability LP of {n} samples × {p} features failed "
                                   f"(HiGHS: {result.message}).")
    t = float((Zr @ result.x[:p]).min())
    if not t > SEPARABLE_TOL:
        raise NotSeparableError(
            "The data are not linearly separable through the origin, so no max-margin "
            f"solution exists (the best w with ‖w‖∞ ≤ 1 has margin {t:.2g} × max|x| on some sample, "
            f"each at its own scale; at most {SEPARABLE_TOL:g}). Check the labels, or add a feature "
            "for a bias term.")


@functools.cache
def _installed_solvers() -> frozenset[str]:
    """The solvers cvxpy finds (looking costs milliseconds, so once)."""
    return frozenset(_cvxpy().installed_solvers())


def _solve(Zs: np.ndarray, shapes: Shapes, norm: _norms.Norm,
           solver: str) -> tuple[np.ndarray, np.ndarray] | str:
    """``min ‖w‖ s.t. Zs w ≥ 1`` with one solver: ``(w, λ)``, λ the multipliers of
    ``min ½‖w‖²``, or the reason it failed (a string)."""
    if solver == "HIGHS":
        return _solve_lp(Zs, norm)
    cp = _cvxpy()
    w = cp.Variable(Zs.shape[1])
    objective = norm.max_margin_objective(w, shapes)
    constraint = Zs @ w >= 1
    problem = cp.Problem(cp.Minimize(objective), [constraint])
    limit = {_TIME_OPTION[solver]: TIME_LIMIT} if solver in _TIME_OPTION else {}
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():  # "may be inaccurate": the checks decide
            warnings.simplefilter("ignore", UserWarning)
            problem.solve(solver=solver, **SOLVERS[solver], **limit)
    except cp.error.SolverError as error:
        return f"{solver} failed ({error})"
    if problem.status not in ("optimal", "optimal_inaccurate") or w.value is None:
        if time.perf_counter() - start >= 0.95 * TIME_LIMIT:
            return (f"{solver} stopped at its time limit of {TIME_LIMIT:g} s on {Zs.shape[0]} samples × "
                    f"{Zs.shape[1]} weights (maxmargin.TIME_LIMIT)")
        return f"{solver} ended with status {problem.status!r}"
    ws = np.asarray(w.value)
    dual = np.asarray(constraint.dual_value).reshape(-1)
    if not objective.is_quadratic():
        # ‖w‖ was minimized (½‖w‖² is a quadratic form, a norm never is): the multipliers
        # of min ½‖w‖² are ‖w*‖ times its multipliers.
        dual = dual * _value(ws, shapes, norm)
    return ws, dual


def _solve_lp(Zs: np.ndarray, norm: _norms.Norm) -> tuple[np.ndarray, np.ndarray] | str:
    """The ℓ∞ or ℓ1 max margin as the linear program ``max γ s.t. Zs u ≥ γ, ‖u‖ ≤ 1``
    (ℓ1: ``u = a − b``, ``a, b ≥ 0``, ``Σ a + b ≤ 1``), with HiGHS's interior-point method
    (far beyond cvxpy's reach; 8 s at 3000 × 500). Then ``w = u / γ`` solves
    ``min ‖w‖ s.t. Zs w ≥ 1``, and the LP's multipliers μ (on the simplex) give those of
    ``min ½‖w‖²``, ``μ / γ²``. Returns ``(w, λ)`` as :func:`_solve` does, or why it failed."""
    from scipy.optimize import linprog

    n, p = Zs.shape
    options = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10,
               "time_limit": TIME_LIMIT}
    if norm.lp == np.inf:  # variables (u, γ), u in the box
        result = linprog(np.r_[np.zeros(p), -1.0], A_ub=np.c_[-Zs, np.ones(n)], b_ub=np.zeros(n),
                         bounds=[(-1, 1)] * p + [(None, None)], method="highs-ipm", options=options)
    else:  # variables (a, b, γ)
        A = np.r_[np.c_[-Zs, Zs, np.ones(n)], [np.r_[np.ones(2 * p), 0.0]]]
        result = linprog(np.r_[np.zeros(2 * p), -1.0], A_ub=A, b_ub=np.r_[np.zeros(n), 1.0],
                         bounds=[(0, None)] * (2 * p) + [(None, None)], method="highs-ipm", options=options)
    if result.status != 0 or result.x is None or not -result.fun > 0:
        return f"HIGHS ended without a solution on {n} samples × {p} weights ({result.message})"
    u = result.x[:p] if norm.lp == np.inf else result.x[:p] - result.x[p:2 * p]
    gamma = -float(result.fun)
    # the marginals are those of −Zs u + γ ≤ 0, so of the opposite sign
    return u / gamma, -result.ineqlin.marginals[:n] / gamma**2


def _solvers(Zs: np.ndarray, norm: _norms.Norm) -> list[str]:
    """The solvers to try on ``Zs``, by its size: HiGHS for ℓ∞ and ℓ1 problems (linear
    programs) above :data:`LP_TO_HIGHS` up to :data:`MAX_LP_ENTRIES`, else cvxpy's installed
    ones up to :data:`MAX_CVXPY_ENTRIES`; a larger problem is refused with its size."""
    n, p = Zs.shape
    lp = norm.lp in (1, np.inf)
    if lp and Zs.size > LP_TO_HIGHS:
        if Zs.size <= MAX_LP_ENTRIES:
            return ["HIGHS"]
    elif Zs.size <= MAX_CVXPY_ENTRIES:
        return [s for s in SOLVERS if s in _installed_solvers()]
    most, route = (MAX_LP_ENTRIES, "as a linear program") if lp else (
        MAX_CVXPY_ENTRIES, "by Clarabel, an interior-point solver")
    raise MaxMarginSolverError(
        f"max_margin: {n:,} samples × {p:,} weights = {Zs.size:,} entries, more than the {most:,} solved "
        f"{route} in reasonable time ({norm.name}). Solve a subsample of the data, or fewer features"
        f"{'; ℓ∞ and ℓ1 go further (linear programs)' if norm.lp not in (1, np.inf) else ''}.")


def _gap(Zs: np.ndarray, direction: np.ndarray, dual: np.ndarray, shapes: Shapes, norm: _norms.Norm) -> float:
    """Relative duality gap ``‖Zsᵀλ̂‖_* / γ − 1``, λ̂ = λ⁺/Σλ⁺ on the simplex: every unit
    ``w`` has ``min_i z_i·w ≤ ⟨Zsᵀλ̂, w⟩ ≤ ‖Zsᵀλ̂‖_*``, so the maximum margin lies between
    γ = min_i z_i·direction and ``‖Zsᵀλ̂‖_*``, equal at the optimum (minimax)."""
    lam = np.clip(dual, 0.0, None)
    if not lam.sum() > 0:
        return np.inf
    combination = _blocks(Zs.T @ (lam / lam.sum()), shapes)
    return float(norm.dual(combination)) / float((Zs @ direction).min()) - 1.0


def _kkt_epsilon(Zs: np.ndarray, direction: np.ndarray, shapes: Shapes, norm: _norms.Norm) -> float | None:
    """The certificate ε of the direction on the rescaled data (labels folded into Zs);
    None for a norm without a cvxpy dual expression (the duality gap still checks it)."""
    if type(norm).dual_expr is _norms.Norm.dual_expr:
        return None
    large = Zs.size > LP_TO_HIGHS
    if large and norm.lp == 1:
        return None  # the certificate program is as large as the problem: the duality gap checks it
    if isinstance(norm, _norms.Mahalanobis):
        # The same conditions in v = Lᵀw (M = LLᵀ): ‖w‖_M = ‖v‖₂ and z·w = (L⁻¹z)·v, so the
        # fast ℓ2 certificate of v on the inputs L⁻¹z.
        L = norm.chol.numpy()
        Zs, direction, norm = solve_triangular(L, Zs.T, lower=True).T, L.T @ direction, _norms.L2()
    model = models.BlockLinear(Zs.shape[1], {f"block{k}": s for k, s in enumerate(shapes)})
    with torch.no_grad():
        for p, part in zip(model.parameters(), _blocks(direction, shapes)):
            p.copy_(part)
    X = torch.as_tensor(Zs)
    # ℓ2: NNLS, no cvxpy (its ε, sin φ, bounds the relaxed one); a large ℓ∞ problem: the
    # dedicated interior-point method; others: Clarabel (~1e-8).
    method, solver = ("nnls", None) if norm.lp == 2 else ("ipm", None) if large and norm.lp == np.inf \
        else ("cvxpy", "CLARABEL")
    return kkt_certificate(model, X, torch.ones(len(X), dtype=torch.float64), norm,
                           active_tol=KKT_ACTIVE_TOL, method=method, solver=solver).epsilon


def _failed_check(Zs: np.ndarray, ws: np.ndarray, dual: np.ndarray, shapes: Shapes,
                  norm: _norms.Norm) -> tuple[np.ndarray, float] | str:
    """The checked ``(direction, gap)`` of a solver's answer, or what failed (a string)."""
    if not (np.isfinite(ws).all() and np.isfinite(dual).all()):
        return "its answer is not finite"
    smallest = float((Zs @ ws).min())
    if not abs(smallest - 1.0) <= CONSTRAINT_RTOL:
        kind = "infeasible" if smallest < 1 else "not the shortest w"
        return (f"its w has smallest constraint y_i x_i·w = {smallest:.9g}, not 1 ± "
                f"{CONSTRAINT_RTOL:g} ({kind})")
    direction = ws / _value(ws, shapes, norm)
    gap = _gap(Zs, direction, dual, shapes, norm)
    if not gap <= GAP_RTOL:
        return f"the duality gap of its direction and multipliers is {gap:.2g} > {GAP_RTOL:g}"
    epsilon = _kkt_epsilon(Zs, direction, shapes, norm)
    if epsilon is not None and not epsilon <= KKT_EPS:
        return f"its KKT certificate has ε = {epsilon:.2g} > {KKT_EPS:g}"
    return direction, max(gap, 0.0)


def max_margin(X: Array, y: Array, norm: NormLike = "l2", blocks: Blocks | None = None) -> MaxMarginSolution:
    """Max-margin direction of a linear model without bias in ``norm``: a
    :class:`~implicit_bias.norms.Norm` or its name (``'l2'``, ``'linf'``, ``'l1'``,
    ``'spectral'``, a registered one), or a symmetric positive-definite matrix ``M`` (or a
    positive vector, taken as ``diag(M)``) for ``‖w‖_M = sqrt(wᵀ M w)``. Inputs are
    vectors ``X`` (n, d), or matrices (n, a, b) for a matrix norm such as ``'spectral'``
    (the predictor is ``⟨W, x⟩`` and the norm is ``W``'s largest singular value, an SDP).
    The direction has the shape of one input; ``gap`` bounds the margin's relative error.

    ``blocks`` solves the problem of a linear model over named parameter blocks,
    ``f(x) = Σ_k ⟨θ_k, x_k⟩`` (:class:`~implicit_bias.models.BlockLinear`): a dict
    ``{name: shape}`` or such a model; each row of X is the blocks' inputs flattened and
    concatenated in that order, ``norm`` is one over the list of blocks (e.g. the hybrid
    ``norms.hybrid(list(model.parameters()), r)``, any :class:`~implicit_bias.norms.MaxNorm`
    of block norms, or a name such as ``'hybrid'`` or ``'l2'``), and the direction is a dict
    ``{name: array}``.

    Raises :class:`NotSeparableError` when no ``w`` has ``y_i x_i·w > 0`` for all i, and
    :class:`MaxMarginSolverError` when no solver's answer passes the checks of the module
    docstring. Multipliers scale like 1/γ², so beyond data scales of about 1e±150 they
    leave float64's range (a warning says so; direction and margin are unaffected)."""
    X = _as_numpy(X)
    shapes, names = _weight_shapes(X, blocks)
    norm = _as_norm(norm, shapes)
    Z = _signed_inputs(X, y, norm, shapes)
    Zs, e = _rescaled(Z)
    failures: list[str] = []
    for solver in _solvers(Zs, norm):
        answer = _solve(Zs, shapes, norm, solver)
        checked = answer if isinstance(answer, str) else _failed_check(Zs, *answer, shapes, norm)
        if not isinstance(checked, str):
            break
        failures.append(f"{solver}: {checked}")
        if len(failures) == 1:
            _check_separable(Z)  # a checked answer proves separability; a failure needs the LP
    else:
        why = _spread(Z) or "may be nearly non-separable or badly conditioned; check them, or report the case"
        raise MaxMarginSolverError(f"No solver's max-margin solution passed the checks: {'; '.join(failures)}"
                                   f". The data are separable (an LP says so), but {why}.")
    if failures:
        warnings.warn(f"max_margin: {'; '.join(failures)}; the answer of {solver} passed the "
                      "checks and is returned.", RuntimeWarning, stacklevel=2)
    assert not isinstance(checked, str) and not isinstance(answer, str)  # it passed the checks
    direction, gap = checked
    with np.errstate(over="ignore", under="ignore"):  # checked below
        dual = np.ldexp(answer[1], -2 * e)  # the multipliers of Z = 2^e Zs (see _rescaled)
    weighty = answer[1] > 1e-9 * answer[1].max()
    if not (np.isfinite(dual).all() and (dual[weighty] >= np.finfo(float).tiny).all()):
        warnings.warn("max_margin: the multipliers (∝ 1/margin²) leave float64's range at this "
                      "scale of the data; rescale X to use `dual`.", RuntimeWarning, stacklevel=2)
    margins = Z @ direction  # in the data's own units
    gamma = float(margins.min())
    support = np.flatnonzero(margins <= gamma * (1 + 1e-6))
    solution: Direction
    if names is not None:
        solution = {name: part.numpy() for name, part in zip(names, _blocks(direction, shapes))}
    else:
        solution = direction.reshape(shapes[0])
    return MaxMarginSolution(solution, gamma, norm.name, dual, support, gap, solver)


def ball_minimizer(X: Array, y: Array, norm: NormLike, radius: float, blocks: Blocks | None = None,
                   loss: str = "logistic") -> np.ndarray:
    """The exact minimizer of the logistic loss of a linear model without bias over the ball
    ``‖w‖ ≤ radius`` of ``norm`` (a name or a :class:`~implicit_bias.norms.Norm` with a
    ``value_expr``): the point that decoupled weight decay λ = 1/radius drives that norm's
    steepest descent to (:func:`kkt.constrained_certificate`). ``blocks`` as in
    :func:`max_margin` (a block-linear model; the answer is then its blocks flattened and
    concatenated). On separable data the constraint is active, and as ``radius`` grows the
    direction tends to the max-margin direction of the same norm (:func:`max_margin`).
    ``loss='exponential'`` minimizes ``log Σ e^{−y_i x_i·w}`` (the same minimizer as the
    exponential loss), which stays well-conditioned at any radius: the logistic loss's
    solve loses accuracy once the margins reach a few hundred."""
    if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a finite number > 0, got {radius!r}.")
    if loss not in ("logistic", "exponential"):
        raise ValueError(f"loss must be 'logistic' or 'exponential', got {loss!r}.")
    X = _as_numpy(X)
    shapes, names = _weight_shapes(X, blocks)
    norm = _as_norm(norm, shapes)
    Z = _signed_inputs(X, y, norm, shapes)
    cp = _cvxpy()
    w = cp.Variable(Z.shape[1])
    objective = cp.sum(cp.logistic(-Z @ w)) if loss == "logistic" else cp.log_sum_exp(-Z @ w)
    problem = cp.Problem(cp.Minimize(objective), [norm.value_expr(w, shapes) <= radius])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        problem.solve(solver="CLARABEL")
    if problem.status != "optimal" or w.value is None:
        raise MaxMarginSolverError(f"ball_minimizer: Clarabel ended with status {problem.status!r}.")
    return np.asarray(w.value) if names is not None else np.asarray(w.value).reshape(shapes[0])


def solution_spread(X: Array, y: Array, norm: NormLike = "linf", tol: float = 1e-9,
                    blocks: Blocks | None = None) -> float:
    """How far apart two max-margin solutions can be: the largest coordinate range over
    the set of unit-norm directions whose margin is within ``tol`` (relative) of the
    maximum. About 0 when the solution is unique; ℓ∞ and ℓ1 solutions often are not, and
    then a cosine with one solver's answer is no test of convergence (compare margins).
    Strictly convex norms (ℓ2, Mahalanobis) have a unique solution: 0 without solving."""
    cp = _cvxpy()
    X = _as_numpy(X)
    shapes, _ = _weight_shapes(X, blocks)
    norm = _as_norm(norm, shapes)
    if norm.strictly_convex:
        return 0.0
    best = max_margin(X, y, norm, blocks)
    Z = _signed_inputs(X, y, norm, shapes)
    Zs, _ = _rescaled(Z)  # directions do not depend on the data's scale
    if Zs.size * Zs.shape[1] > MAX_SPREAD_ENTRIES:
        raise MaxMarginSolverError(
            f"solution_spread: {Zs.shape[0]:,} samples × {Zs.shape[1]:,} weights, two Clarabel solves per "
            f"weight ({Zs.size * Zs.shape[1]:,} entries in all, more than {MAX_SPREAD_ENTRIES:,}): "
            "compare margins rather than directions on problems this large.")
    w = cp.Variable(Zs.shape[1])
    gamma = float((Zs @ flat_direction(best.direction)).min())
    feasible = [norm.value_expr(w, shapes) <= 1, Zs @ w >= gamma * (1 - tol)]
    ends: list[float] = []
    for j in range(Zs.shape[1]):
        for sense in (cp.Maximize, cp.Minimize):
            problem = cp.Problem(sense(w[j]), feasible)
            problem.solve(solver="CLARABEL", time_limit=TIME_LIMIT)
            if problem.status not in ("optimal", "optimal_inaccurate") or w.value is None:
                raise MaxMarginSolverError(f"solution_spread: Clarabel ended with status "
                                           f"{problem.status!r} on coordinate {j}.")
            ends.append(float(w.value[j]))
    return max(hi - lo for hi, lo in zip(ends[::2], ends[1::2]))


def flat_direction(direction: Direction) -> np.ndarray:
    """A solution's direction as one flat vector (its blocks concatenated in order)."""
    if isinstance(direction, dict):
        return np.concatenate([np.asarray(v).reshape(-1) for v in direction.values()])
    return np.asarray(direction).reshape(-1)


def nearness(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor,
             solutions: dict[str, tuple[_norms.Norm | str, MaxMarginSolution]],
             ) -> dict[str, dict[str, float]]:
    """How near a trained linear model ends to exact solutions. ``solutions``:
    ``{name: (norm, MaxMarginSolution)}``. Returns ``{"cos": {name: cosine of θ with the
    solution}, "margin": {name: θ's normalized margin in that norm ÷ the maximum}}``."""
    from .margins import normalized_margin

    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double().cpu().numpy()
    out: dict[str, dict[str, float]] = {"cos": {}, "margin": {}}
    for name, (norm, solution) in solutions.items():
        w = flat_direction(solution.direction)
        out["cos"][name] = float(theta @ w / (np.linalg.norm(theta) * np.linalg.norm(w)))
        out["margin"][name] = normalized_margin(model, X, y, norm) / solution.margin
    return out


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

    def __repr__(self) -> str:
        return (f"AdaptiveNormSolution(margin={self.margin:.6g}, support={self.support.tolist()}, "
                f"iterations={self.iterations}, residual={self.residuals[-1]:.2g})")


def adaptive_matrix(Z: Array, alpha: Array) -> np.ndarray:
    """The diagonal of ``M(α) = diag(sqrt(Σ_i α_i² z_i∘z_i))``: AdamProxy's denominator
    ``sqrt(Σ_i ∇L_i²)`` when the per-sample loss weights are proportional to α."""
    Z, alpha = _as_numpy(Z), _as_numpy(alpha)
    diagonal: np.ndarray = np.sqrt((alpha[:, None] ** 2 * Z**2).sum(axis=0))  # a ufunc's result is Any
    return diagonal


def adaptive_mahalanobis(X: Array, y: Array, damping: float = 0.5, tol: float = 1e-9,
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
    check_data(X, y)
    if X.ndim != 2:
        raise ValueError(f"X must be (n, d); got {X.shape}.")
    Z = y[:, None] * X
    alpha = np.full(len(y), 1.0 / len(y))
    residuals: list[float] = []
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
