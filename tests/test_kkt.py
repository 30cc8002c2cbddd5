"""Tests of the approximate-KKT certificate (implicit_bias.kkt)."""

from __future__ import annotations

import cvxpy as cp
import implicit_bias as ib
import numpy as np
import pytest
import torch
from helpers import one_thread
from implicit_bias import data, kkt, models, norms
from implicit_bias.kkt.reduce import reduce_program
from implicit_bias.margins import NotSeparatingError
from implicit_bias.train import Run, train

F64 = torch.float64
NORMS = ("l2", "linf", "l1")

# With the default seed the ℓ2, ℓ∞ and ℓ1 max-margin solutions of gaussian(n=30, d=6)
# are the same vertex of the feasible polyhedron (6 support vectors in 6 dimensions), so
# each is a KKT point of every norm. With seed 3 they differ.
SEED_DISTINCT = 3


def linear_model(w) -> models.Linear:
    model = models.Linear(len(w))
    with torch.no_grad():
        model.w.copy_(torch.as_tensor(np.asarray(w), dtype=F64))
    return model


@pytest.fixture(scope="module")
def linear_data():
    return ib.data.gaussian(n=30, d=6, seed=SEED_DISTINCT)


@pytest.fixture(scope="module")
def solutions(linear_data):
    X, y = linear_data
    return {name: ib.max_margin(X, y, name) for name in NORMS}


def self_labelled_net(width, n, seed):
    """A squared-ReLU net on 3-d inputs that separates its n points by construction (labels
    are the signs of its outputs, both present, none zero)."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=gen, dtype=F64)
    model = models.TwoLayer(3, width, activation="relu2", seed=seed)
    with torch.no_grad():
        y = torch.sign(model(X))
    assert (y != 0).all() and (y > 0).any() and (y < 0).any()
    return model, X, y


@pytest.fixture(scope="module")
def tiny_net():
    """Width 4, 8 points."""
    return self_labelled_net(4, 8, seed=1)


@pytest.fixture(scope="module")
def trained_digits():
    X, y = ib.data.digits_even_odd(n=200)
    run = Run("NormalizedGD", 2.0, 3000, schedule=0.5,
              model={"kind": "two_layer", "width": 16, "activation": "relu2"})
    with one_thread():
        # The loop pins the instance the ℓ∞ interior-point test was written on: the batched
        # engine's model differs by rounding, and on it the IPM ends 2.2e-5 above Clarabel
        # (see the kkt module docstring), beyond that test's 1e-5.
        history = train(run, (X, y), norms=("l2",), progress=False, engine="loop")[0]
    return history.model, X, y


# --- exact linear solutions ---------------------------------------------------------------


@pytest.mark.parametrize("name", NORMS)
def test_exact_solution_is_kkt_in_its_own_norm_only(linear_data, solutions, name):
    X, y = linear_data
    model = linear_model(solutions[name].direction)
    own = kkt.kkt_certificate(model, X, y, name, active_tol=1e-6)
    assert own.epsilon <= 1e-6, own
    assert abs(own.delta_relative) <= 1e-6
    assert set(own.support) <= set(solutions[name].support)
    for other in NORMS:
        if other != name:
            cert = kkt.kkt_certificate(model, X, y, other, active_tol=1e-6)
            assert cert.epsilon > 1e-2, (name, other, cert)


def test_linear_solutions_differ_with_this_seed(solutions):
    d = {n: s.direction / np.linalg.norm(s.direction) for n, s in solutions.items()}
    assert np.abs(d["l2"] - d["linf"]).max() > 1e-2 and np.abs(d["l2"] - d["l1"]).max() > 1e-2


def test_l2_multipliers_satisfy_stationarity(linear_data, solutions):
    X, y = linear_data
    sol = solutions["l2"]
    w = sol.direction / sol.margin  # the min-norm solution, min_i q_i = 1
    cert = kkt.kkt_certificate(linear_model(sol.direction), X, y, "l2", active_tol=1e-6)
    lam = cert.multipliers
    Z = (y[:, None] * X).numpy()
    # Stationarity of min ½‖w‖²: w = Σ λ_i y_i x_i, and Euler's identity Σλ = ‖w‖²/L.
    np.testing.assert_allclose(Z.T @ lam, w, atol=1e-7 * np.linalg.norm(w))
    assert lam.sum() == pytest.approx(w @ w, rel=1e-7)
    assert lam.sum() == pytest.approx(cert.norm_value**2 / cert.degree, rel=1e-7)


@pytest.mark.parametrize("name", NORMS)
def test_multipliers_match_the_maxmargin_dual(linear_data, solutions, name):
    """max_margin reports the multipliers of min ½‖w‖² s.t. y_i x_i·w ≥ 1 in every norm,
    which is the problem the certificate's λ belong to (at the rescaled θ = w*)."""
    X, y = linear_data
    sol = solutions[name]
    cert = kkt.kkt_certificate(linear_model(sol.direction), X, y, name, active_tol=1e-6)
    alpha = np.asarray(sol.dual)
    np.testing.assert_allclose(cert.multipliers, alpha, atol=1e-6 * alpha.max())


