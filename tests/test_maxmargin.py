"""Exact max-margin solutions against independent solvers (scikit-learn's hard-margin SVM
for ℓ2, scipy's linprog for the ℓ∞ and ℓ1 LPs), KKT conditions of the returned
multipliers, a hypothesis check on random separable sets, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from implicit_bias import data, maxmargin, norms
from implicit_bias.maxmargin import NotSeparableError, max_margin, norm_value
from scipy.optimize import linprog
from sklearn.svm import SVC, LinearSVC

DUAL_NORM = {"l2": lambda v: np.linalg.norm(v), "linf": lambda v: np.abs(v).sum(),
             "l1": lambda v: np.abs(v).max()}


@pytest.fixture(scope="module")
def gauss():
    X, y = data.gaussian(n=40, d=6, seed=7)
    return X.numpy(), y.numpy()


def lp_margin(X, y, norm: str) -> float:
    """max γ s.t. y_i x_i·w ≥ γ, ‖w‖ ≤ 1, as an LP solved by scipy's HiGHS."""
    Z = y[:, None] * X
    n, d = Z.shape
    if norm == "linf":  # variables (w, γ), −1 ≤ w ≤ 1
        c = np.r_[np.zeros(d), -1.0]
        A = np.c_[-Z, np.ones(n)]
        res = linprog(c, A_ub=A, b_ub=np.zeros(n), bounds=[(-1, 1)] * d + [(None, None)], method="highs")
    else:  # ℓ1: w = u − v with u, v ≥ 0 and Σ(u + v) ≤ 1; variables (u, v, γ)
        c = np.r_[np.zeros(2 * d), -1.0]
        A = np.vstack([np.c_[-Z, Z, np.ones(n)], np.r_[np.ones(2 * d), 0.0]])
        b = np.r_[np.zeros(n), 1.0]
        res = linprog(c, A_ub=A, b_ub=b, bounds=[(0, None)] * (2 * d) + [(None, None)], method="highs")
    assert res.status == 0
    return -res.fun


def check_solution(sol, X, y, norm, rtol=1e-7):
    """Unit norm, every constraint holds, ``margin`` is the smallest sample margin, the
    support attains it, and the multipliers satisfy the KKT conditions of
    min ½‖w‖² s.t. y_i x_i·w ≥ 1 at w* = direction / margin."""
    Z = y[:, None] * X
    q = Z @ sol.direction.reshape(-1)
    assert norm_value(sol.direction, norm) == pytest.approx(1.0, rel=1e-9)
    assert sol.margin > 0
    assert 0 <= sol.gap <= maxmargin.GAP_RTOL and sol.solver == "CLARABEL"
    assert sol.margin == pytest.approx(q.min(), rel=1e-12)
    assert np.all(q >= sol.margin * (1 - 1e-12))
    assert len(sol.support) >= 1
    np.testing.assert_allclose(q[sol.support], sol.margin, rtol=1e-5)
    lam = sol.dual
    assert lam.shape == (len(y),)
    assert np.all(lam >= -1e-7 * lam.max())
    w_star = sol.direction.reshape(-1) / sol.margin  # the solution of the ½‖w‖² problem
    G = Z.T @ lam
    size = 1.0 / sol.margin
    off = np.setdiff1d(np.arange(len(y)), sol.support)
    if len(off):  # complementary slackness: no weight on inactive constraints
        assert np.abs(lam[off]).max() <= 1e-5 * lam.max()
    if isinstance(norm, str):
        # Stationarity: Σ λ_i z_i ∈ ‖w*‖ ∂‖w*‖, i.e. dual norm ‖w*‖ and ⟨G, w*⟩ = ‖w*‖².
        assert DUAL_NORM[norm](G) == pytest.approx(size, rel=rtol * 100)
        assert G @ w_star == pytest.approx(size**2, rel=rtol * 100)
    if isinstance(norm, str) and norm == "l2":
        np.testing.assert_allclose(G, w_star, rtol=1e-5, atol=1e-6 * size)


