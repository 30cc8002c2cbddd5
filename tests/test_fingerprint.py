"""Calibration of :func:`implicit_bias.fingerprint.fingerprint`: the library's optimizers whose
limits the theorems state are named correctly and with confidence (normalized and momentum
GD → ℓ2, sign descent, Signum and Adam with ε = 0 → ℓ∞, coordinate descent → ℓ1, spectral
descent and Muon → spectral on the matrix problem), and the controls — a random-direction
optimizer and a weighted-sign mutant — are not confidently named ℓ∞ (or anything else
than what their expected step is: a random unit direction sign-flipped to descend steps, in
expectation, along −g/‖g‖₂ times E|⟨r, ĝ⟩| ≈ √(2/(πp)), so it *is* a noisy normalized
gradient descent and its limit is ℓ2; it is confident only once that slow mean drift has
beaten the noise, so it is tested as not confident at a short budget and never as
anything other than ℓ2). Also: the battery's
solutions differ and are unique where the cosine is used, the answer is deterministic for a
seed, an optimizer that takes matrices only is scored where it runs, and the cards render."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import thinned
from implicit_bias import fingerprint as fingerprints
from implicit_bias import maxmargin, optim
from implicit_bias.fingerprint import (
    RATIO_MIN,
    UNIQUE,
    RandomDirection,
    WeightedSignDescent,
    battery,
    fingerprint,
)
from implicit_bias.verdicts import fingerprint as verdicts

LINEAR = ("binary", "multiclass")

#: The calibrated optimizers, their rates and the geometry their theorem names.
CALIBRATED = {
    "NormalizedGD": (lambda p: optim.NormalizedGD(p, lr=2.0), "l2"),
    "MomentumGD": (lambda p: optim.MomentumGD(p, lr=2.0), "l2"),
    "SignGD": (lambda p: optim.SignGD(p, lr=0.5), "linf"),
    "Signum": (lambda p: optim.Signum(p, lr=0.5), "linf"),
    "Adam(eps=0)": (lambda p: optim.Adam(p, lr=0.1, betas=(0.9, 0.95), eps=0.0), "linf"),
    "CoordinateDescent": (lambda p: optim.CoordinateDescent(p, lr=2.0), "l1"),
    "SpectralDescent": (lambda p: optim.SpectralDescent(p, lr=1.0), "spectral"),
    "Muon": (lambda p: optim.Muon(p, lr=1.0), "spectral"),
}
CONTROLS = {
    "RandomDirection": lambda p: RandomDirection(p, lr=2.0),
    "WeightedSign": lambda p: WeightedSignDescent(p, lr=0.5),
}


@pytest.fixture(scope="module")
def prints():
    out = {}
    with torch.random.fork_rng(devices=[]):
        for name, (factory, _) in CALIBRATED.items():
            out[name] = fingerprint(factory, name=name, problems=LINEAR)
        for name, factory in CONTROLS.items():
            out[name] = fingerprint(factory, name=name, problems=LINEAR)
    for fp in out.values():
        print(fp)
    return out


def test_battery_solutions_differ():
    bat = battery()
    for name, bound in (("binary", 0.85), ("multiclass", 0.92)):
        cos = bat[name].solution_cosines()
        assert max(cos.values()) < bound, (name, cos)


@pytest.mark.parametrize("problem", ["binary", "multiclass"])
def test_unique_where_the_cosine_is_used(problem):
    p = battery()[problem]
    X = p.X if problem == "binary" else p.X.reshape(len(p.X), -1)
    for g in UNIQUE[problem]:
        assert maxmargin.solution_spread(X, p.y, g) < 1e-5, g


@pytest.mark.parametrize("name", list(CALIBRATED))
def test_calibrated(prints, name):
    fp, want = prints[name], CALIBRATED[name][1]
    v = verdicts.named(fp, want)  # the chapter's predicate
    assert v, f"{v}\n{fp}"


def test_weighted_sign_mutant_not_confident(prints):
    fp = prints["WeightedSign"]
    assert not fp.confident, str(fp)
    for p in fp.problems.values():
        assert not p.confident, str(fp)


def test_random_direction_is_at_most_l2(prints):
    """Its expected step is the normalized gradient's: never a geometry other than ℓ2, and
    not confident at a budget where normalized GD already is."""
    fp = prints["RandomDirection"]
    assert fp.geometry in (None, "l2"), str(fp)
    for p in fp.problems.values():
        assert p.nearest == "l2" or not p.confident, str(fp)
    # At 400 steps the random direction fails four tests on the multiclass problem (drift 2× the
    # limit); at 1,000 it would fail only the cosine, by 0.001: no margin for a control.
    short = fingerprint(CONTROLS["RandomDirection"], name="RandomDirection", problems=LINEAR, steps=400)
    ngd = fingerprint(CALIBRATED["NormalizedGD"][0], name="NormalizedGD", problems=LINEAR, steps=400)
    assert not short.confident and ngd.confident, f"{short}\n{ngd}"


def test_mutant_is_not_linf(prints):
    fp = prints["WeightedSign"]
    for p in fp.problems.values():
        assert p.margin_ratio["linf"] < RATIO_MIN, str(fp)


def test_deterministic():
    make = CALIBRATED["SignGD"][0]
    a = fingerprint(make, problems=("binary",), steps=500, seed=3)
    b = fingerprint(make, problems=("binary",), steps=500, seed=3)
    pa, pb = a.problems["binary"], b.problems["binary"]
    assert pa.cosine == pb.cosine and pa.margin_ratio == pb.margin_ratio
    assert np.array_equal(pa.history.directions, pb.history.directions)
    c = fingerprint(lambda p: RandomDirection(p, lr=2.0), problems=("binary",), steps=300, seed=1)
    d = fingerprint(lambda p: RandomDirection(p, lr=2.0), problems=("binary",), steps=300, seed=1)
    assert c.problems["binary"].cosine == d.problems["binary"].cosine


def test_regime_flags_of_a_thinned_history_read_the_kept_directions():
    """With ``train(directions=5)`` the drift is measured from the first kept direction of
    the last half, and the growth over the same steps."""
    full = fingerprint(CALIBRATED["SignGD"][0], problems=("binary",), steps=500).problems["binary"].history
    thin = thinned(full, 5)
    half = thin.direction_grid[thin.direction_grid >= full.steps[-1] / 2][0]
    i = list(full.steps).index(half)
    drift, growth = fingerprints._regime(thin, framed=True)[:2]
    assert drift == pytest.approx(1 - full.directions[-1] @ full.directions[i])
    assert growth == pytest.approx(full.param_norm[-1] / full.param_norm[i] - 1)


def test_matrix_only_optimizer_and_cards():
    """torch.optim.Muon takes 2-D parameters only: the binary and network problems report
    its error, the multiclass one is scored; the text and figure cards render."""
    fp = fingerprint(lambda p: torch.optim.Muon(p, lr=0.05), name="torch Muon", steps=300)
    assert fp.problems["binary"].error and fp.problems["network"].error
    assert fp.problems["multiclass"].applicable
    assert "no result" in str(fp)
    fig = fp.figure()
    assert len(fig.axes) == 1


def test_network_problem_scored():
    fp = fingerprint(CALIBRATED["NormalizedGD"][0], problems=("network",), steps=400)
    net = fp.problems["network"]
    assert set(net.epsilon) == {"l2", "linf", "spectral"}
    assert net.margin_ratio["l2"] > 0 and not net.confident
    assert fp.geometry is None and not fp.confident