@pytest.mark.parametrize("name", NORMS)
def test_euler_identity_at_exact_solutions(linear_data, solutions, name):
    X, y = linear_data
    cert = kkt.kkt_certificate(linear_model(solutions[name].direction), X, y, name, active_tol=1e-6)
    assert cert.multipliers.sum() == pytest.approx(cert.norm_value**2 / cert.degree, rel=1e-5)


def test_large_active_tol_trades_epsilon_for_delta(linear_data, solutions):
    """With more candidates than dimensions the wrong norm's solution can look stationary,
    but only by putting multipliers on non-active points: δ catches it."""
    X, y = linear_data
    model = linear_model(solutions["linf"].direction)
    strict = kkt.kkt_certificate(model, X, y, "l2", active_tol=1e-6)
    loose = kkt.kkt_certificate(model, X, y, "l2", active_tol=0.5)
    assert len(loose.active) > len(strict.active)
    assert loose.epsilon <= strict.epsilon + 1e-9  # more multipliers: never a worse ε
    assert loose.delta_relative > 1e-2  # ...paid for in complementary slackness
    assert loose.delta_relative <= 0.5 * loose.multipliers.sum() * loose.degree / loose.norm_value**2 + 1e-9


# --- invariances and errors ---------------------------------------------------------------


@pytest.mark.parametrize("name", [*NORMS, "spectral", "hybrid"])
def test_certificate_is_invariant_to_rescaling(linear_data, solutions, name):
    X, y = linear_data
    w = solutions["l2"].direction + 0.05 * np.random.default_rng(0).standard_normal(6)
    model = linear_model(w)
    assert (model.margins(X, y) > 0).all()
    base = kkt.kkt_certificate(model, X, y, name)
    scaled = kkt.kkt_certificate(linear_model(3.7 * w), X, y, name)
    assert 1e-4 < base.epsilon < 1
    assert scaled.epsilon == pytest.approx(base.epsilon, abs=1e-8)
    assert scaled.delta_relative == pytest.approx(base.delta_relative, abs=1e-8)
    np.testing.assert_array_equal(scaled.active, base.active)


def test_rescaling_invariance_on_a_network(tiny_net):
    model, X, y = tiny_net
    base = kkt.kkt_certificate(model, X, y, "l2")
    big = models.TwoLayer(3, 4, activation="relu2", seed=1)
    with torch.no_grad():
        for p in big.parameters():
            p.mul_(3.7)
    scaled = kkt.kkt_certificate(big, X, y, "l2")
    assert scaled.epsilon == pytest.approx(base.epsilon, abs=1e-8)


def test_not_separating_raises(linear_data, solutions):
    X, y = linear_data
    model = linear_model(-solutions["l2"].direction)
    with pytest.raises(NotSeparatingError, match="not separating the data"):  # a ValueError
        kkt.kkt_certificate(model, X, y, "l2")
    with pytest.raises(ValueError, match="not separating the data"):
        kkt.kkt_certificate(linear_model(np.zeros(6)), X, y, "linf")