def test_l2_matches_sklearn_hard_margin_svm(gauss):
    X, y = gauss
    sol = max_margin(X, y, "l2")
    check_solution(sol, X, y, "l2")
    # SVC fits an intercept; on the symmetrized set {(x, y), (−x, −y)} the optimal
    # intercept is 0, so its w is the bias-free hard-margin solution.
    svc = SVC(kernel="linear", C=1e8, tol=1e-8).fit(np.vstack([X, -X]), np.r_[y, -y])
    w = svc.coef_[0]
    assert abs(svc.intercept_[0]) < 1e-4
    assert w @ sol.direction / np.linalg.norm(w) > 0.9999
    assert (y * (X @ w)).min() / np.linalg.norm(w) == pytest.approx(sol.margin, rel=1e-4)
    # And the bias-free hinge-loss LinearSVC with a huge C agrees too.
    lin = LinearSVC(loss="hinge", fit_intercept=False, C=1e6, tol=1e-10, max_iter=200_000).fit(X, y)
    w = lin.coef_[0]
    assert w @ sol.direction / np.linalg.norm(w) > 0.9999


@pytest.mark.parametrize("norm", ["linf", "l1"])
@pytest.mark.parametrize("seed", [7, 8])
def test_lp_norms_match_linprog(norm, seed):
    X, y = data.gaussian(n=30, d=5, seed=seed)
    X, y = X.numpy(), y.numpy()
    sol = max_margin(X, y, norm)
    check_solution(sol, X, y, norm)
    assert sol.norm == norm
    assert sol.margin == pytest.approx(lp_margin(X, y, norm), rel=1e-6)


def test_margins_are_ordered_by_the_norms(gauss):
    """‖w‖∞ ≤ ‖w‖₂ ≤ ‖w‖₁, so the unit balls nest and γ_∞ ≥ γ₂ ≥ γ₁."""
    X, y = gauss
    g = {n: max_margin(X, y, n).margin for n in ("linf", "l2", "l1")}
    assert g["linf"] >= g["l2"] * (1 - 1e-7) and g["l2"] >= g["l1"] * (1 - 1e-7)


def test_mahalanobis(gauss):
    X, y = gauss
    l2 = max_margin(X, y, "l2")
    for M in (np.eye(6), np.ones(6)):  # identity, as a matrix and as a diagonal
        sol = max_margin(X, y, M)
        assert sol.norm == "mahalanobis"
        np.testing.assert_allclose(sol.direction, l2.direction, atol=1e-6)
        assert sol.margin == pytest.approx(l2.margin, rel=1e-6)
    # A general M: with M = AᵀA the problem is ℓ2 on the inputs X A⁻¹ (v = A w).
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 6)) + 3 * np.eye(6)
    M = A.T @ A
    sol = max_margin(X, y, M)
    check_solution(sol, X, y, M)
    ref = max_margin(X @ np.linalg.inv(A), y, "l2")
    np.testing.assert_allclose(A @ sol.direction, ref.direction, atol=1e-6)
    assert sol.margin == pytest.approx(ref.margin, rel=1e-6)
    assert norm_value(sol.direction, M) == pytest.approx(1.0, rel=1e-9)
    # Stationarity of ½ wᵀMw: M w* = Σ λ_i z_i.
    Z = y[:, None] * X
    np.testing.assert_allclose(M @ sol.direction / sol.margin, Z.T @ sol.dual, rtol=1e-5, atol=1e-5)


def test_spectral_on_row_matrices_is_l2(gauss):
    """With 1×d matrix inputs the spectral norm of W is the ℓ2 norm of its one row."""
    X, y = gauss
    l2 = max_margin(X, y, "l2")
    sol = max_margin(X[:, None, :], y, "spectral")
    assert sol.direction.shape == (1, 6)
    np.testing.assert_allclose(sol.direction[0], l2.direction, atol=1e-5)
    assert sol.margin == pytest.approx(l2.margin, rel=1e-5)


