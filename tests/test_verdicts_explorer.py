"""Chapter 9's verdict passes on the explorer's "four points" runs and fails on mutants:
SignGD scored against the ℓ2 solution, NormalizedGD trained under SignGD's label, and the
old one-point data, where every gradient is a multiple of one vector (a one-direction
case: the angles pass, the turn check fails)."""

from __future__ import annotations

import numpy as np
import pytest
from implicit_bias import maxmargin
from implicit_bias.explorer import DATASETS, RATES, Explorer, Settings
from implicit_bias.train import Run, train
from implicit_bias.verdicts import explorer as vx

OWN = {"NormalizedGD": "l2", "SignGD": "linf", "CoordinateDescent": "l1"}
STEPS = 200  # the chapter's smoke size


def _case(dataset):
    e = Explorer(Settings(dataset=dataset, optimizers=tuple(OWN), steps=STEPS))
    e.run()
    X, y = (t.numpy() for t in e.data())
    return e, X, y


@pytest.fixture(scope="module")
def four():
    return _case("four points")


def four_points_verdict(four):
    e, X, y = four
    return vx.own_norm_direction(vx.rows(e.histories, X, y, e.exact()), OWN)


def test_passes_on_the_four_points(four):
    v = four_points_verdict(four)
    assert v, v.failures


def test_four_points_is_not_a_one_direction_case(four):
    """Unique solutions, far apart, none at a corner of its norm's ball (so SignGD and
    coordinate descent must keep switching steepest directions), and every run's gradient
    turns by a clear angle between its initialization and its last step."""
    e, X, y = four
    exact = e.exact()
    for n in ("linf", "l1"):
        assert maxmargin.solution_spread(X, y, n) < 1e-6, n
    dirs = {n: s.direction for n, s in exact.items()}
    assert min(vx.angle(dirs[a], dirs[b]) for a in dirs for b in dirs if a < b) > 14.0
    w_inf, w_1 = dirs["linf"] / np.abs(dirs["linf"]).max(), dirs["l1"] / np.abs(dirs["l1"]).sum()
    assert np.abs(w_inf).min() < 0.9 and np.abs(w_1).min() > 0.05  # not (±1, ±1), not an axis
    for h in e.histories:
        start = vx.loss_gradient(X, y, vx.initial_weights(h.run, 2))
        end = vx.loss_gradient(X, y, h.param_norm[-1] * h.directions[-1])
        assert vx.angle(start, end) > 20.0, h.run.label


def test_fails_when_signgd_is_scored_against_the_l2_solution(four):
    assert four_points_verdict(four)
    e, X, y = four
    v = vx.own_norm_direction(vx.rows(e.histories, X, y, e.exact()), dict(OWN, SignGD="l2"))
    assert not v
    assert v.failures and all(f.startswith("SignGD") for f in v.failures)


def test_fails_when_normalized_gd_runs_under_signgd_label(four):
    assert four_points_verdict(four)
    e, X, y = four
    runs = [Run("NormalizedGD", RATES["NormalizedGD"], STEPS, schedule=0.5, model={"kind": "linear"},
                label="SignGD"),
            *(Run(o, RATES[o], STEPS, schedule=0.5, model={"kind": "linear"}) for o in ("NormalizedGD",
                                                                                       "CoordinateDescent"))]
    hs = train(runs, DATASETS["four points"](), norms=("l2",), log_points=40, progress=False)
    v = vx.own_norm_direction(vx.rows(hs, X, y, e.exact()), OWN)
    assert not v
    assert any("SignGD: nearer to the l2 solution" in f for f in v.failures)
    assert all(f.startswith("SignGD") for f in v.failures)


def test_fails_on_one_point_data_where_every_step_is_the_same_vector(four):
    """The old verdict's data: the angles pass (the direction map alone gets them right),
    only the turn check fails, for every optimizer."""
    assert four_points_verdict(four)
    e, X, y = _case("one point (2, 1) and its mirror")
    rows = vx.rows(e.histories, X, y, e.exact())
    v = vx.own_norm_direction(rows, OWN)
    assert not v
    assert len(v.failures) == 3 and all("turned only" in f for f in v.failures)
    assert vx.own_norm_direction(rows, OWN, min_turn=0.0)
