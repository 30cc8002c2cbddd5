"""Exact max-margin solutions at every scale of the data, against independent scipy references.

The references are the Lawson–Hanson least-distance program (``min ‖w‖₂ s.t. Zw ≥ 1`` by
``scipy.optimize.nnls``) for ℓ2 and Mahalanobis, and HiGHS LPs (``scipy.optimize.linprog``)
for ℓ∞ and ℓ1. They are themselves scale-dependent (the nnls program fails below about
1e-4, HiGHS refuses coefficients beyond 1e15), so they solve the problem at the data's own
scale (integers of order 1–20), and the exact identity — data ``sX`` have the max-margin
direction of ``X`` and ``s`` times its margin — carries them to the scale ``s`` under test:
1e-8 to 1e8 for ℓ2 and Mahalanobis, 1e-150 to 1e150 for ℓ∞ and ℓ1 (hypothesis, with a
random mantissa), and the cases the solvers once failed, explicitly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from implicit_bias import data, norms
from implicit_bias.maxmargin import NotSeparableError, max_margin, norm_value, solution_spread
from scipy.optimize import linprog, nnls

RTOL = 1e-6  # the solver's certified duality gap (maxmargin.GAP_RTOL)


def ldp(Z) -> np.ndarray:
    """``min ‖w‖₂ s.t. Zw ≥ 1`` by Lawson & Hanson's least-distance programming (1974,
    ch. 23): with ``E = [Zᵀ; 1ᵀ]``, ``f = e_{d+1}`` and ``u = argmin_{u ≥ 0} ‖Eu − f‖``,
    the residual ``r = Eu − f`` gives ``w = −r_{1:d} / r_{d+1}``."""
    n, d = Z.shape
    E, f = np.vstack([Z.T, np.ones(n)]), np.r_[np.zeros(d), 1.0]
    u, _ = nnls(E, f, maxiter=50 * n)
    r = E @ u - f
    w = -r[:d] / r[d]
    assert (Z @ w).min() >= 1 - 1e-9  # the reference's own feasibility
    return w


def l2_reference(Z):
    """(unit ℓ2 direction, margin) of the signed data Z."""
    w = ldp(Z)
    return w / np.linalg.norm(w), 1 / np.linalg.norm(w)


def lp_reference(Z, norm: str) -> float:
    """max γ s.t. Zw ≥ γ, ‖w‖ ≤ 1 (ℓ∞ or ℓ1) as an LP solved by HiGHS."""
    n, d = Z.shape
    if norm == "linf":  # variables (w, γ) with −1 ≤ w ≤ 1
        res = linprog(np.r_[np.zeros(d), -1.0], A_ub=np.c_[-Z, np.ones(n)], b_ub=np.zeros(n),
                      bounds=[(-1, 1)] * d + [(None, None)], method="highs")
    else:  # w = u − v with u, v ≥ 0 and Σ(u + v) ≤ 1; variables (u, v, γ)
        A = np.vstack([np.c_[-Z, Z, np.ones(n)], np.r_[np.ones(2 * d), 0.0]])
        res = linprog(np.r_[np.zeros(2 * d), -1.0], A_ub=A, b_ub=np.r_[np.zeros(n), 1.0],
                      bounds=[(0, None)] * (2 * d) + [(None, None)], method="highs")
    assert res.status == 0
    return -res.fun


def check_at_scale(sol, X, y, s, norm, margin, direction=None):
    """``sol`` solves the data ``sX``: its margin is ``s · margin`` and, where the solution
    is unique, its direction is ``direction``; every constraint holds at its margin."""
    Z = y[:, None] * (s * X).reshape(len(y), -1)
    q = Z @ sol.direction.reshape(-1)
    assert norm_value(sol.direction, norm) == pytest.approx(1.0, rel=1e-9)
    assert sol.margin == pytest.approx(q.min(), rel=1e-12)
    assert sol.margin == pytest.approx(s * margin, rel=RTOL)
    assert 0 <= sol.gap <= RTOL
    if direction is not None:
        np.testing.assert_allclose(sol.direction.reshape(-1), direction, atol=1e-5)


# --- hypothesis: integer data, labelled by an integer teacher, at random scales -----------


@st.composite
def separable_integers(draw, max_d=4):
    """1–10 integer points in 1–``max_d`` dimensions (entries in [−20, 20]) labelled by an
    integer teacher ``t``: separable with margin ≥ 1/‖t‖₂. Points on the teacher's plane
    are dropped."""
    d = draw(st.integers(1, max_d))
    entries = st.integers(-20, 20)
    rows = draw(st.lists(st.lists(entries, min_size=d, max_size=d), min_size=1, max_size=10))
    t = np.array(draw(st.lists(st.integers(-5, 5), min_size=d, max_size=d)), dtype=float)
    if not t.any():
        t[0] = 1.0
    X = np.array(rows, dtype=float)
    s = X @ t
    if not s.any():
        X, s = np.vstack([X, t]), np.r_[s, t @ t]
    keep = s != 0
    return X[keep], np.sign(s[keep])


def scales(exponents):
    """``m · 10^k`` with k from ``exponents`` and a mantissa m in [1, 10)."""
    return st.builds(lambda k, m: m * 10.0**k, st.sampled_from(exponents), st.floats(1.0, 9.99))


MODERATE = [-8, -6, -4, -2, 0, 2, 4, 6, 8]
EXTREME = [-150, -100, -50, -8, 0, 8, 50, 100, 150]


@given(problem=separable_integers(), s=scales(MODERATE))
def test_l2_at_every_scale(problem, s):
    X, y = problem
    direction, margin = l2_reference(y[:, None] * X)
    check_at_scale(max_margin(s * X, y, "l2"), X, y, s, "l2", margin, direction)


@given(problem=separable_integers(), s=scales(MODERATE), seed=st.integers(0, 2**16))
def test_mahalanobis_at_every_scale(problem, s, seed):
    """‖w‖_M = ‖Aw‖₂ for M = AᵀA: ℓ2 on the inputs X A⁻¹ (v = Aw)."""
    X, y = problem
    d = X.shape[1]
    A = np.random.default_rng(seed).integers(-1, 2, size=(d, d)) + 5.0 * np.eye(d)  # invertible
    v, margin = l2_reference(y[:, None] * X @ np.linalg.inv(A))
    direction = np.linalg.solve(A, v)
    check_at_scale(max_margin(s * X, y, A.T @ A), X, y, s, A.T @ A, margin, direction)


@given(problem=separable_integers(), s=scales(EXTREME), norm=st.sampled_from(["linf", "l1"]))
def test_lp_norms_at_every_scale(problem, s, norm):
    X, y = problem
    margin = lp_reference(y[:, None] * X, norm)
    check_at_scale(max_margin(s * X, y, norm), X, y, s, norm, margin)


@given(problem=separable_integers(), s=scales(EXTREME),
       norm=st.sampled_from(["l2", "linf", "l1"]), mirror=st.integers(0, 9))
def test_not_separable_at_every_scale(problem, s, norm, mirror):
    """A point and its mirror image with the same label: never separable, at any scale."""
    X, y = problem
    i = mirror % len(y)
    with pytest.raises(NotSeparableError, match="not linearly separable"):
        max_margin(s * np.vstack([X, -X[i]]), np.r_[y, y[i]], norm)


# --- the cases the solvers once failed, explicitly ----------------------------------------


@pytest.fixture(scope="module")
def gauss():
    X, y = data.gaussian(n=40, d=10, seed=0)
    return X.numpy(), y.numpy()


@pytest.mark.parametrize("s", [1e-8, 1e-4, 1e6, 1e8])
def test_l2_gaussian_scaled(gauss, s):
    """OSQP returned a margin 27% low at ×1e6 (smallest constraint 1.047, "optimal") and a
    false NotSeparableError at ×1e-4 and ×1e-8."""
    X, y = gauss
    direction, margin = l2_reference(y[:, None] * X)
    check_at_scale(max_margin(s * X, y, "l2"), X, y, s, "l2", margin, direction)


@pytest.mark.parametrize("s", [1e-150, 1e150])
@pytest.mark.parametrize("norm", ["linf", "l1"])
def test_lp_norms_gaussian_at_1e150(gauss, norm, s):
    """Once a false NotSeparableError at 1e-150 and cvxpy's raw SolverError at 1e150."""
    X, y = gauss
    check_at_scale(max_margin(s * X, y, norm), X, y, s, norm, lp_reference(y[:, None] * X, norm))