def test_bad_arguments(linear_data, solutions):
    X, y = linear_data
    model = linear_model(solutions["l2"].direction)
    with pytest.raises(ValueError, match="method"):
        kkt.kkt_certificate(model, X, y, "l2", method="simplex")
    with pytest.raises(ValueError, match="nnls"):
        kkt.kkt_certificate(model, X, y, "linf", method="nnls")
    with pytest.raises(ValueError, match="max_points"):
        kkt.kkt_certificate(model, X, y, "l2", max_points=0)


# --- the result object --------------------------------------------------------------------


def test_result_fields_are_coherent(linear_data, solutions):
    X, y = linear_data
    cert = kkt.kkt_certificate(linear_model(solutions["l1"].direction), X, y, "l2")
    assert cert.epsilon == pytest.approx(cert.stationarity + cert.subgradient_gap)
    assert cert.stationarity >= 0 and cert.subgradient_gap >= 0
    assert cert.multipliers.shape == (len(y),)
    assert (cert.multipliers >= 0).all()
    outside = np.setdiff1d(np.arange(len(y)), cert.active)
    assert (cert.multipliers[outside] == 0).all()
    assert set(cert.support) <= set(cert.active)
    q = (y * (X @ torch.as_tensor(solutions["l1"].direction))).numpy()
    q = q / q.min()
    assert cert.delta == pytest.approx(float(cert.multipliers @ (q - 1)), rel=1e-9, abs=1e-12)
    assert (q[cert.active] <= 1.5 + 1e-12).all() and (np.delete(q, cert.active) > 1.5).all()
    text = repr(cert)
    assert text.startswith("KKTCertificate(norm='l2'") and "epsilon=" in text


def test_max_points_keeps_the_smallest_margins(linear_data, solutions):
    X, y = linear_data
    model = linear_model(solutions["l2"].direction)
    full = kkt.kkt_certificate(model, X, y, "l2", active_tol=10.0)
    capped = kkt.kkt_certificate(model, X, y, "l2", active_tol=10.0, max_points=7)
    q = model.margins(X, y).detach().numpy()
    assert len(capped.active) == 7
    np.testing.assert_array_equal(np.sort(capped.active), np.sort(np.argsort(q)[:7]))
    assert capped.epsilon >= full.epsilon - 1e-9  # fewer multipliers: never a better ε


def test_l2_routes_agree(trained_digits):
    model, X, y = trained_digits
    auto = kkt.kkt_certificate(model, X, y, "l2", active_tol=1.0)
    full = kkt.kkt_certificate(model, X, y, "l2", active_tol=1.0, method="cvxpy")
    fixed_v = kkt.kkt_certificate(model, X, y, "l2", active_tol=1.0, method="nnls")
    assert auto.epsilon == pytest.approx(full.epsilon, abs=1e-6)
    assert fixed_v.subgradient_gap <= 1e-12
    assert fixed_v.epsilon >= auto.epsilon - 1e-9  # NNLS fixes v: an upper bound


def test_linf_interior_point_matches_clarabel(trained_digits):
    model, X, y = trained_digits
    ipm = kkt.kkt_certificate(model, X, y, "linf", active_tol=2.0, method="ipm")
    ref = kkt.kkt_certificate(model, X, y, "linf", active_tol=2.0, method="cvxpy")
    assert len(ipm.active) >= 10
    assert ipm.epsilon == pytest.approx(ref.epsilon, abs=1e-5)
    assert ipm.epsilon >= ref.epsilon - 1e-6  # both are feasible points of one program


# --- spectral and hybrid norms ---------------------------------------------------------


