"""Homogeneous models: the declared degree L checked numerically (f(cθ) = c^L f(θ)),
shapes, seeded determinism, ``build`` and bad input."""

from __future__ import annotations

import pytest
import torch
from helpers import F64, flat
from implicit_bias import models

ACTIVATIONS = ["relu", "relu2", "quadratic", "linear", ("relu_power", 3)]
ACT_DEGREE = {"relu": 1, "relu2": 2, "quadratic": 2, "linear": 1, ("relu_power", 3): 3}
D = 4


def model_cases():
    """(id, constructor, expected degree) for every model and activation."""
    cases = [("linear", lambda: models.Linear(D, seed=1), 1)]
    cases += [(f"diagonal-{k}", (lambda k=k: models.DiagonalLinear(D, depth=k, seed=1)), k)
              for k in (1, 2, 3, 4)]
    for act in ACTIVATIONS:
        q = ACT_DEGREE[act]
        cases.append((f"two_layer-{act}", (lambda act=act: models.TwoLayer(D, 5, activation=act, seed=1)),
                      1 + q))
        # Two hidden layers: L_1 = q, L_2 = q (q + 1), output L_2 + 1.
        cases.append((f"mlp-{act}", (lambda act=act: models.MLP([D, 5, 3, 1], activation=act, seed=1)),
                      q * (q + 1) + 1))
    cases.append(("mlp-one-hidden", lambda: models.MLP([D, 6, 1], activation="relu2", seed=1), 3))
    cases.append(("mlp-no-hidden", lambda: models.MLP([D, 1], seed=1), 1))
    return cases


CASES = model_cases()


@pytest.fixture(scope="module")
def X():
    return torch.randn(7, D, dtype=F64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name,make,degree", CASES, ids=[c[0] for c in CASES])
def test_homogeneity_degree(name, make, degree, X):
    model = make()
    assert model.degree == degree
    f = model(X).detach()
    assert f.shape == (7,) and f.dtype == F64
    assert float(f.abs().max()) > 0
    for c in (0.5, 2.0, 3.7):
        scaled = make()
        with torch.no_grad():
            for p in scaled.parameters():
                p.mul_(c)
        torch.testing.assert_close(scaled(X).detach(), c**degree * f, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("name,make,degree", CASES, ids=[c[0] for c in CASES])
def test_seeded_determinism(name, make, degree, X):
    a, b = make(), make()
    assert torch.equal(flat(a), flat(b))
    assert torch.equal(a(X), b(X))
    assert all(p.dtype == F64 and p.requires_grad for p in a.parameters())


def test_different_seeds_differ():
    assert not torch.equal(flat(models.TwoLayer(D, 5, seed=0)), flat(models.TwoLayer(D, 5, seed=1)))
    assert not torch.equal(flat(models.Linear(D, seed=0)), flat(models.Linear(D, seed=1)))


def test_shapes_and_forward_formulas(X):
    two = models.TwoLayer(D, 5, activation="relu2", seed=2)
    assert two.W.shape == (5, D) and two.a.shape == (5,)
    expected = (torch.clamp(X @ two.W.T, min=0) ** 2) @ two.a
    torch.testing.assert_close(two(X), expected, rtol=1e-14, atol=0)
    diag = models.DiagonalLinear(D, depth=3, seed=2)
    w = diag.layers[0] * diag.layers[1] * diag.layers[2]
    torch.testing.assert_close(diag(X), X @ w, rtol=1e-14, atol=0)
    mlp = models.MLP([D, 5, 3, 1], activation="relu", seed=2)
    assert [tuple(W.shape) for W in mlp.weights] == [(5, D), (3, 5), (1, 3)]
    h = torch.relu(torch.relu(X @ mlp.weights[0].T) @ mlp.weights[1].T)
    torch.testing.assert_close(mlp(X), (h @ mlp.weights[2].T).squeeze(-1), rtol=1e-14, atol=0)
    y = torch.sign(X[:, 0])
    torch.testing.assert_close(two.margins(X, y), y * two(X))


def test_init_scale_scales_every_parameter():
    a = models.TwoLayer(D, 5, seed=3)
    b = models.TwoLayer(D, 5, seed=3, init_scale=0.1)
    torch.testing.assert_close(flat(b), 0.1 * flat(a), rtol=1e-15, atol=0)


@pytest.mark.parametrize("spec,cls,degree", [
    ({"kind": "linear"}, models.Linear, 1),
    ({"kind": "diagonal", "depth": 3}, models.DiagonalLinear, 3),
    ({"kind": "two_layer", "width": 4, "activation": "relu"}, models.TwoLayer, 2),
    ({"kind": "two_layer", "width": 4}, models.TwoLayer, 3),  # default: squared ReLU
    ({"kind": "mlp", "hidden": [4, 3], "activation": "linear"}, models.MLP, 3),
    ({"kind": "mlp"}, models.MLP, 1),
])
def test_build(spec, cls, degree, X):
    model = models.build(spec, D, seed=5)
    assert type(model) is cls and model.degree == degree
    assert model(X).shape == (7,)
    assert torch.equal(flat(model), flat(models.build(spec, D, seed=5)))
    assert "kind" in spec  # build must not consume the caller's dict


def test_activations():
    z = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], dtype=F64)
    torch.testing.assert_close(models.make_activation("relu")(z), torch.relu(z))
    torch.testing.assert_close(models.make_activation("relu2")(z), torch.relu(z) ** 2)
    torch.testing.assert_close(models.make_activation("squared_relu")(z), torch.relu(z) ** 2)
    torch.testing.assert_close(models.make_activation(("relu_power", 3))(z), torch.relu(z) ** 3)
    torch.testing.assert_close(models.make_activation("quadratic")(z), z * z)
    torch.testing.assert_close(models.make_activation("linear")(z), z)
    act = models.ReLUPower(1.5)
    assert models.make_activation(act) is act and act.smooth and act.degree == 1.5
    assert not models.make_activation("relu").smooth
    for spec, q in [("relu", 1), ("relu2", 2), ("quadratic", 2), ("linear", 1), (("relu_power", 3), 3)]:
        act = models.make_activation(spec)
        torch.testing.assert_close(act(2.5 * z), 2.5**q * act(z))


