"""Norms on parameter lists: values against numpy oracles, duality and subgradient
properties (hypothesis), the exact polar factor against a float64 SVD, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from implicit_bias import norms
from implicit_bias.norms import newton_schulz

F64 = torch.float64
NORM_NAMES = ["l2", "linf", "l1", "spectral", "hybrid"]

# Exact multiples of 0.01 (many ties, zeros and rank-deficient matrices) mixed with
# generic floats; tiny magnitudes are flushed to 0 so that squares never underflow.
VALUES = st.one_of(
    st.integers(-1000, 1000).map(lambda k: k / 100),
    st.floats(-10, 10, allow_nan=False, allow_infinity=False).map(lambda v: v if abs(v) > 1e-3 else 0.0),
)


@st.composite
def param_lists(draw, count: int):
    """``count`` lists shaped like a two-layer network's parameters: a matrix (m×n)
    and a vector (k); all lists share the shapes."""
    m, n, k = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 6))
    return [
        [torch.from_numpy(draw(arrays(np.float64, (m, n), elements=VALUES))),
         torch.from_numpy(draw(arrays(np.float64, (k,), elements=VALUES)))]
        for _ in range(count)
    ]


def make_norm(name: str, params, r: float = 1.0) -> norms.Norm:
    return norms.hybrid(params, r) if name == "hybrid" else norms.by_name(name)


def scale(*lists) -> float:
    """A magnitude for absolute tolerances: the largest |entry| in the lists."""
    return max(float(t.abs().max()) for xs in lists for t in xs)


def is_zero(xs) -> bool:
    return all(bool((x == 0).all()) for x in xs)


def tol(*lists) -> float:
    # Norms of 5×5 matrices with entries ≤ 10 are ≤ 300; SVD-based ones are exact to
    # ~1e-15 relative. 1e-9 relative (to a generous scale) leaves a wide margin.
    return 1e-9 * (1.0 + 30 * scale(*lists))


RATIOS = st.floats(0.1, 10.0)


# --- values against independent numpy oracles ---------------------------------------------


def test_values_match_numpy_oracles():
    rng = np.random.default_rng(0)
    W, a = rng.standard_normal((4, 3)), rng.standard_normal(5)
    xs = [torch.from_numpy(W), torch.from_numpy(a)]
    s = np.linalg.svd(W, compute_uv=False)
    flat = np.r_[W.ravel(), a]
    r = 2.5
    expected = {
        "l2": (np.linalg.norm(flat), np.linalg.norm(flat)),
        "linf": (np.abs(flat).max(), np.abs(flat).sum()),
        "l1": (np.abs(flat).sum(), np.abs(flat).max()),
        # max-spectral: a vector is a 1×k matrix, whose spectral and nuclear norms are ℓ2.
        "spectral": (max(s[0], np.linalg.norm(a)), s.sum() + np.linalg.norm(a)),
        "hybrid": (max(r * s[0], np.abs(a).max()), s.sum() / r + np.abs(a).sum()),
    }
    for name, (value, dual) in expected.items():
        norm = make_norm(name, xs, r)
        assert float(norm(xs)) == pytest.approx(value, rel=1e-12), name
        assert float(norm.dual(xs)) == pytest.approx(dual, rel=1e-12), name


def test_inner_and_as_matrix():
    a = [torch.tensor([[1.0, 2.0]], dtype=F64), torch.tensor([3.0], dtype=F64)]
    b = [torch.tensor([[4.0, 5.0]], dtype=F64), torch.tensor([-1.0], dtype=F64)]
    assert float(norms.inner(a, b)) == 1 * 4 + 2 * 5 - 3
    assert norms.as_matrix(torch.tensor(2.0)).shape == (1, 1)
    assert norms.as_matrix(torch.zeros(5)).shape == (1, 5)
    assert norms.as_matrix(torch.zeros(2, 3, 4)).shape == (2, 12)
    with pytest.raises(ValueError):
        norms.inner(a, b[:1])  # strict zip: lengths must agree


def test_steepest_directions_are_the_named_optimizers():
    g = [torch.tensor([[0.5, -2.0], [0.0, 1.0]], dtype=F64), torch.tensor([3.0, -0.25], dtype=F64)]
    # ℓ∞ → sign descent.
    for u, gi in zip(norms.Linf().steepest(g), g):
        assert torch.equal(u, torch.sign(gi))
    # ℓ1 → one coordinate (the largest |g_j|, here 3.0) with its sign.
    u = norms.L1().steepest(g)
    assert torch.equal(u[0], torch.zeros(2, 2, dtype=F64))
    assert torch.equal(u[1], torch.tensor([1.0, 0.0], dtype=F64))
    # ℓ2 → g / ‖g‖ over the whole list.
    n = float(np.sqrt(0.25 + 4 + 1 + 9 + 0.0625))
    for u, gi in zip(norms.L2().steepest(g), g):
        torch.testing.assert_close(u, gi / n, rtol=1e-15, atol=0)


def test_l2_steepest_of_zero_is_zero_not_nan():
    zero = [torch.zeros(2, 3, dtype=F64), torch.zeros(4, dtype=F64)]
    for norm in (norms.L2(), norms.Linf(), norms.L1(), norms.Spectral()):
        for u in norm.steepest(zero):
            assert torch.equal(u, torch.zeros_like(u))


# --- hypothesis properties for every norm ---------------------------------------------------


@pytest.mark.parametrize("name", NORM_NAMES)
@given(lists=param_lists(1), r=RATIOS)
def test_steepest_attains_the_dual_norm(name, lists, r):
    (g,) = lists
    norm = make_norm(name, g, r)
    u = norm.steepest(g)
    assert [t.shape for t in u] == [t.shape for t in g]
    assert float(norms.inner(u, g)) == pytest.approx(float(norm.dual(g)), abs=tol(g))
    if not is_zero(g):
        assert float(norm(u)) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("name", NORM_NAMES)
@given(lists=param_lists(1), r=RATIOS)
def test_subgradient(name, lists, r):
    (x,) = lists
    norm = make_norm(name, x, r)
    u = norm.subgradient(x)
    assert [t.shape for t in u] == [t.shape for t in x]
    assert float(norm.dual(u)) <= 1.0 + 1e-9
    assert float(norms.inner(u, x)) == pytest.approx(float(norm(x)), abs=tol(x))
    if not is_zero(x):
        assert float(norm.dual(u)) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("name", NORM_NAMES)
@given(lists=param_lists(2), r=RATIOS)
def test_triangle_inequality(name, lists, r):
    x, y = lists
    norm = make_norm(name, x, r)
    s = [a + b for a, b in zip(x, y)]
    t = tol(x, y)
    assert float(norm(s)) <= float(norm(x)) + float(norm(y)) + t
    assert float(norm.dual(s)) <= float(norm.dual(x)) + float(norm.dual(y)) + t


@pytest.mark.parametrize("name", NORM_NAMES)
@given(lists=param_lists(1), r=RATIOS, c=st.floats(-5, 5, allow_nan=False))
def test_absolute_homogeneity(name, lists, r, c):
    (x,) = lists
    norm = make_norm(name, x, r)
    cx = [c * t for t in x]
    t = tol(x) * (1 + abs(c))
    assert float(norm(cx)) == pytest.approx(abs(c) * float(norm(x)), abs=t)
    assert float(norm.dual(cx)) == pytest.approx(abs(c) * float(norm.dual(x)), abs=t)


@pytest.mark.parametrize("name", NORM_NAMES)
@given(lists=param_lists(2), r=RATIOS)
def test_dual_norm_inequality(name, lists, r):
    x, g = lists
    norm = make_norm(name, x, r)
    assert float(norms.inner(x, g)) <= float(norm(x)) * float(norm.dual(g)) + tol(x, g) * (1 + scale(x, g))


@given(lists=param_lists(2), r=RATIOS)
def test_hybrid_is_a_weighted_max_of_block_norms(lists, r):
    x, g = lists
    norm = norms.hybrid(x, r)
    W, a = x
    spectral = float(torch.linalg.matrix_norm(W, ord=2))
    assert float(norm(x)) == pytest.approx(max(r * spectral, float(a.abs().max())), abs=tol(x))
    # Its steepest direction: polar factor of the matrix over r, sign of the vector.
    u = norm.steepest(g)
    torch.testing.assert_close(u[0], norms.polar_factor(g[0]) / r, rtol=0, atol=1e-12)
    assert torch.equal(u[1], torch.sign(g[1]))


# --- the exact polar factor -----------------------------------------------------------------


def svd_polar(A: np.ndarray, rank: int | None = None) -> np.ndarray:
    """``U_r V_rᵀ`` from numpy's float64 SVD (r = rank, default full)."""
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    r = len(s) if rank is None else rank
    return U[:, :r] @ Vt[:r]