def test_dual_norm_expressions_match_torch(tiny_net):
    model, _, _ = tiny_net
    params = [p.detach() for p in model.parameters()]
    shapes = [tuple(p.shape) for p in params]
    gen = torch.Generator().manual_seed(0)
    g = [torch.randn(p.shape, generator=gen, dtype=F64) for p in params]
    flat = torch.cat([t.reshape(-1) for t in g]).numpy()
    cases = [norms.L2(), norms.Linf(), norms.L1(), norms.Spectral(), norms.hybrid(params),
             norms.hybrid(params, r=2.5)]
    for norm in cases:
        expr = kkt.dual_norm_expr(norm, cp.Constant(flat), shapes)
        assert float(expr.value) == pytest.approx(float(norm.dual(g)), rel=1e-9), norm


@pytest.mark.parametrize("name", ["spectral", "hybrid"])
def test_spectral_and_hybrid_on_a_tiny_net(tiny_net, name):
    model, X, y = tiny_net
    cert = kkt.kkt_certificate(model, X, y, name, active_tol=1.0)
    assert np.isfinite(cert.epsilon) and 0 <= cert.epsilon <= 1
    assert np.isfinite(cert.delta_relative) and len(cert.active) >= 1
    assert cert.norm == name


@pytest.fixture(scope="module")
def wide_net():
    """Width 12 on 3-d inputs with few near-active points, so the column spaces of the
    margin gradients and θ (dimension ≤ k + 3) are smaller than the 12 hidden units."""
    return self_labelled_net(12, 10, seed=0)


@pytest.mark.parametrize("name", ["spectral", "hybrid"])
def test_spectral_reduction_is_exact(wide_net, name):
    """The projected (reduced) program has the same optimum as the full one."""
    model, X, y = wide_net
    cert = kkt.kkt_certificate(model, X, y, name, active_tol=1.0, solver="CLARABEL")
    # The full program, written out here without the reduction.
    params = [p.detach() for p in model.parameters()]
    q = model.margins(X, y).detach()
    params = [p * float(q.min()) ** (-1 / model.degree) for p in params]
    norm = norms.by_name(name, params)
    value = float(norm(params))
    J = kkt.margin_jacobian(model, params, X[cert.active], y[cert.active])
    A = (J.T * value / model.degree).numpy()
    theta_hat = torch.cat([p.reshape(-1) for p in params]).numpy() / value
    shapes = [tuple(p.shape) for p in params]
    small_A, _, small_shapes, _ = reduce_program(norm, A, theta_hat, shapes)
    assert small_A.shape[0] < A.shape[0], "the reduction should apply here"
    mu, v = cp.Variable(A.shape[1], nonneg=True), cp.Variable(A.shape[0])
    problem = cp.Problem(cp.Minimize(kkt.dual_norm_expr(norm, A @ mu - v, shapes) + 1 - theta_hat @ v),
                         [kkt.dual_norm_expr(norm, v, shapes) <= 1])
    problem.solve(solver="CLARABEL")
    assert 1e-3 < problem.value < 1
    assert cert.epsilon == pytest.approx(problem.value, abs=1e-6)


def test_spectral_and_hybrid_reduce_to_l2_and_linf_on_a_vector(linear_data, solutions):
    """A vector is a 1×n matrix, so its spectral norm is ℓ2; the hybrid norm of a model
    with no matrix is ℓ∞."""
    X, y = linear_data
    model = linear_model(solutions["l1"].direction)
    pairs = [("spectral", "l2"), ("hybrid", "linf")]
    for a, b in pairs:
        ca, cb = kkt.kkt_certificate(model, X, y, a), kkt.kkt_certificate(model, X, y, b)
        assert ca.epsilon == pytest.approx(cb.epsilon, abs=1e-6), (a, b)


# --- a trained network --------------------------------------------------------------------


