"""Normalized and smoothed margins, and the direction cosine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import F64
from implicit_bias import data, margins, models, norms

NORMS = ["l2", "linf", "l1", "spectral", "hybrid"]


@pytest.fixture(scope="module")
def gauss():
    return data.gaussian(n=25, d=4, seed=2)


def model_zoo():
    return [
        models.Linear(4, seed=0),
        models.DiagonalLinear(4, depth=3, seed=0),
        models.TwoLayer(4, 6, activation="relu2", seed=0),
        models.TwoLayer(4, 6, activation="relu", seed=0),
        models.MLP([4, 5, 3, 1], activation="relu", seed=0),
    ]


def scaled(model, c):
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(c)
    return model


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("index", range(5))
def test_normalized_margin_is_scale_invariant(index, norm, gauss):
    X, y = gauss
    model = model_zoo()[index]
    base = margins.normalized_margin(model, X, y, norm)
    assert math.isfinite(base) and base != 0
    for c in (0.1, 3.0, 50.0):
        got = margins.normalized_margin(scaled(model_zoo()[index], c), X, y, norm)
        assert got == pytest.approx(base, rel=1e-10)


def test_normalized_margin_value(gauss):
    X, y = gauss
    model = models.TwoLayer(4, 6, seed=1)
    params = [p.detach() for p in model.parameters()]
    q_min = float((y * model(X)).min().detach())
    for name in NORMS:
        norm = norms.by_name(name, params)
        want = q_min / float(norm(params)) ** 3
        assert margins.normalized_margin(model, X, y, name) == pytest.approx(want, rel=1e-14)
        # A Norm object works as well as its name.
        assert margins.normalized_margin(model, X, y, norm) == pytest.approx(want, rel=1e-14)


def test_linear_margin_is_the_geometric_margin(gauss):
    X, y = gauss
    model = models.Linear(4, seed=0)
    w = model.w.detach()
    want = float((y * (X @ w)).min() / w.norm())
    assert margins.normalized_margin(model, X, y) == pytest.approx(want, rel=1e-14)
    want_inf = float((y * (X @ w)).min() / w.abs().max())
    assert margins.normalized_margin(model, X, y, "linf") == pytest.approx(want_inf, rel=1e-14)


def test_model_without_degree_raises(gauss):
    X, y = gauss
    plain = torch.nn.Linear(4, 1, bias=False).double()
    for fn in (margins.normalized_margin, margins.smoothed_margin):
        with pytest.raises(TypeError, match="has no `degree`"):
            fn(plain, X, y)


def separating_two_layer(c: float):
    """A two-layer ReLU² net that fits ``data.gaussian(25, 4, seed=2)``, scaled by c."""
    X, y = data.gaussian(n=25, d=4, seed=2)
    model = models.TwoLayer(4, 2, activation="relu2", seed=0)
    w = torch.linalg.lstsq(X, y.unsqueeze(1)).solution.squeeze(1)
    with torch.no_grad():
        model.W.copy_(torch.stack([w, -w]) * c)
        model.a.copy_(torch.tensor([1.0, -1.0], dtype=F64) * c)
    assert float((y * model(X)).min().detach()) > 0
    return model, X, y


@pytest.mark.parametrize("c", [0.3, 1.0, 3.0, 30.0])
@pytest.mark.parametrize("norm", ["l2", "linf", "spectral"])
def test_smoothed_margin_bounds(c, norm):
    """Exponential: γ − log(n)/‖θ‖^L ≤ γ̃ ≤ γ (since e^{−q_min} ≤ L ≤ n e^{−q_min}).
    Logistic: γ̃ ≤ γ always (L ≥ ℓ(q_min) and ℓ decreases)."""
    model, X, y = separating_two_layer(c)
    params = [p.detach() for p in model.parameters()]
    size = float(norms.by_name(norm, params)(params)) ** model.degree
    gamma = margins.normalized_margin(model, X, y, norm)
    exp_ = margins.smoothed_margin(model, X, y, norm, loss="exponential")
    slack = 1e-12 * abs(gamma)
    assert gamma - math.log(len(y)) / size - slack <= exp_ <= gamma + slack
    logi = margins.smoothed_margin(model, X, y, norm, loss="logistic")
    assert logi <= gamma + slack
    assert logi <= exp_ + slack  # log(1 + e^{-q}) ≤ e^{-q}


def test_smoothed_margin_at_tiny_losses():
    """Far beyond float64's range the smoothed margin is still finite and converges to γ
    (the gap is at most log(n)/‖θ‖^L)."""
    model, X, y = separating_two_layer(200.0)
    assert float((y * model(X)).min().detach()) > 1e4  # the loss is e^{-10000} or less
    gamma = margins.normalized_margin(model, X, y)
    for loss in ("exponential", "logistic"):
        s = margins.smoothed_margin(model, X, y, loss=loss)
        assert math.isfinite(s)
        assert gamma * (1 - 1e-3) <= s <= gamma * (1 + 1e-12)


def test_smoothed_margin_exponential_value(gauss):
    X, y = gauss
    model = models.Linear(4, seed=3)
    q = (y * model(X)).detach().numpy()
    want = -np.log(np.exp(-q).sum()) / float(model.w.detach().norm())
    assert margins.smoothed_margin(model, X, y, loss="exponential") == pytest.approx(want, rel=1e-13)


def test_direction_cosine_basics():
    a = torch.tensor([1.0, 2.0, -2.0], dtype=F64)
    assert margins.direction_cosine(a, a) == pytest.approx(1.0, abs=1e-15)
    assert margins.direction_cosine(a, 7.5 * a) == pytest.approx(1.0, abs=1e-15)
    assert margins.direction_cosine(a, -a) == pytest.approx(-1.0, abs=1e-15)
    orthogonal = torch.tensor([2.0, -1.0, 0.0], dtype=F64)
    assert margins.direction_cosine(a, orthogonal) == pytest.approx(0.0, abs=1e-15)
    b = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    assert margins.direction_cosine(a, b) == pytest.approx(1 / 3, rel=1e-15)
    # Lists of tensors and models are flattened in parameter order.
    m1, m2 = models.TwoLayer(3, 4, seed=0), models.TwoLayer(3, 4, seed=0)
    scaled(m2, 4.0)
    assert margins.direction_cosine(m1, m2) == pytest.approx(1.0, abs=1e-14)
    assert margins.direction_cosine(list(m1.parameters()), m2) == pytest.approx(1.0, abs=1e-14)
    parts = [torch.tensor([[1.0, 2.0]], dtype=F64), torch.tensor([-2.0], dtype=F64)]
    assert margins.direction_cosine(parts, b) == pytest.approx(1 / 3, rel=1e-15)


def test_direction_cosine_errors():
    a = torch.tensor([1.0, 2.0], dtype=F64)
    with pytest.raises(ValueError, match="zero vector"):
        margins.direction_cosine(a, torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match="zero vector"):
        margins.direction_cosine(torch.zeros(2, dtype=F64), a)
    with pytest.raises(ValueError, match="sizes differ"):
        margins.direction_cosine(a, torch.ones(3, dtype=F64))


class UserNet(torch.nn.Module):
    """A user's bias-free ReLU net (degree 2) built from torch.nn, output squeezed or not."""

    def __init__(self, squeeze=True, bias=False, activation=torch.nn.ReLU, degree=2):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 6, bias=bias), activation(),
                                       torch.nn.Linear(6, 1, bias=bias)).to(F64)
        self.squeeze, self.degree = squeeze, degree

    def forward(self, X):
        out = self.net(X)
        return out.squeeze(-1) if self.squeeze else out


