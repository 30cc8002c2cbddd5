"""Function-level margins: the rescalings leave f unchanged, the best rescaling matches the
closed forms of the two-layer net, no random rescaling beats it, and a rebalanced model
gains nothing more."""

from __future__ import annotations

import copy

import pytest
import torch
from implicit_bias import data, models, norms, symmetry
from implicit_bias.margins import normalized_margin


@pytest.fixture(scope="module")
def net_data():
    X, _ = data.gaussian(n=30, d=6, seed=3)
    model = models.TwoLayer(6, 12, "relu2", seed=2)
    with torch.no_grad():  # an unbalanced split, as a non-ℓ2 optimizer leaves it
        model.W.mul_(torch.linspace(0.2, 3.0, 12, dtype=torch.float64)[:, None])
        y = torch.sign(model(X))  # labelled by the net itself: separated, positive margins
    return model, X, y


MODELS = {
    "two_layer": lambda: models.TwoLayer(5, 7, "relu2", seed=1),
    "two_layer_relu": lambda: models.TwoLayer(5, 7, "relu", seed=1),
    "mlp": lambda: models.MLP([5, 6, 4, 1], "relu2", seed=1),
    "diagonal": lambda: models.DiagonalLinear(5, depth=3, seed=1),
}


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("group", models.GROUPS)
def test_rescalings_leave_the_function_unchanged(kind, group):
    model = MODELS[kind]()
    X = torch.randn(20, 5, dtype=torch.float64)
    params = [p.detach() for p in model.parameters()]
    s = torch.randn(model.symmetry_size(group), dtype=torch.float64)
    moved = copy.deepcopy(model)
    torch.nn.utils.vector_to_parameters(
        torch.cat([p.reshape(-1) for p in model.rescaled(params, s, group)]), list(moved.parameters()))
    assert torch.allclose(moved(X), model(X), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(torch.cat([p.reshape(-1) for p in moved.parameters()]),
                              torch.cat([p.reshape(-1) for p in params]))


def test_two_layer_closed_forms(net_data):
    model, X, y = net_data
    W, a = model.W.detach(), model.a.detach()
    q_min = float((y * model(X)).min().detach())
    closed = {  # degree 3: ‖·‖ at the best c (papers.md §7)
        ("linf", "neuron"): max(float(W[j].abs().max() ** (2 / 3) * a[j].abs() ** (1 / 3))
                                for j in range(12)),
        ("linf", "layer"): float(W.abs().max() ** (2 / 3) * a.abs().max() ** (1 / 3)),
        ("l2", "neuron"): (3 / 2 ** (2 / 3) * sum(float((W[j] ** 2).sum() ** (2 / 3) * (a[j] ** 2) ** (1 / 3))
                                                  for j in range(12))) ** 0.5,
        # max{‖DW‖₂, ‖D^{-2} a‖∞} is smallest at d_j² ∝ |a_j|: K^{2/3}, K = ‖diag(√|a|) W‖₂
        ("hybrid", "neuron"): float(torch.linalg.matrix_norm(a.abs().sqrt()[:, None] * W, 2)) ** (2 / 3),
    }
    for (norm, group), value in closed.items():
        got = symmetry.function_margin(model, X, y, norm, group)
        s = symmetry.best_rescaling(model, norm, group, method="search")
        searched = float(norms.by_name(norm, [W, a])(model.rescaled([W, a], s, group)))
        assert searched == pytest.approx(value, rel=1e-5), (norm, group)
        assert got == pytest.approx(q_min / value**3, rel=1e-9), (norm, group)  # the closed forms


@pytest.mark.parametrize("norm", ["l2", "linf", "spectral", "hybrid"])
def test_no_random_rescaling_beats_the_best(net_data, norm):
    model, X, y = net_data
    params = [p.detach() for p in model.parameters()]
    nobj = norms.by_name(norm, params)
    s = symmetry.best_rescaling(model, norm)
    best = float(nobj(model.rescaled(params, s)))
    gen = torch.Generator().manual_seed(0)
    for radius in (1e-3, 1e-2, 0.1, 1.0):
        for _ in range(50):
            t = s + radius * torch.randn(s.shape, generator=gen, dtype=s.dtype)
            assert float(nobj(model.rescaled(params, t))) >= best * (1 - 1e-4), (radius, norm)
    assert symmetry.function_margin(model, X, y, norm) >= normalized_margin(model, X, y, norm)


@pytest.mark.parametrize("norm", ["l2", "linf", "hybrid"])
def test_a_rebalanced_model_gains_nothing_more(net_data, norm):
    model, X, y = net_data
    balanced = copy.deepcopy(model)
    best = symmetry.rebalanced_params(model, norm)
    torch.nn.utils.vector_to_parameters(torch.cat([p.reshape(-1) for p in best]), list(balanced.parameters()))
    assert symmetry.rebalancing_gain(model, X, y, norm) > 1.01  # the fixture is unbalanced
    assert symmetry.rebalancing_gain(balanced, X, y, norm) == pytest.approx(1.0, abs=1e-3)


def test_mlp_and_diagonal_improve_and_linear_has_no_symmetry():
    X, _ = data.gaussian(n=20, d=5, seed=1)
    for kind in ("mlp", "diagonal"):
        model = MODELS[kind]()
        y = torch.sign(model(X).detach())
        for norm in ("l2", "linf"):
            raw = normalized_margin(model, X, y, norm)
            assert symmetry.function_margin(model, X, y, norm) >= raw * (1 - 1e-9), (kind, norm)
    lin = models.Linear(5)
    y = torch.sign(lin(X).detach())
    assert symmetry.function_margin(lin, X, y, "linf") == normalized_margin(lin, X, y, "linf")


def test_a_model_without_symmetry_methods_is_refused():
    class Plain(torch.nn.Module):
        degree = 1.0

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))

        def forward(self, X):
            return X @ self.w

    with pytest.raises(TypeError, match="symmetry_size"):
        symmetry.function_margin(Plain(), torch.ones(2, 3, dtype=torch.float64),
                                 torch.ones(2, dtype=torch.float64), "l2")


