"""``check_homogeneous``: the library's models and a bias-free user ReLU net pass with their
declared degree; every silent-wrong case of a user's model (an ``(n, 1)`` output, a wrong
degree, biases with tanh, no degree, non-finite outputs) raises an error naming the fix;
and a passing check is cached per model."""

from __future__ import annotations

import pytest
import torch
from helpers import F64
from implicit_bias import homogeneity, models
from implicit_bias.homogeneity import check_homogeneous
from torch import nn

D = 4

LIBRARY = {
    "linear": lambda: models.Linear(D, seed=1),
    "linear-matrix": lambda: models.Linear((2, 2), seed=1),
    "diagonal-1": lambda: models.DiagonalLinear(D, depth=1, seed=1),
    "diagonal-3": lambda: models.DiagonalLinear(D, depth=3, seed=1),
    **{f"two_layer-{act}": (lambda act=act: models.TwoLayer(D, 6, act, seed=1))
       for act in ("relu", "relu2", "quadratic", "linear")},
    "two_layer-relu_power-1.5": lambda: models.TwoLayer(D, 6, ("relu_power", 1.5), seed=1),
    "vector_unit-relu": lambda: models.TwoLayerWithVectorUnit(D, 6, "relu", seed=1),
    "vector_unit-relu2": lambda: models.TwoLayerWithVectorUnit(D, 6, "relu2", seed=1),
    "mlp-relu": lambda: models.MLP([D, 5, 3, 1], "relu", seed=1),
    "mlp-relu2": lambda: models.MLP([D, 5, 3, 1], "relu2", seed=1),
    "mlp-no-hidden": lambda: models.MLP([D, 1], seed=1),
}


@pytest.fixture(scope="module")
def X():
    return torch.randn(20, D, dtype=F64, generator=torch.Generator().manual_seed(0))


class UserNet(nn.Module):
    """A user's own model: an nn.Sequential head, a declared degree, the output squeezed."""

    def __init__(self, bias=False, activation=nn.ReLU, degree=2, squeeze=True):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(D, 8, bias=bias), activation(), nn.Linear(8, 1, bias=bias)).to(F64)
        self.squeeze = squeeze
        if degree is not None:
            self.degree = degree

    def forward(self, X):
        out = self.net(X)
        return out.squeeze(-1) if self.squeeze else out


@pytest.mark.parametrize("name", LIBRARY)
def test_library_models_pass(name, X):
    model = LIBRARY[name]()
    inputs = X.reshape(-1, 2, 2) if name == "linear-matrix" else X
    before = [p.detach().clone() for p in model.parameters()]
    assert check_homogeneous(model, inputs) == pytest.approx(model.degree, rel=1e-10)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the model is untouched


def test_user_relu_net_passes(X):
    assert check_homogeneous(UserNet(), X) == pytest.approx(2.0, rel=1e-10)
    sequential = nn.Sequential(nn.Linear(D, 8, bias=False), nn.ReLU(), nn.Linear(8, 1, bias=False),
                               nn.Flatten(0)).to(F64)
    sequential.degree = 2
    assert check_homogeneous(sequential, X) == pytest.approx(2.0, rel=1e-10)


def test_degree_argument_overrides_the_declared_one(X):
    net = UserNet(degree=None)
    assert check_homogeneous(net, X, degree=2) == pytest.approx(2.0, rel=1e-10)
    with pytest.raises(ValueError, match="declares degree 3 but"):
        check_homogeneous(UserNet(), X, degree=3)


def test_column_output_raises(X):
    with pytest.raises(ValueError, match=r"shape \(20, 1\).*must be shape \(20,\).*out.squeeze\(-1\)"):
        check_homogeneous(UserNet(squeeze=False), X)


def test_wrong_declared_degree_raises(X):
    """A ReLU² net (degree 3) declaring 2, and a ReLU net (degree 2) declaring 3."""
    relu2 = models.TwoLayer(D, 6, "relu2", seed=1)
    relu2.degree = 2.0
    wrong = r"TwoLayer declares degree 2 but f\(cθ\) = c\^3.00 f\(θ\).*`degree = 3`"
    with pytest.raises(ValueError, match=wrong):
        check_homogeneous(relu2, X)
    with pytest.raises(ValueError, match=r"UserNet declares degree 3 but f\(cθ\) = c\^2.00 f\(θ\)"):
        check_homogeneous(UserNet(degree=3), X)


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU, nn.GELU])
def test_network_with_biases_raises(activation, X):
    with pytest.raises(ValueError, match="not positively homogeneous.*Remove biases.*tanh"):
        check_homogeneous(UserNet(bias=True, activation=activation), X)


def test_tanh_without_biases_raises(X):
    with pytest.raises(ValueError, match="not positively homogeneous"):
        check_homogeneous(UserNet(activation=nn.Tanh), X)


def test_missing_or_bad_degree_raises(X):
    with pytest.raises(TypeError, match="UserNet has no `degree`.*Declare its degree"):
        check_homogeneous(UserNet(degree=None), X)
    with pytest.raises(TypeError, match="must be a number"):
        check_homogeneous(UserNet(degree="two"), X)
    with pytest.raises(ValueError, match="finite number L > 0"):
        check_homogeneous(UserNet(degree=0), X)


def test_non_finite_outputs_raise(X):
    net = UserNet()
    with torch.no_grad():
        net.net[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite outputs"):
        check_homogeneous(net, X)


def test_parameters_hidden_from_functional_call_show_as_degree_zero(X):
    """A forward that reads a tensor outside ``parameters()`` does not scale with θ."""

    class Hidden(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(D, dtype=F64))
            self.degree = 1
            self.hidden = [self.w]  # a plain list: functional_call cannot swap it

        def forward(self, X):
            return X @ self.hidden[0]

    with pytest.raises(ValueError, match=r"c\^0.00.*outside `model.parameters\(\)`"):
        check_homogeneous(Hidden(), X)


def test_zero_outputs_are_consistent_with_any_degree(X):
    model = models.TwoLayer(D, 6, "relu", seed=1)
    with torch.no_grad():
        model.a.zero_()
    assert check_homogeneous(model, X) == 2.0
    assert model not in homogeneity._CHECKED  # nothing was measured: not cached


def test_bad_scales_raise(X):
    with pytest.raises(ValueError, match="positive and ≠ 1"):
        check_homogeneous(UserNet(), X, scales=(1.0, 2.0))


def test_float32_model_passes(X):
    model = models.MLP([D, 50, 50, 1], "relu2", seed=1, dtype=torch.float32)
    assert check_homogeneous(model, X.float()) == pytest.approx(7.0, rel=1e-5)


def test_a_passing_check_is_cached(X, monkeypatch):
    model = models.TwoLayer(D, 6, "relu2", seed=1)
    calls = []
    monkeypatch.setattr(homogeneity, "functional_call",
                        lambda *args: calls.append(1) or torch.func.functional_call(*args))
    check_homogeneous(model, X)
    measured = len(calls)
    assert measured == len(homogeneity.SCALES)
    with torch.no_grad():  # training moves the parameters in place: still the same model
        model.W.mul_(1.5)
    check_homogeneous(model, X)
    assert len(calls) == measured
    model.a = nn.Parameter(model.a.detach().clone())  # a new parameter tensor: checked again
    check_homogeneous(model, X)
    assert len(calls) == 2 * measured
    check_homogeneous(model, X[:5])  # new data: checked again
    assert len(calls) == 3 * measured