def test_spectral_matrix_inputs_kkt():
    rng = np.random.default_rng(3)
    n, a, b = 12, 3, 4
    teacher = rng.standard_normal((a, b))
    X = rng.standard_normal((n, a, b))
    y = np.sign(np.einsum("nab,ab->n", X, teacher))
    sol = max_margin(X, y, "spectral")
    assert sol.direction.shape == (a, b)
    assert np.linalg.norm(sol.direction, 2) == pytest.approx(1.0, rel=1e-6)
    Z = y[:, None] * X.reshape(n, -1)
    q = Z @ sol.direction.reshape(-1)
    assert sol.margin == pytest.approx(q.min(), rel=1e-12)
    # Stationarity for min ½‖W‖₂²: G = Σ λ_i y_i X_i has nuclear norm ‖W*‖ and ⟨G, W*⟩ = ‖W*‖².
    G = (Z.T @ sol.dual).reshape(a, b)
    size = 1 / sol.margin
    assert np.linalg.norm(G, "nuc") == pytest.approx(size, rel=1e-4)
    assert np.sum(G * sol.direction) * size == pytest.approx(size**2, rel=1e-4)
    # The teacher's (normalized) margin is no better than the optimum.
    teacher_margin = (y * np.einsum("nab,ab->n", X, teacher)).min() / np.linalg.norm(teacher, 2)
    assert teacher_margin <= sol.margin * (1 + 1e-6)


@pytest.mark.parametrize("norm", ["l2", "linf", "l1", "identity"])
def test_not_separable(norm):
    X = np.array([[1.0, 2.0], [-1.0, -2.0], [0.5, -1.0]])
    y = np.array([1.0, 1.0, -1.0])  # x and −x with the same label
    with pytest.raises(NotSeparableError, match="not linearly separable"):
        max_margin(X, y, np.eye(2) if norm == "identity" else norm)
    assert issubclass(NotSeparableError, ValueError)


def test_bad_input(gauss):
    X, y = gauss
    with pytest.raises(ValueError, match="Labels must be -1 or \\+1"):
        max_margin(X, (y + 1) / 2)
    with pytest.raises(ValueError, match="one label per row of X"):
        max_margin(X[:-1], y)
    with pytest.raises(ValueError, match="X must be"):
        max_margin(X[:, :, None], y, "l2")
    with pytest.raises(ValueError, match="Unknown norm"):
        max_margin(X, y, "l3")
    with pytest.raises(ValueError, match="symmetric"):
        max_margin(X, y, np.triu(np.ones((6, 6))))
    with pytest.raises(ValueError, match="symmetric"):
        max_margin(X, y, np.eye(5))
    with pytest.raises(ValueError, match="positive definite"):
        max_margin(X, y, np.diag([1.0, 1, 1, 1, 1, 0]))
    with pytest.raises(ValueError, match="matrix inputs"):
        max_margin(X, y, "spectral")
    with pytest.raises(ValueError, match="flatten it"):
        max_margin(X, y[:, None])
    with pytest.raises(ValueError, match="empty"):
        max_margin(X[:0], y[:0])
    with pytest.raises(ValueError, match="d ≥ 1"):
        max_margin(X[:, :0], y)
    for bad in (np.nan, np.inf):
        Xb = X.copy()
        Xb[3, 2] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            max_margin(Xb, y)


# --- every answer is checked before it is returned ----------------------------------------


def _mutant(monkeypatch, change):
    """Make the solver's answer ``(w, λ)`` wrong by ``change``."""
    solve = maxmargin._solve

    def wrong(*args):
        answer = solve(*args)
        return answer if isinstance(answer, str) else change(*answer)

    monkeypatch.setattr(maxmargin, "_solve", wrong)