@pytest.mark.parametrize("shape", [(5, 5), (8, 3), (3, 8), (1, 6), (6, 1)])
def test_polar_factor_matches_svd(shape):
    A = np.random.default_rng(sum(shape)).standard_normal(shape)
    P = norms.polar_factor(torch.from_numpy(A)).numpy()
    np.testing.assert_allclose(P, svd_polar(A), atol=1e-12)
    # Full-rank: a partial isometry with orthonormal rows or columns.
    k = min(shape)
    gram = P @ P.T if shape[0] == k else P.T @ P
    np.testing.assert_allclose(gram, np.eye(k), atol=1e-12)


@pytest.mark.parametrize("shape,rank", [((6, 5), 2), ((9, 3), 1), ((3, 9), 2), ((4, 4), 3)])
def test_polar_factor_rank_deficient_is_the_partial_isometry_on_the_range(shape, rank):
    rng = np.random.default_rng(rank + shape[0])
    A = rng.standard_normal((shape[0], rank)) @ rng.standard_normal((rank, shape[1]))
    P = norms.polar_factor(torch.from_numpy(A)).numpy()
    np.testing.assert_allclose(P, svd_polar(A, rank), atol=1e-10)
    # Still a steepest direction: spectral norm 1 and <P, A> = nuclear norm of A.
    assert np.linalg.norm(P, 2) == pytest.approx(1.0, abs=1e-10)
    assert np.sum(P * A) == pytest.approx(np.linalg.norm(A, "nuc"), rel=1e-12)