def test_the_closed_forms_are_the_models_own_and_a_changed_symmetry_searches(net_data):
    """The two-layer closed form is a method of the model (best_log_scales); a subclass
    that changes the rescaling symmetry does not inherit it, and the search agrees with it."""
    model, X, y = net_data
    params = [p.detach() for p in model.parameters()]
    closed = model.best_log_scales(params, norms.Linf())
    assert closed is not None and models.HomogeneousModel.best_log_scales(model, params, norms.L2()) is None
    searched = symmetry.best_rescaling(model, "linf", method="search")
    linf = norms.Linf()
    assert float(linf(model.rescaled(params, searched))) == pytest.approx(
        float(linf(model.rescaled(params, closed))), rel=1e-6)

    class Doubled(models.TwoLayer):
        def rescaled(self, params, s, group="neuron"):  # the same maps, written anew
            return super().rescaled(params, s, group)

    other = Doubled(6, 12, "relu2", seed=2)
    assert other.best_log_scales([p.detach() for p in other.parameters()], norms.Linf()) is None


def test_a_norm_without_smooth_log_takes_the_subgradient_path_and_says_so_once(net_data):
    model, X, y = net_data

    class MyLinf(norms.Norm):  # ℓ∞ without smooth_log or log_terms
        name = "my_linf"

        def __call__(self, xs):
            return torch.cat([x.reshape(-1) for x in xs]).abs().max()

        def dual(self, gs):
            return torch.cat([g.reshape(-1) for g in gs]).abs().sum()

        def steepest(self, gs):
            return [torch.sign(g) for g in gs]

        def subgradient(self, xs):
            return norms.Linf().subgradient(xs)

    norms._WARNED_NO_SMOOTH_LOG.discard(MyLinf)
    raw = normalized_margin(model, X, y, MyLinf())
    with pytest.warns(RuntimeWarning, match="MyLinf has no smooth_log") as caught:
        fn = symmetry.function_margin(model, X, y, MyLinf())
        symmetry.function_margin(model, X, y, MyLinf())
    assert sum("smooth_log" in str(w.message) for w in caught) == 1  # once per norm class
    assert fn >= raw * (1 - 1e-12)  # never worse than the raw margin
    assert fn <= symmetry.function_margin(model, X, y, "linf") * (1 + 1e-6)  # the smoothed path's is the best