def _turned(w, lam):
    """w turned in the plane of its two largest coordinates, then scaled so that its
    smallest constraint is 1 again: feasible and tight, but not the optimum."""
    i, j = np.argsort(-np.abs(w))[:2]
    v = w.copy()
    v[i], v[j] = w[i] - 0.02 * w[j], w[j] + 0.02 * w[i]
    return v, lam


@pytest.mark.parametrize("change,check", [
    (lambda w, lam: (1.05 * w, lam), "not the shortest w"),
    (lambda w, lam: (0.95 * w, lam), "infeasible"),
    (lambda w, lam: (w, np.ones_like(lam)), "duality gap"),
    (lambda w, lam: (w, lam + 0.1 * lam.max()), "duality gap"),
    (lambda w, lam: (w * np.nan, lam), "not finite"),
], ids=["long", "short", "uniform-multipliers", "shifted-multipliers", "nan"])
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_a_wrong_answer_is_refused(gauss, monkeypatch, change, check, norm):
    """Each check refuses an answer broken its way, and the error names the check (for
    every solver tried)."""
    X, y = gauss
    _mutant(monkeypatch, change)
    with pytest.raises(maxmargin.MaxMarginSolverError, match=f"CLARABEL: .*{check}.*SCS: .*{check}"):
        max_margin(X, y, norm)


@pytest.mark.parametrize("norm", ["l2", "linf", "l1", "identity"])
def test_a_turned_direction_fails_its_certificates(gauss, monkeypatch, norm):
    """A feasible, tight but suboptimal w fails the duality gap and, with the gap check
    switched off, its KKT certificate."""
    X, y = gauss
    norm = np.eye(X.shape[1]) if norm == "identity" else norm

    def turned(w, lam):
        v, lam = _turned(w, lam)
        return v / (maxmargin._rescaled(y[:, None] * X)[0] @ v).min(), lam

    _mutant(monkeypatch, turned)
    with pytest.raises(maxmargin.MaxMarginSolverError, match="duality gap"):
        max_margin(X, y, norm)
    monkeypatch.setattr(maxmargin, "GAP_RTOL", np.inf)
    with pytest.raises(maxmargin.MaxMarginSolverError, match="KKT certificate has ε"):
        max_margin(X, y, norm)


@pytest.mark.parametrize("solver", ["OSQP", "CLARABEL"])
def test_unscaled_answers_are_refused(gauss, solver, monkeypatch):
    """Without the rescaling, on X × 1e6 OSQP's answer (reported optimal; its margin was
    27% low) and Clarabel's (objective ~1e-12, at its absolute tolerance) are both too long;
    the checks refuse them and name the failure."""
    X, y = gauss
    monkeypatch.setattr(maxmargin, "_rescaled", lambda Z: (Z, 0))
    monkeypatch.setattr(maxmargin, "SOLVERS", {solver: maxmargin.SOLVERS.get(solver, {})})
    with pytest.raises(maxmargin.MaxMarginSolverError, match=f"{solver}: its w has smallest constraint"):
        max_margin(1e6 * X, y, "l2")
    monkeypatch.undo()
    assert max_margin(1e6 * X, y, "l2").margin == pytest.approx(1e6 * max_margin(X, y, "l2").margin, rel=1e-7)


def test_scs_answers_when_clarabel_fails(gauss, monkeypatch):
    X, y = gauss
    solve = maxmargin._solve
    monkeypatch.setattr(maxmargin, "_solve", lambda Zs, shape, norm, solver: "CLARABEL failed (mocked)"
                        if solver == "CLARABEL" else solve(Zs, shape, norm, solver))
    with pytest.warns(RuntimeWarning, match=r"CLARABEL: CLARABEL failed \(mocked\); the answer of SCS"):
        sol = max_margin(X, y, "linf")
    assert sol.solver == "SCS"
    monkeypatch.undo()
    assert sol.margin == pytest.approx(max_margin(X, y, "linf").margin, rel=1e-6)