@pytest.mark.parametrize("act", ["tanh", torch.nn.Tanh(), "gelu", ("relu_power",), ("tanh", 2)])
def test_non_homogeneous_activation_raises(act):
    with pytest.raises(ValueError, match="not a positively homogeneous activation"):
        models.TwoLayer(D, 5, activation=act)
    with pytest.raises(ValueError, match="not a positively homogeneous activation"):
        models.MLP([D, 3, 1], activation=act)


def test_bad_construction():
    for widths in ([D, 5, 2], [D], [], [D, 5, 3]):
        with pytest.raises(ValueError, match="ending in 1"):
            models.MLP(widths)
    with pytest.raises(ValueError, match="depth must be"):
        models.DiagonalLinear(D, depth=0)
    with pytest.raises(ValueError, match="q ≥ 1"):
        models.ReLUPower(0.5)
    with pytest.raises(ValueError, match="Unknown model kind"):
        models.build({"kind": "transformer"}, D)
    with pytest.raises(ValueError, match="Unknown model kind"):
        models.build({}, D)


def test_linear_on_matrix_inputs():
    """``Linear((a, b))``: an a×b weight matrix and ⟨W, x⟩ on a×b inputs."""
    model = models.Linear((3, 4), seed=0)
    assert model.w.shape == (3, 4) and model.degree == 1
    Xm = torch.randn(5, 3, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model(Xm), (Xm * model.w).sum(dim=(1, 2)), rtol=1e-14, atol=0)
    assert models.build({"kind": "linear"}, (3, 4)).w.shape == (3, 4)


@pytest.mark.parametrize("spec", ["relu", "relu2", ("relu_power", 3), "quadratic", "linear"])
def test_hand_written_slopes_equal_the_autograd_default(spec):
    act = models.make_activation(spec)
    z = torch.linspace(-3, 3, 61, dtype=torch.float64)  # includes the kink at 0
    value, slope = act.value_and_slope(z)
    default_value, default_slope = models.Activation.value_and_slope(act, z)
    torch.testing.assert_close(value, default_value, rtol=1e-14, atol=0)
    torch.testing.assert_close(slope, default_slope, rtol=1e-14, atol=0)