@pytest.mark.parametrize("label", [1.0, -1.0])
def test_single_tiny_point(label):
    """x = −6.3e-6 was called non-separable."""
    sol = max_margin(np.array([[-6.3e-6]]), np.array([label]), "l2")
    assert sol.direction[0] == -label
    assert sol.margin == pytest.approx(6.3e-6, rel=1e-12)


#: Ten integer points in 3-D on which OSQP stopped at its iteration limit
#: (``user_limit``, the book raised RuntimeError); the same pattern at entries up to
#: 1000 (BIG) came back "optimal" with a margin 0.4% low.
TEN = np.array([[2, 13, -14], [13, 20, 8], [7, 9, -4], [-17, 3, 2], [-14, 4, 11],
                [-15, 5, 16], [-18, 7, -18], [-16, 15, -16], [-3, -16, -16], [-15, 1, 4]], dtype=float)
BIG = np.array([[114, 618, -660], [654, 980, 367], [343, 420, -195], [-810, 148, 91], [-680, 196, 545],
                [-718, 251, 777], [-863, 352, -857], [-794, 709, -757], [-137, -793, -787],
                [-711, 41, 180]], dtype=float)
TEN_Y = np.r_[-np.ones(6), np.ones(4)]


@pytest.mark.parametrize("X", [TEN, BIG], ids=["ten", "big"])
@pytest.mark.parametrize("s", [1e-8, 1.0, 1e8])
def test_ten_integer_points_in_3d(X, s):
    direction, margin = l2_reference(TEN_Y[:, None] * X)
    sol = max_margin(s * X, TEN_Y, "l2")
    check_at_scale(sol, X, TEN_Y, s, "l2", margin, direction)
    assert sol.support.tolist() == [3, 7, 9]


