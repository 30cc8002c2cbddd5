"""search_nearby: finds shorter feasible points next to KKT points that are not local optima
(Vardi, Shamir & Srebro's constructions), and none at global optima."""

from __future__ import annotations

import math

import pytest
import torch
from implicit_bias import kkt, models
from implicit_bias.optimality import search_nearby

ONE_POINT = (torch.tensor([[1.0, 1.0]], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))
ANGLE = math.radians(80)
TWO_POINTS = (torch.tensor([[math.cos(ANGLE), math.sin(ANGLE)], [math.cos(ANGLE), -math.sin(ANGLE)]],
                           dtype=torch.float64), torch.ones(2, dtype=torch.float64))


def diagonal(depth, first, second):
    model = models.DiagonalLinear(2, depth=depth)
    for layer in model.layers:
        layer.data = torch.tensor([first, second], dtype=torch.float64)
    return model


def width_two(W, a):
    model = models.TwoLayer(2, 2, activation="relu")
    model.W.data = torch.tensor(W, dtype=torch.float64)
    model.a.data = torch.tensor(a, dtype=torch.float64)
    return model


BALANCED = {depth: diagonal(depth, 2 ** (-1 / depth), 2 ** (-1 / depth)) for depth in (2, 3, 4)}
ONE_NEURON = width_two([[1.0, 0.0], [0.0, 0.0]], [1.0, 0.0])
TWO_NEURONS = width_two(TWO_POINTS[0].tolist(), [1.0, 1.0])


@pytest.mark.parametrize("model, data", [(BALANCED[3], ONE_POINT), (BALANCED[4], ONE_POINT),
                                         (ONE_NEURON, TWO_POINTS)])
def test_finds_shorter_points_next_to_kkt_points_that_are_not_local_optima(model, data):
    assert kkt.kkt_certificate(model, *data, "l2", active_tol=1e-6).epsilon < 1e-10  # KKT
    result = search_nearby(model, *data, radius=0.05, trials=1500)
    assert result.improvement > 1e-4, result
    q = (data[1] * result.model(data[0])).detach()
    assert float(q.min()) == pytest.approx(1.0, abs=1e-12)  # feasible, min q = 1
    norm = float(torch.nn.utils.parameters_to_vector(result.model.parameters()).detach().norm())
    assert norm == pytest.approx(result.norm_best, rel=1e-12)
    assert result.norm_best < result.norm_start and 0 < result.distance <= 0.05 * 1.1


@pytest.mark.parametrize("model, data", [(BALANCED[2], ONE_POINT), (diagonal(3, 1.0, 0.0), ONE_POINT),
                                         (diagonal(4, 1.0, 0.0), ONE_POINT), (TWO_NEURONS, TWO_POINTS)])
def test_finds_nothing_at_global_optima(model, data):
    """Depth 2's balanced point lies on a flat valley of global optima: rounding along it
    must not count as an improvement."""
    result = search_nearby(model, *data, radius=0.05, trials=1500)
    assert result.improvement < 1e-9, result


def test_closed_form_norms_and_determinism():
    result = search_nearby(BALANCED[3], *ONE_POINT, trials=200, seed=3)
    assert result.norm_start == pytest.approx(math.sqrt(6 * 2 ** (-2 / 3)), rel=1e-12)
    again = search_nearby(BALANCED[3], *ONE_POINT, trials=200, seed=3)
    assert again.norm_best == result.norm_best and again.accepted == result.accepted
    assert "NearbySearch(improvement=" in repr(result)


def test_bad_input():
    with pytest.raises(ValueError, match="not separating the data"):
        search_nearby(diagonal(3, 1.0, -2.0), *ONE_POINT)
    with pytest.raises(ValueError, match="radius"):
        search_nearby(BALANCED[3], *ONE_POINT, radius=0.0)
    with pytest.raises(ValueError, match="trials"):
        search_nearby(BALANCED[3], *ONE_POINT, trials=0)
    with pytest.raises(TypeError, match="degree"):
        search_nearby(torch.nn.Linear(2, 1), *ONE_POINT)