def test_user_model_margin_by_hand(gauss):
    X, y = gauss
    model = UserNet()
    W, v = model.net[0].weight.detach(), model.net[2].weight.detach().reshape(-1)
    q = y * (torch.relu(X @ W.T) @ v)
    size = W.square().sum() + v.square().sum()  # ‖θ‖₂^L with L = 2
    assert margins.normalized_margin(model, X, y) == pytest.approx(float(q.min() / size), rel=1e-14)
    assert margins.smoothed_margin(model, X, y, loss="exponential") == pytest.approx(
        float(-torch.logsumexp(-q, 0) / size), rel=1e-13)


LIBRARY = [
    models.Linear(4, seed=1), models.DiagonalLinear(4, depth=2, seed=1),
    models.TwoLayer(4, 6, "relu", seed=1), models.TwoLayer(4, 6, "relu2", seed=1),
    models.TwoLayerWithVectorUnit(4, 6, "relu2", seed=1), models.MLP([4, 5, 3, 1], "relu", seed=1),
]


@pytest.mark.parametrize("model", LIBRARY, ids=lambda m: type(m).__name__)
def test_library_models_pass_the_checks(model, gauss):
    X, y = gauss
    params = [p.detach() for p in model.parameters()]
    want = float((y * model(X)).min().detach() / norms.by_name("l2", params)(params) ** model.degree)
    assert margins.normalized_margin(model, X, y) == want


@pytest.mark.parametrize("fn", [margins.normalized_margin, margins.smoothed_margin])
def test_silent_wrong_models_raise(fn, gauss):
    """Each of these used to return a number: an (n, 1) head broadcast y·f to an n×n matrix,
    and a wrong or meaningless degree went unchecked."""
    X, y = gauss
    with pytest.raises(ValueError, match=r"must be shape \(25,\).*out.squeeze\(-1\)"):
        fn(UserNet(squeeze=False), X, y)
    with pytest.raises(ValueError, match=r"declares degree 3 but f\(cθ\) = c\^2.00 f\(θ\)"):
        fn(UserNet(degree=3), X, y)
    with pytest.raises(ValueError, match="not positively homogeneous.*Remove biases"):
        fn(UserNet(bias=True, activation=torch.nn.Tanh), X, y)
    no_degree = UserNet()
    del no_degree.degree
    with pytest.raises(TypeError, match="has no `degree`"):
        fn(no_degree, X, y)


@pytest.mark.parametrize("fn", [margins.normalized_margin, margins.smoothed_margin])
def test_bad_labels_raise(fn, gauss):
    X, y = gauss
    model = models.TwoLayer(4, 6, seed=1)
    for bad in ((y + 1) / 2, 3 * y):
        with pytest.raises(ValueError, match="Labels must be -1 or \\+1"):
            fn(model, X, bad)
    with pytest.raises(ValueError, match=r"y must have shape \(25,\).*y.reshape\(-1\)"):
        fn(model, X, y[:, None])
    with pytest.raises(ValueError, match=r"y must have shape \(25,\)"):
        fn(model, X, y[:10])
    with pytest.raises(TypeError, match="torch tensor"):
        fn(model, X, y.numpy())


def test_function_margin_is_checked_through_margins(gauss):
    from implicit_bias import symmetry

    X, y = gauss
    wrong = models.TwoLayer(4, 6, "relu2", seed=1)
    wrong.degree = 2.0
    with pytest.raises(ValueError, match="declares degree 2 but"):
        symmetry.function_margin(wrong, X, y)
    with pytest.raises(ValueError, match="Labels must be"):
        symmetry.function_margin(models.TwoLayer(4, 6, seed=1), X, (y + 1) / 2)
