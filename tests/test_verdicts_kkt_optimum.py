"""Chapter 7's verdicts pass on small correct inputs and fail on mutants: a diagonal network
or a random direction in place of the deep linear network, a non-KKT point on the feasible
path or the depth-2 network in place of the balanced depth-3 point, the bad and good ReLU
runs swapped or stopped early."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import one_thread
from implicit_bias import data, max_margin, models
from implicit_bias.train import Run, train
from implicit_bias.verdicts import kkt_optimum as K

F64 = torch.float64
TRIALS = 400


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    with one_thread():
        yield


# --- linear network ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gaussian():
    X, y = data.gaussian(n=40, d=8, seed=0)
    return X, y, max_margin(X, y, "l2")


def trained_end_to_end(model, X, y, steps):
    h = train(Run("NormalizedGD", 0.5, steps, schedule=0.5, model=model), (X, y), norms=("l2",),
              progress=False, engine="loop")[0]
    return K.end_to_end(h.model, X.shape[1])


@pytest.fixture(scope="module")
def deep_verdict(gaussian):
    X, y, best = gaussian
    deep = {"kind": "mlp", "hidden": [8, 8], "activation": "linear", "init_scale": 0.5}
    return K.linear_network(trained_end_to_end(deep, X, y, 1000), X, y, best)


def test_linear_network_passes(deep_verdict):
    assert deep_verdict, deep_verdict.failures


@pytest.fixture(scope="module")
def diagonal_w(gaussian):
    X, y, _ = gaussian
    return trained_end_to_end({"kind": "diagonal", "depth": 3, "init_scale": 0.5}, X, y, 600)


def test_linear_network_fails_on_a_diagonal_network(gaussian, deep_verdict, diagonal_w):
    """Mutant: a depth-3 *diagonal* linear network trained the same way: its KKT points are
    not the ℓ2 max-margin direction (cos ≈ 0.96)."""
    assert deep_verdict
    X, y, best = gaussian
    v = K.linear_network(diagonal_w, X, y, best)
    assert not v
    assert any(f.startswith("cos") for f in v.failures)


@pytest.fixture(scope="module")
def deep_seeds(gaussian):
    """The chapter's form: three training seeds of the deep linear network, one ``train`` call."""
    X, y, _ = gaussian
    deep = {"kind": "mlp", "hidden": [8, 8], "activation": "linear", "init_scale": 0.5}
    hs = train([Run("NormalizedGD", 0.5, 1000, schedule=0.5, seed=s, model=deep) for s in range(3)], (X, y),
               norms=("l2",), progress=False)
    return {h.run.seed: K.end_to_end(h.model, X.shape[1]) for h in hs}


def test_linear_network_passes_on_three_seeds(gaussian, deep_seeds):
    X, y, best = gaussian
    v = K.linear_network(deep_seeds, X, y, best)
    assert v, v.failures
    assert sum(line.startswith("seed") for line in v.lines) == 3


def test_linear_network_fails_when_one_seed_is_a_diagonal_network(gaussian, deep_seeds, diagonal_w):
    """Mutant: the diagonal network in place of one of the three seeds: the verdict must fail on
    that seed alone (it requires the claim on every seed, not on most)."""
    X, y, best = gaussian
    assert K.linear_network(deep_seeds, X, y, best)
    v = K.linear_network({**deep_seeds, 2: diagonal_w}, X, y, best)
    assert not v
    assert v.failures and all(f.endswith("(seed 2)") for f in v.failures)
    assert any(f.startswith("cos") for f in v.failures)


def test_linear_network_fails_on_a_random_direction(gaussian, deep_verdict):
    assert deep_verdict
    X, y, best = gaussian
    w = torch.randn(X.shape[1], generator=torch.Generator().manual_seed(0), dtype=F64)
    assert not K.linear_network(w, X, y, best)


# --- diagonal networks -------------------------------------------------------------------------

X1, Y1 = torch.tensor([[1.0, 1.0]], dtype=F64), torch.tensor([1.0], dtype=F64)