class WeightedL1(norms.Norm):
    """A user's norm ``Σ_j c_j |w_j|`` with a cvxpy value and no dual expression: checked
    by the duality gap alone."""

    name = "weighted_l1_scales"

    def __init__(self, c):
        self.c = np.asarray(c, dtype=float)

    def __call__(self, xs):
        return (torch.as_tensor(self.c) * xs[0].reshape(-1).abs()).sum()

    def dual(self, gs):
        return (gs[0].reshape(-1).abs() / torch.as_tensor(self.c)).max()

    def steepest(self, gs):
        raise NotImplementedError

    def subgradient(self, xs):
        raise NotImplementedError

    def value_expr(self, expr, shapes):
        import cvxpy as cp

        return cp.norm(cp.multiply(self.c, expr), 1)


@pytest.mark.parametrize("s", [1e-150, 1e-8, 1e8, 1e150])
@pytest.mark.parametrize("norm", ["l2", "linf", "l1", "spectral", "mahalanobis", "user"])
def test_every_norm_is_scale_free(norm, s):
    """The solution of ``sX`` is the solution of ``X`` with ``s`` times its margin, for
    every kind of norm, at the extreme scales too."""
    rng = np.random.default_rng(5)
    X = rng.integers(-9, 10, size=(12, 2, 3)).astype(float)
    y = np.sign(np.einsum("nab,ab->n", X, rng.integers(-3, 4, size=(2, 3))) + 0.5)
    if norm != "spectral":
        X = X.reshape(12, 6)
    c = np.arange(1.0, 7.0)
    kind = {"mahalanobis": np.diag(c), "user": WeightedL1(c)}.get(norm, norm)
    base = max_margin(X, y, kind)
    sol = max_margin(s * X, y, kind)
    unique = norm in ("l2", "mahalanobis")  # strictly convex
    check_at_scale(sol, X, y, s, kind, base.margin, base.direction.reshape(-1) if unique else None)


@pytest.mark.parametrize("s", [1e-150, 1.0, 1e150])
def test_solution_spread_is_scale_free(s):
    """Two points on the first axis: the ℓ∞ solution has w₂ free in [−1, 1]."""
    X, y = np.array([[1.0, 0.0], [-2.0, 0.0]]), np.array([1.0, -1.0])
    assert solution_spread(s * X, y, "linf") == pytest.approx(2.0, abs=1e-6)


def test_multipliers_out_of_float_range_warn():
    """Multipliers scale like 1/γ²: at X × 1e-160 they overflow (the direction and margin
    are still right), at X × 1e-150 they do not."""
    X, y = np.array([[1.0, 2.0], [-3.0, 1.0]]), np.array([1.0, -1.0])
    base = max_margin(X, y, "l2")
    with pytest.warns(RuntimeWarning, match="multipliers .* leave float64's range"):
        sol = max_margin(1e-160 * X, y, "l2")
    assert sol.margin == pytest.approx(1e-160 * base.margin, rel=1e-9)
    np.testing.assert_allclose(sol.direction, base.direction, atol=1e-9)
    np.testing.assert_allclose(max_margin(1e-150 * X, y, "l2").dual, 1e300 * base.dual, rtol=1e-6)


@pytest.mark.parametrize("s", [1e-300, 1.0, 1e300])
def test_zero_data_are_not_separable(s):
    with pytest.raises(NotSeparableError, match="not linearly separable"):
        max_margin(s * np.array([[0.0, 0.0], [0.0, 0.0]]), np.array([1.0, -1.0]), "l2")
