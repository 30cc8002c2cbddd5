"""The small bias-free convolutional net: its degree measured, its symmetries exact, its
training in the batched engine equal to the loop's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from implicit_bias import data, models, symmetry
from implicit_bias.homogeneity import check_homogeneous
from implicit_bias.train import Run, train
from torch.func import functional_call


@pytest.fixture(scope="module")
def digits():
    return data.digits_classes(n=30)


@pytest.mark.parametrize("activation, degree", [("relu2", 4.0), ("relu", 3.0), (("relu_power", 3.0), 5.0)])
def test_degree_is_measured(digits, activation, degree):
    X, _ = digits
    net = models.ConvNet(channels=(3, 4), activation=activation)
    assert net.degree == degree
    assert check_homogeneous(net, X, multi_output=True) == pytest.approx(degree, abs=1e-9)
    assert net(X).shape == (30, 10)


def test_mnist_side():
    net = models.ConvNet(side=28, channels=(2, 2))
    assert net(torch.rand(3, 784, dtype=torch.float64)).shape == (3, 10)


@pytest.mark.parametrize("group", ["neuron", "layer"])
def test_rescalings_leave_the_function_unchanged(digits, group):
    X, _ = digits
    net = models.ConvNet(channels=(3, 4), seed=1)
    params = [p.detach() for p in net.parameters()]
    s = torch.randn(net.symmetry_size(group), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    moved = net.rescaled(params, s, group)
    names = [n for n, _ in net.named_parameters()]
    with torch.no_grad():
        f0, f1 = net(X), functional_call(net, dict(zip(names, moved)), (X,))
    assert torch.allclose(f0, f1, rtol=1e-12, atol=1e-12 * float(f0.abs().max()))
    assert not all(torch.allclose(a, b) for a, b in zip(params, moved))


def test_finer_symmetry_never_lowers_the_function_margin(digits):
    X, labels = digits
    net = models.ConvNet(channels=(3, 4), seed=2)
    for norm in ("l2", "linf"):
        layer = symmetry.function_margin(net, X, labels, norm, group="layer")
        neuron = symmetry.function_margin(net, X, labels, norm, group="neuron")
        # margins are negative at initialization: a smaller norm makes them larger in size
        assert abs(neuron) >= abs(layer) * (1 - 1e-6)


@pytest.mark.parametrize("bad", [dict(channels=(0, 3)), dict(num_classes=1), dict(activation="tanh")])
def test_bad_configs_refused(bad):
    with pytest.raises(ValueError):
        models.ConvNet(**bad)


def test_cnn_trains_in_the_batched_engine_like_the_loop(digits):
    X, labels = digits
    pairs = data.class_pairs(X, labels, 10)
    factory = models.pairwise_factory(models.ConvNet, channels=(2, 2))
    runs = [Run(opt, lr, 20, schedule=0.5, seed=0, model=factory)
            for opt, lr in (("NormalizedGD", 1.0), ("SpectralDescent", 0.05))]
    batched = train(runs, pairs, norms=("l2", "spectral"), progress=False, engine="batched")
    loop = train(runs, pairs, norms=("l2", "spectral"), progress=False, engine="loop")
    for a, b in zip(batched, loop):
        assert a.engine["name"] == "batched"
        assert np.allclose(a.log_loss, b.log_loss, rtol=1e-10, atol=0)
        assert np.allclose(a.margins["spectral"], b.margins["spectral"], rtol=1e-8)