def diagonal(depth, first, second):
    model = models.DiagonalLinear(2, depth=depth)
    for layer in model.layers:
        layer.data = torch.tensor([first, second], dtype=F64)
    return model


def diag_row(depth, balanced=None, label_depth=None):
    row = {"depth": label_depth or depth}
    points = {"balanced": balanced or diagonal(depth, 2 ** (-1 / depth), 2 ** (-1 / depth)),
              "sparse": diagonal(depth, 1.0, 0.0)}
    for name, point in points.items():
        row |= {f"{name} {k}": v for k, v in K.point_row(point, X1, Y1, trials=TRIALS).items()}
    return row


@pytest.fixture(scope="module")
def diag_rows():
    return [diag_row(2), diag_row(3)]


def test_diagonal_passes(diag_rows):
    v = K.diagonal(diag_rows)
    assert v, v.failures


def test_diagonal_fails_on_a_non_kkt_point(diag_rows):
    """Mutant: at depth 3, the feasible point a³ = 0.6, b³ = 0.4 (on the path, not KKT) in
    place of the balanced one."""
    assert K.diagonal(diag_rows)
    v = K.diagonal([diag_row(3, balanced=diagonal(3, 0.6 ** (1 / 3), 0.4 ** (1 / 3)))])
    assert not v
    assert any("balanced point is not KKT" in f for f in v.failures)


def test_diagonal_fails_with_depth_2_as_depth_3(diag_rows):
    """Mutant: the depth-2 network (where the balanced point is global) offered as depth 3."""
    assert K.diagonal(diag_rows)
    v = K.diagonal([diag_row(2, label_depth=3)])
    assert not v
    assert any("no shorter point" in f for f in v.failures)


# --- width-2 ReLU ------------------------------------------------------------------------------

A80 = math.radians(80)
X2 = torch.tensor([[math.cos(A80), math.sin(A80)], [math.cos(A80), -math.sin(A80)]], dtype=F64)
Y2 = torch.ones(2, dtype=F64)


def relu_run(phi1, phi2, steps=1500, trials=3000):
    W0 = 0.5 * torch.tensor([[math.cos(phi1), math.sin(phi1)], [math.cos(phi2), math.sin(phi2)]], dtype=F64)
    model = K.train_width2(W0, torch.full((2,), 0.5, dtype=F64), X2, Y2, steps, lr=0.5, decay=0.5)
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return K.relu_row(model, X2, Y2, trials=trials, reference=flat)


@pytest.fixture(scope="module")
def relu_rows():
    """The chapter's representatives: neuron 2 starts dead (bad), or the neurons start 180°
    apart, one on each side (good)."""
    return relu_run(math.radians(1), math.radians(181)), relu_run(math.radians(31), math.radians(211))


def test_relu_passes(relu_rows):
    v = K.relu(*relu_rows, fraction_bad=0.02, fraction_good=0.5)
    assert v, v.failures


def test_relu_fails_with_the_runs_swapped(relu_rows):
    assert K.relu(*relu_rows, fraction_bad=0.02, fraction_good=0.5)
    bad, good = relu_rows
    v = K.relu(good, bad, fraction_bad=0.02, fraction_good=0.5)
    assert not v
    assert any(f.startswith("bad run: γ") for f in v.failures)
    assert any(f.startswith("no shorter point") for f in v.failures)


def test_relu_fails_on_a_run_stopped_early(relu_rows):
    """Mutant: the bad run stopped after 10 steps, before it reaches the KKT point."""
    assert K.relu(*relu_rows, fraction_bad=0.02, fraction_good=0.5)
    v = K.relu(relu_run(math.radians(1), math.radians(181), steps=10, trials=10), relu_rows[1], 0.02, 0.5)
    assert not v
    assert any("not a KKT point" in f for f in v.failures)


def test_relu_fails_without_the_bad_outcome(relu_rows):
    """Mutant: a grid on which no initialization ends at the bad KKT point."""
    assert K.relu(*relu_rows, fraction_bad=0.02, fraction_good=0.5)
    assert not K.relu(*relu_rows, fraction_bad=0.0, fraction_good=0.5)