def test_separability_is_decided_by_the_lp_not_the_solver(monkeypatch):
    """When every solver fails, separable data give MaxMarginSolverError (not
    NotSeparableError), and non-separable data NotSeparableError."""
    monkeypatch.setattr(maxmargin, "_solve", lambda *args: "mocked failure")
    with pytest.raises(maxmargin.MaxMarginSolverError, match="mocked failure"):
        max_margin(np.array([[1.0, 2.0], [-1.0, 0.5]]), np.array([1.0, -1.0]))
    with pytest.raises(NotSeparableError, match=r"margin .* × max\|x\|"):
        max_margin(np.array([[1.0, 2.0], [-1.0, -2.0]]), np.array([1.0, 1.0]))


def test_torch_inputs_and_repr(gauss):
    X, y = gauss
    a = max_margin(torch.as_tensor(X), torch.as_tensor(y), "l2")
    b = max_margin(X, y, "l2")
    np.testing.assert_allclose(a.direction, b.direction, atol=1e-12)
    assert "MaxMarginSolution(norm='l2'" in repr(a)


def test_solution_spread():
    X, y = data.gaussian(n=30, d=5, seed=7)
    assert maxmargin.solution_spread(X, y, "l2") == 0.0
    assert maxmargin.solution_spread(X, y, np.eye(5)) == 0.0
    # Two points along the first axis: the ℓ∞ solution is w₁ = 1 with w₂ free in [−1, 1].
    Xf = np.array([[1.0, 0.0], [-2.0, 0.0]])
    yf = np.array([1.0, -1.0])
    assert maxmargin.solution_spread(Xf, yf, "linf") == pytest.approx(2.0, abs=1e-6)


# --- hypothesis: random separable sets ----------------------------------------------------


@st.composite
def separable_sets(draw):
    n, d = draw(st.integers(2, 8)), draw(st.integers(2, 4))
    entries = st.integers(-20, 20).map(lambda k: k / 10)
    X = np.array(draw(st.lists(st.lists(entries, min_size=d, max_size=d), min_size=n, max_size=n)))
    t = np.array(draw(st.lists(entries, min_size=d, max_size=d)))
    if not np.any(t):
        t[0] = 1.0
    t = t / np.linalg.norm(t)
    s = X @ t
    y = np.where(s >= 0, 1.0, -1.0)
    X = X + (0.2 * y)[:, None] * t  # every point at least 0.2 from the teacher's plane
    return X, y


@given(problem=separable_sets(), norm=st.sampled_from(["l2", "linf", "l1"]), seed=st.integers(0, 2**32 - 1))
def test_random_separable_sets(problem, norm, seed):
    X, y = problem
    sol = max_margin(X, y, norm)
    Z = y[:, None] * X
    q = Z @ sol.direction
    assert norm_value(sol.direction, norm) == pytest.approx(1.0, rel=1e-9)
    assert sol.margin == pytest.approx(q.min(), rel=1e-12)
    assert np.all(q >= sol.margin * (1 - 1e-12))
    # The unit-ℓ2 teacher t has margin ≥ 0.2; ‖t‖∞ ≤ 1 and ‖t‖₁ ≤ √d bound the other margins.
    assert sol.margin >= 0.2 / {"l2": 1.0, "linf": 1.0, "l1": np.sqrt(X.shape[1])}[norm] * (1 - 1e-6)
    if norm != "l2":
        assert sol.margin == pytest.approx(lp_margin(X, y, norm), rel=1e-6)
    # No nearby unit-norm direction does better.
    rng = np.random.default_rng(seed)
    for r in (1e-3, 1e-2, 1e-1, 1.0):
        for _ in range(10):
            v = sol.direction + r * rng.standard_normal(X.shape[1])
            v = v / norm_value(v, norm)
            assert (Z @ v).min() <= sol.margin + 1e-6 * (1 + sol.margin)


# --- norm objects, the registry and a user's own norm -------------------------------------


