"""Chapter 1's verdicts (homogeneity, margin scale invariance) pass on the library's models
and fail on mutants: a model that declares the wrong degree, a margin that divides by the
norm raised to the wrong power."""

from __future__ import annotations

import pytest
import torch
from implicit_bias import models
from implicit_bias.margins import params_of
from implicit_bias.norms import by_name
from implicit_bias.verdicts import setting

F64 = torch.float64


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(16, 4, generator=gen, dtype=F64)
    y = torch.where(torch.randn(16, generator=gen, dtype=F64) > 0, 1.0, -1.0).to(F64)
    return X, y


def zoo(d=4):
    return {"Linear": models.Linear(d, seed=1),
            "DiagonalLinear(3)": models.DiagonalLinear(d, depth=3, seed=1),
            "TwoLayer(relu)": models.TwoLayer(d, 6, "relu", seed=1),
            "TwoLayer(relu2)": models.TwoLayer(d, 6, "relu2", seed=1),
            "MLP(relu2)": models.MLP([d, 5, 5, 1], "relu2", seed=1)}


def test_homogeneity_passes_on_the_library_models(batch):
    v = setting.homogeneity(zoo(), batch[0])
    assert v, v.failures


def test_homogeneity_fails_on_a_wrong_declared_degree(batch):
    """Mutant: a squared-ReLU two-layer net (degree 3) that claims degree 2."""
    assert setting.homogeneity(zoo(), batch[0])
    wrong = models.TwoLayer(4, 6, "relu2", seed=1)
    wrong.degree = 2.0
    v = setting.homogeneity({"TwoLayer(relu2), declared 2": wrong}, batch[0])
    assert not v
    assert any("measured degree" in f for f in v.failures)


def test_homogeneity_fails_on_a_network_with_biases(batch):
    """Mutant: a ReLU network with biases (not homogeneous at all), declared degree 2."""
    assert setting.homogeneity(zoo(), batch[0])
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 1)).to(F64)
    net.degree = 2.0
    assert not setting.homogeneity({"biased MLP": net}, batch[0])


def test_margin_invariance_passes(batch):
    v = setting.margin_invariance(zoo(), *batch)
    assert v, v.failures


def squared_norm_margin(model, X, y, norm):
    """Mutant margin: min_i q_i / ‖θ‖² whatever the degree (the ½‖θ‖² of the margin problem
    mistaken for the normalization): the wrong power for every L ≠ 2."""
    params = params_of(model)
    with torch.no_grad():
        q = y * model(X)
    return float(q.min() / by_name(norm, params)(params) ** 2)


def test_margin_invariance_fails_with_the_wrong_power(batch):
    assert setting.margin_invariance(zoo(), *batch)
    v = setting.margin_invariance(zoo(), *batch, margin=squared_norm_margin)
    assert not v
    # the degree-2 model alone is invariant under the mutant: the failure comes from L ≠ 2
    ok = setting.margin_invariance({"TwoLayer(relu)": models.TwoLayer(4, 6, "relu", seed=1)}, *batch,
                                   margin=squared_norm_margin)
    assert ok, ok.failures
