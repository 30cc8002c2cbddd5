"""The nuclear norm: value, dual (spectral), steepest direction (top singular pair),
subgradient, its stacked forms, cvxpy expressions, its exact max-margin solution on a
multiclass problem and the certificate of that solution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from implicit_bias import data, max_margin, models, norms
from implicit_bias.kkt import kkt_certificate

NUC = norms.Nuclear()


def _mats(seed=0):
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    return [torch.randn(3, 4, generator=g, dtype=f64), torch.randn(5, generator=g, dtype=f64),
            torch.randn(2, 2, 3, generator=g, dtype=f64)]


def test_registered_and_value():
    assert isinstance(norms.by_name("nuclear"), norms.Nuclear)
    xs = _mats()
    want = sum(torch.linalg.svdvals(norms.as_matrix(x)).sum() for x in xs)
    assert torch.allclose(NUC(xs), want)
    v = torch.randn(7, dtype=torch.float64)
    assert torch.allclose(NUC([v]), v.norm())  # a vector is a 1×n matrix: ℓ2


def test_dual_is_spectral():
    gs = _mats(1)
    assert torch.allclose(NUC.dual(gs), norms.Spectral()(gs))
    assert torch.allclose(norms.Spectral().dual(gs), NUC(gs))


def test_steepest_is_top_singular_pair():
    gs = _mats(2)
    u = NUC.steepest(gs)
    assert torch.allclose(NUC(u), torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(norms.inner(u, gs), NUC.dual(gs))
    nonzero = [i for i, t in enumerate(u) if t.abs().max() > 0]
    assert len(nonzero) == 1  # rank one, on the tensor with the largest σ₁
    assert torch.linalg.matrix_rank(norms.as_matrix(u[nonzero[0]])) == 1


def test_subgradient():
    xs = _mats(3)
    s = NUC.subgradient(xs)
    assert NUC.dual(s) <= 1 + 1e-12
    assert torch.allclose(norms.inner(s, xs), NUC(xs))


def test_stacked_equals_per_run():
    runs = [_mats(k) for k in range(3)]
    stacked = [torch.stack(parts) for parts in zip(*runs)]
    steep = NUC.steepest_stacked(stacked)
    duals = NUC.dual_stacked(stacked)
    for k, xs in enumerate(runs):
        assert torch.allclose(duals[k], NUC.dual(xs))
        for a, b in zip(steep, NUC.steepest(xs)):
            assert torch.allclose(a[k], b)


def test_cvxpy_expressions():
    import cvxpy as cp

    xs = _mats(4)
    shapes = [tuple(x.shape) for x in xs]
    flat = torch.cat([x.reshape(-1) for x in xs]).numpy()
    c = cp.Constant(flat)
    assert np.isclose(NUC.value_expr(c, shapes).value, float(NUC(xs)))
    assert np.isclose(NUC.dual_expr(c, shapes).value, float(NUC.dual(xs)))


@pytest.fixture(scope="module")
def multiclass():
    rng = np.random.default_rng(16)
    labels = np.arange(12) % 4
    X = rng.normal(size=(4, 4))[labels] + 0.5 * rng.normal(size=(12, 4))
    return data.multiclass_pairs(X, labels, 4)


def test_max_margin_and_certificate(multiclass):
    Z, y = multiclass
    sol = max_margin(Z, y, "nuclear")  # verified inside: constraints, duality gap, certificate
    W = torch.as_tensor(sol.direction)
    assert np.isclose(float(NUC([W])), 1.0, atol=1e-8)
    assert np.isclose(float((Z.reshape(len(Z), -1) @ W.reshape(-1)).min()), sol.margin, rtol=1e-6)
    spec = max_margin(Z, y, "spectral")
    # each solution has the larger margin in its own norm
    Ws = torch.as_tensor(spec.direction)
    own = float((Z.reshape(len(Z), -1) @ Ws.reshape(-1)).min() / NUC([Ws]))
    assert own < sol.margin * (1 - 1e-3)
    cos = float((W.reshape(-1) @ Ws.reshape(-1)) / (W.norm() * Ws.norm()))
    assert cos < 0.9  # the two geometries differ on this problem
    model = models.Linear((4, 4))
    with torch.no_grad():
        model.w.copy_(W)
    cert = kkt_certificate(model, Z, y, "nuclear", active_tol=1e-6)
    assert cert.epsilon < 1e-5
    with torch.no_grad():
        model.w.copy_(Ws)
    assert kkt_certificate(model, Z, y, "nuclear", active_tol=1e-6).epsilon > 1e-2  # the spectral one is not


def test_nuclear_steepest_descent_trains():
    from implicit_bias.optim import SteepestDescent

    w = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
    opt = SteepestDescent([w], "nuclear", lr=0.5)
    target = torch.diag(torch.tensor([3.0, 1.0, 0.5], dtype=torch.float64))
    for _ in range(50):
        opt.zero_grad()
        ((w - target) ** 2).sum().backward()
        opt.step()
    assert float(((w.detach() - target) ** 2).sum()) < float((target**2).sum())