@pytest.mark.parametrize("name,norm", [("l2", norms.L2()), ("linf", norms.Linf()), ("l1", norms.L1())])
def test_norm_objects_equal_their_names(gauss, name, norm):
    X, y = gauss
    a, b = max_margin(X, y, norm), max_margin(X, y, name)
    assert a.norm == name
    np.testing.assert_array_equal(a.direction, b.direction)
    np.testing.assert_array_equal(a.dual, b.dual)
    assert a.margin == b.margin
    assert norm_value(a.direction, norm) == norm_value(a.direction, name)
    assert maxmargin.solution_spread(X, y, norm) == maxmargin.solution_spread(X, y, name)


def test_spectral_and_mahalanobis_objects_equal_their_shorthands(gauss):
    X, y = gauss
    rng = np.random.default_rng(1)
    A = rng.standard_normal((6, 6)) + 3 * np.eye(6)
    M = A.T @ A
    a, b = max_margin(X, y, norms.Mahalanobis(M)), max_margin(X, y, M)
    assert a.norm == b.norm == "mahalanobis"
    np.testing.assert_array_equal(a.direction, b.direction)
    Xm = rng.standard_normal((12, 3, 4))
    ym = np.sign(np.einsum("nab,ab->n", Xm, rng.standard_normal((3, 4))))
    a, b = max_margin(Xm, ym, norms.Spectral()), max_margin(Xm, ym, "spectral")
    np.testing.assert_array_equal(a.direction, b.direction)
    assert a.margin == b.margin


class WeightedL1(norms.Norm):
    """A user's norm ``Σ_j c_j |w_j|`` (c > 0), with only the methods it needs here."""

    name = "weighted_l1"

    def __init__(self, c):
        self.c = torch.as_tensor(c, dtype=torch.float64)

    def __call__(self, xs):
        return (self.c * torch.cat([x.reshape(-1) for x in xs]).abs()).sum()

    def dual(self, gs):
        return (torch.cat([g.reshape(-1) for g in gs]).abs() / self.c).max()

    def steepest(self, gs):
        raise NotImplementedError

    def subgradient(self, xs):
        raise NotImplementedError

    def value_expr(self, expr, shapes):
        import cvxpy as cp

        return cp.norm(cp.multiply(self.c.numpy(), expr), 1)


def test_a_users_norm_by_object_and_by_name(gauss):
    """With v = c∘w, ``Σ c_j |w_j|`` on X is ℓ1 on X / c: an independent answer."""
    X, y = gauss
    c = np.linspace(0.5, 3.0, X.shape[1])
    sol = max_margin(X, y, WeightedL1(c))
    ref = max_margin(X / c, y, "l1")
    assert sol.norm == "weighted_l1"
    assert sol.margin == pytest.approx(ref.margin, rel=1e-6)
    np.testing.assert_allclose(c * sol.direction, ref.direction, atol=1e-6)
    np.testing.assert_allclose(sol.dual, ref.dual, rtol=1e-4, atol=1e-6 * ref.dual.max())
    assert norm_value(sol.direction, WeightedL1(c)) == pytest.approx(1.0, rel=1e-12)
    norms.register("weighted_l1_test", lambda params: WeightedL1(c))
    assert max_margin(X, y, "weighted_l1_test").margin == sol.margin


def test_hybrid_by_name_on_vectors_is_linf(gauss):
    """Norms built from the parameter list work by name: on a vector weight the hybrid norm
    has only its ℓ∞ block."""
    X, y = gauss
    assert max_margin(X, y, "hybrid").margin == pytest.approx(max_margin(X, y, "linf").margin, rel=1e-7)


def test_a_norm_without_a_cvxpy_value_says_what_to_add(gauss):
    class Bare(WeightedL1):
        value_expr = norms.Norm.value_expr

    X, y = gauss
    with pytest.raises(TypeError, match="value_expr"):
        max_margin(X, y, Bare(np.ones(6)))