def test_polar_factor_edge_cases():
    v = torch.tensor([3.0, -4.0], dtype=F64)
    torch.testing.assert_close(norms.polar_factor(v), v / 5.0, rtol=1e-15, atol=1e-15)
    assert norms.polar_factor(v).shape == v.shape
    assert torch.equal(norms.polar_factor(torch.zeros(3, 2, dtype=F64)), torch.zeros(3, 2, dtype=F64))
    # Scale-invariant: the polar factor of c·A is that of A.
    A = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(norms.polar_factor(1e-150 * A), norms.polar_factor(A), rtol=0, atol=1e-12)


def test_spectral_treats_a_vector_as_a_row():
    v = torch.tensor([1.0, -2.0, 2.0], dtype=F64)
    norm = norms.Spectral()
    assert float(norm([v])) == pytest.approx(3.0, rel=1e-15)
    assert float(norm.dual([v])) == pytest.approx(3.0, rel=1e-15)
    torch.testing.assert_close(norm.steepest([v])[0], v / 3.0, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(norm.subgradient([v])[0], v / 3.0, rtol=1e-14, atol=1e-14)


def test_newton_schulz_polar_is_approximate():
    """Muon's quintic iteration returns U S' Vᵀ with S' near 1 (not exactly 1)."""
    A = torch.randn(6, 10, dtype=F64, generator=torch.Generator().manual_seed(2))
    exact = norms.polar_factor(A)
    for X in (A, A.T):
        approx = norms.Spectral("newton_schulz").steepest([X])[0]
        assert approx.shape == X.shape and approx.dtype == F64
        # Same singular vectors: its own polar factor is the exact one.
        want = exact if X is A else exact.T
        torch.testing.assert_close(norms.polar_factor(approx), want, rtol=0, atol=1e-8)
        s = torch.linalg.svdvals(approx)
        assert float(s.min()) > 0.5 and float(s.max()) < 1.3
    bf16 = newton_schulz(A, dtype=torch.bfloat16)
    assert bf16.dtype == F64  # computed in bfloat16, returned in the input's dtype
    assert float((bf16 - newton_schulz(A)).abs().max()) < 0.1
    with pytest.raises(ValueError, match="matrices"):
        newton_schulz(torch.zeros(2, dtype=F64))
    batch = torch.randn(3, 4, 5, dtype=F64)  # a batch of matrices: each on its own
    torch.testing.assert_close(newton_schulz(batch)[1], newton_schulz(batch[1]))


# --- bad input --------------------------------------------------------------------------------


def test_spectral_flattens_convolution_kernels_to_matrices():
    # One rule for the whole Muon family (Keller Jordan's): (out, in, kh, kw) -> out × (in·kh·kw).
    kernel = torch.randn(4, 3, 2, 2, dtype=F64)
    matrix = kernel.reshape(4, -1)
    norm = norms.Spectral()
    torch.testing.assert_close(norm([kernel]), norm([matrix]))
    torch.testing.assert_close(norm.dual([kernel]), norm.dual([matrix]))
    torch.testing.assert_close(norm.steepest([kernel])[0], norm.steepest([matrix])[0].reshape(kernel.shape))
    with pytest.raises(ValueError, match="polar"):
        norms.Spectral(polar="qr")


def test_empty_list_raises():
    for norm in (norms.L2(), norms.Linf(), norms.L1(), norms.Spectral()):
        with pytest.raises(ValueError, match="empty"):
            norm([])


def test_maxnorm_validation():
    L2, Linf = norms.L2(), norms.Linf()
    with pytest.raises(ValueError, match="partition"):
        norms.MaxNorm([(L2, [0], 1.0), (Linf, [0], 1.0)])  # index 0 twice
    with pytest.raises(ValueError, match="partition"):
        norms.MaxNorm([(L2, [0], 1.0), (Linf, [2], 1.0)])  # index 1 missing
    with pytest.raises(ValueError, match="positive"):
        norms.MaxNorm([(L2, [0], 0.0)])
    with pytest.raises(TypeError, match="not a Norm"):
        norms.MaxNorm([("l2", [0], 1.0)])
    with pytest.raises(ValueError, match="at least one block"):
        norms.MaxNorm([])
    two = norms.MaxNorm([(L2, [0], 1.0), (Linf, [1], 1.0)])
    three = [torch.ones(2, dtype=F64)] * 3
    for method in (two, two.dual, two.steepest, two.subgradient):
        with pytest.raises(ValueError, match="built for 2 tensors but got 3"):
            method(three)


def test_matrix_indices_and_by_name():
    params = [torch.zeros(3, 2), torch.zeros(3), torch.zeros(()), torch.zeros(2, 2)]
    assert norms.matrix_indices(params) == ([0, 3], [1, 2])
    assert isinstance(norms.by_name("msp"), norms.Spectral)
    hybrid = norms.by_name("hybrid", params)
    assert isinstance(hybrid, norms.MaxNorm) and hybrid.size == 4
    assert norms.hybrid(params, 2.0).name == "hybrid(r=2)"
    with pytest.raises(ValueError, match="needs the parameter list"):
        norms.by_name("hybrid")
    with pytest.raises(ValueError, match="Unknown norm"):
        norms.by_name("l3")


def test_l2_norm_of_tiny_float32_gradients():
    """Squares of float32 entries below ~1e-23 underflow; the norm and the normalized step
    must not (a plain loss deep in training has such gradients)."""
    g = [torch.tensor([3e-24, 4e-24], dtype=torch.float32)]
    assert float(norms.L2()(g)) == pytest.approx(5e-24, rel=1e-6)
    torch.testing.assert_close(norms.L2().steepest(g)[0], torch.tensor([0.6, 0.8]))
    assert float(norms.L2()([torch.zeros(3)])) == 0.0


# --- cvxpy expressions, Mahalanobis, the registry -------------------------------------------


def test_cvxpy_expressions_match_torch():
    """value_expr and dual_expr (max-margin problems, KKT certificates) against the norms'
    own values, on a matrix, a vector and a convolution kernel (its matrix view)."""
    import cvxpy as cp

    rng = np.random.default_rng(5)
    xs = [torch.from_numpy(rng.standard_normal(s)) for s in [(4, 3), (5,), (3, 2, 2)]]
    shapes = [tuple(x.shape) for x in xs]
    flat = cp.Constant(torch.cat([x.reshape(-1) for x in xs]).numpy())
    A = rng.standard_normal((29, 29))
    cases = [norms.L2(), norms.Linf(), norms.L1(), norms.Spectral(), norms.hybrid(xs), norms.hybrid(xs, 2.5),
             norms.Mahalanobis(A @ A.T + np.eye(29))]
    for norm in cases:
        value, dual = float(norm(xs)), float(norm.dual(xs))
        assert float(norm.value_expr(flat, shapes).value) == pytest.approx(value, rel=1e-9), norm
        assert float(norm.dual_expr(flat, shapes).value) == pytest.approx(dual, rel=1e-9), norm


def test_mahalanobis_against_numpy():
    rng = np.random.default_rng(6)
    B = rng.standard_normal((7, 7))
    M = B @ B.T + 0.5 * np.eye(7)
    norm = norms.Mahalanobis(M)
    xs = [torch.from_numpy(rng.standard_normal((2, 2))), torch.from_numpy(rng.standard_normal(3))]
    v = np.r_[xs[0].numpy().ravel(), xs[1].numpy()]
    assert float(norm(xs)) == pytest.approx(np.sqrt(v @ M @ v), rel=1e-12)
    assert float(norm.dual(xs)) == pytest.approx(np.sqrt(v @ np.linalg.solve(M, v)), rel=1e-12)
    u = norm.steepest(xs)
    assert float(norm(u)) == pytest.approx(1.0, rel=1e-12)
    assert float(norms.inner(u, xs)) == pytest.approx(float(norm.dual(xs)), rel=1e-12)
    s = norm.subgradient(xs)
    assert float(norm.dual(s)) == pytest.approx(1.0, rel=1e-12)
    assert float(norms.inner(s, xs)) == pytest.approx(float(norm(xs)), rel=1e-12)
    d = np.linspace(1, 2, 7)
    diagonal, matrix = norms.Mahalanobis(d), norms.Mahalanobis(np.diag(d))
    assert float(diagonal(xs)) == pytest.approx(float(matrix(xs)), rel=1e-14)
    with pytest.raises(ValueError, match="symmetric"):
        norms.Mahalanobis(np.triu(np.ones((3, 3))))
    with pytest.raises(ValueError, match="positive definite"):
        norms.Mahalanobis(np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="symmetric 2×2"):
        norm([torch.ones(2, dtype=F64)])


def test_registry_by_name_as_norm_and_labels():
    class Half(norms.L2):
        """A user's norm: half the ℓ2 norm (no dual, only what this test needs)."""

        name = "half_l2"
        label = r"$\tfrac12\ell_2$"

        def __call__(self, xs):
            return 0.5 * super().__call__(xs)

    assert {"l2", "linf", "l1", "spectral", "msp", "hybrid"} <= set(norms.names())
    l2 = norms.L2()
    assert norms.as_norm(l2) is l2 and isinstance(norms.as_norm("linf"), norms.Linf)
    assert isinstance(norms.as_norm("hybrid", [torch.zeros(2, 2)]), norms.MaxNorm)
    assert norms.label_of("l2") == norms.label_of(l2) == r"$\ell_2$"
    assert norms.label_of("hybrid").startswith("hybrid") and norms.label_of("unknown") == "unknown"
    norms.register("half_l2", Half)
    assert isinstance(norms.by_name("half_l2"), Half) and norms.label_of("half_l2") == Half.label
    norms.register("half_l2", lambda params: Half(), label="half")  # a name registered again is replaced
    assert isinstance(norms.as_norm("half_l2"), Half) and norms.label_of("half_l2") == "half"
    from implicit_bias import plots

    assert plots.NORM_LABELS["half_l2"] == "half" and plots.NORM_LABELS["linf"] == r"$\ell_\infty$"
    with pytest.raises(ValueError, match="norms.register"):
        norms.by_name("l3")
    with pytest.raises(TypeError, match="Norm or a registered norm name"):
        norms.as_norm(2.0)
    with pytest.raises(TypeError, match="neither a Norm subclass"):
        norms.register("bad", int)
    with pytest.raises(ValueError, match="non-empty string"):
        norms.register("", norms.L2)
    norms.register("not_a_norm", lambda params: "l2")
    with pytest.raises(TypeError, match="not a Norm"):
        norms.by_name("not_a_norm")