def test_trained_network_beats_a_random_direction(trained_digits):
    model, X, y = trained_digits
    assert (model.margins(X, y) > 0).all()
    cert = kkt.kkt_certificate(model, X, y, "l2")
    assert np.isfinite(cert.epsilon) and 0 <= cert.epsilon < 0.2
    # A random direction of the same model: the trained θ plus Gaussian noise of a fifth
    # of its size (much more noise and the model no longer separates the data).
    other = models.TwoLayer(64, 16, activation="relu2", seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        size = torch.cat([p.reshape(-1) for p in model.parameters()]).norm()
        noise = [torch.randn(p.shape, generator=gen, dtype=F64) for p in model.parameters()]
        noise_size = torch.cat([n.reshape(-1) for n in noise]).norm()
        for p, src, n in zip(other.parameters(), model.parameters(), noise):
            p.copy_(src + 0.2 * size / noise_size * n)
    assert (other.margins(X, y) > 0).all()
    random_cert = kkt.kkt_certificate(other, X, y, "l2")
    assert cert.epsilon < 0.5 * random_cert.epsilon


@pytest.mark.parametrize("spec", [
    {"kind": "diagonal", "depth": 3},
    {"kind": "two_layer", "width": 3, "activation": "relu2"},
    {"kind": "mlp", "hidden": [3, 2], "activation": "relu2"},
])
def test_margin_jacobian_matches_autograd_for_every_model_kind(spec):
    """The per-sample margin gradients (torch.func) against plain autograd, every parameter."""
    X, y = data.gaussian(n=6, d=4, seed=1)
    model = models.build(spec, 4, seed=2)
    params = [p.detach() for p in model.parameters()]
    J = kkt.margin_jacobian(model, params, X, y)
    for i in range(len(X)):
        model.zero_grad()
        (y[i] * model(X[i:i + 1])).sum().backward()
        expected = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        torch.testing.assert_close(J[i], expected, rtol=1e-12, atol=1e-12)


# --- norm objects and a user's own norm ----------------------------------------------------


class GroupL21(norms.Norm):
    """A user's norm: ℓ2,1 over the neurons of a two-layer net (``W`` width × d, ``a``
    width), ``Σ_j ‖(w_j, a_j)‖₂``; dual ``max_j ‖(g_j, b_j)‖₂``. Written here only against
    the Norm interface, as a reader would."""

    name = "group_l21"
    label = r"$\ell_{2,1}$"

    @staticmethod
    def rows(xs):
        W, a = xs
        return torch.cat([W, a[:, None]], dim=1)  # one row per neuron

    @staticmethod
    def split(rows):
        return [rows[:, :-1], rows[:, -1]]

    def __call__(self, xs):
        return self.rows(xs).norm(dim=1).sum()

    def dual(self, gs):
        return self.rows(gs).norm(dim=1).max()

    def steepest(self, gs):
        G = self.rows(gs)
        sizes = G.norm(dim=1)
        j = sizes.argmax()
        U = torch.zeros_like(G)
        if sizes[j] > 0:
            U[j] = G[j] / sizes[j]
        return self.split(U)

    def subgradient(self, xs):
        G = self.rows(xs)
        sizes = G.norm(dim=1, keepdim=True)
        return self.split(torch.where(sizes > 0, G / sizes.clamp_min(1e-300), torch.zeros_like(G)))

    @staticmethod
    def row_norms(expr, shapes):
        (m, d), _ = shapes
        W = cp.reshape(expr[: m * d], (m, d), order="C")
        a = cp.reshape(expr[m * d:], (m, 1), order="C")
        return cp.norm(cp.hstack([W, a]), 2, axis=1)

    def value_expr(self, expr, shapes):
        return cp.sum(self.row_norms(expr, shapes))

    def dual_expr(self, expr, shapes):
        return cp.max(self.row_norms(expr, shapes))


def test_norm_objects_give_the_certificates_of_their_names(linear_data, solutions):
    X, y = linear_data
    model = linear_model(solutions["l1"].direction)
    for name, norm in [("l2", norms.L2()), ("linf", norms.Linf()), ("l1", norms.L1()),
                       ("spectral", norms.Spectral())]:
        by_name = kkt.kkt_certificate(model, X, y, name)
        by_object = kkt.kkt_certificate(model, X, y, norm)
        assert by_object.norm == name
        assert by_object.epsilon == by_name.epsilon
        np.testing.assert_array_equal(by_object.multipliers, by_name.multipliers)


def test_user_norm_dual_expression_and_methods(tiny_net):
    model, _, _ = tiny_net
    params = [p.detach() for p in model.parameters()]
    shapes = [tuple(p.shape) for p in params]
    norm = GroupL21()
    gen = torch.Generator().manual_seed(0)
    g = [torch.randn(p.shape, generator=gen, dtype=F64) for p in params]
    flat = torch.cat([t.reshape(-1) for t in g]).numpy()
    value, dual = float(norm(g)), float(norm.dual(g))
    assert float(norm.dual_expr(cp.Constant(flat), shapes).value) == pytest.approx(dual, rel=1e-12)
    assert float(norm.value_expr(cp.Constant(flat), shapes).value) == pytest.approx(value, rel=1e-12)
    u = norm.steepest(g)
    assert float(norm(u)) == pytest.approx(1.0) and float(norms.inner(u, g)) == pytest.approx(dual)
    s = norm.subgradient(g)
    assert float(norm.dual(s)) <= 1 + 1e-12 and float(norms.inner(s, g)) == pytest.approx(value)


def test_user_norm_certificate_on_a_two_layer_net(tiny_net):
    """A user's norm gets a certificate through its dual_expr (the generic cvxpy route),
    by object or, once registered, by name; like every certificate it is scale-free."""
    model, X, y = tiny_net
    cert = kkt.kkt_certificate(model, X, y, GroupL21(), active_tol=1.0)
    assert cert.norm == "group_l21" and cert.status == "optimal"
    assert 0 < cert.epsilon < 1 and np.isfinite(cert.delta_relative)
    assert cert.multipliers.sum() > 0
    big = models.TwoLayer(3, 4, activation="relu2", seed=1)
    with torch.no_grad():
        for p in big.parameters():
            p.mul_(3.7)
    scaled = kkt.kkt_certificate(big, X, y, GroupL21(), active_tol=1.0)
    assert scaled.epsilon == pytest.approx(cert.epsilon, abs=1e-7)
    norms.register("group_l21", GroupL21)
    by_name = kkt.kkt_certificate(model, X, y, "group_l21", active_tol=1.0)
    assert by_name.epsilon == cert.epsilon


def test_user_norm_with_one_neuron_is_l2():
    """With one neuron the ℓ2,1 norm is the ℓ2 norm of all parameters, so the user's
    certificate must agree with the built-in ℓ2 one (an independent route: QR and NNLS)."""
    gen = torch.Generator().manual_seed(4)
    X = torch.randn(12, 3, generator=gen, dtype=F64)
    model = models.TwoLayer(3, 1, activation="linear", seed=4)
    with torch.no_grad():
        y = torch.sign(model(X))
    assert (y > 0).any() and (y < 0).any()
    group = kkt.kkt_certificate(model, X, y, GroupL21(), active_tol=1.0)
    l2 = kkt.kkt_certificate(model, X, y, "l2", active_tol=1.0)
    assert 1e-3 < l2.epsilon < 1
    assert group.epsilon == pytest.approx(l2.epsilon, abs=1e-6)
    assert group.norm_value == pytest.approx(l2.norm_value, rel=1e-12)


def test_a_norm_without_a_dual_expression_says_what_to_add(linear_data, solutions):
    class NoCvxpy(norms.L2):
        lp = None  # not the ℓ2 route: the generic one, which needs dual_expr

        def dual_expr(self, expr, shapes):
            return norms.Norm.dual_expr(self, expr, shapes)

    X, y = linear_data
    with pytest.raises(TypeError, match="dual_expr"):
        kkt.kkt_certificate(linear_model(solutions["l2"].direction), X, y, NoCvxpy())
    with pytest.raises(TypeError, match="Norm or a registered norm name"):
        kkt.kkt_certificate(linear_model(solutions["l2"].direction), X, y, 2)
