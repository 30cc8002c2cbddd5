"""Chapter 2's verdicts pass on the chapter's runs (at a tiny size) and fail on mutants:
SignGD's run scored as NormalizedGD's, a random separating direction in place of a trained
one, and on the network NormalizedGD at SignGD's rate or MomentumGD at a sign step's length
in place of SignGD, or SignGD's and NormalizedGD's runs swapped (raw and function-level
margins)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from implicit_bias import data, max_margin, maxmargin, symmetry, verdicts
from implicit_bias.train import Run, train
from implicit_bias.verdicts import steepest

LINEAR_OWN = {"NormalizedGD": "l2", "SignGD": "linf", "CoordinateDescent": "l1"}
LINEAR_RATES = {"NormalizedGD": 10.0, "SignGD": 3.0, "CoordinateDescent": 10.0}
NET_OWN = {"NormalizedGD": "l2", "SignGD": "linf", "SpectralDescent": "spectral"}
NET_RATES = {"NormalizedGD": 1.0, "SignGD": 0.005, "SpectralDescent": 0.05}


def train1(*args, **kwargs):
    """``train`` on one thread: these runs are tiny, and two threads on busy cores cost
    several times the CPU time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(*args, progress=False, **kwargs)
    finally:
        torch.set_num_threads(threads)


def random_separating_direction(X, y, seed=0, moves=200):
    """A random direction that separates the data: hit-and-run inside the cone
    ``{w : y_i x_i·w > 0}`` ∩ unit ball, started at the ℓ2 solution (so it is a real sample
    of the separating directions, not one tuned to fail)."""
    rng = np.random.default_rng(seed)
    Z = y.numpy()[:, None] * X.numpy()
    w = max_margin(X, y, "l2").direction * 0.5
    for _ in range(moves):
        d = rng.standard_normal(len(w))
        d /= np.linalg.norm(d)
        zd, zw = Z @ d, Z @ w
        # Z(w + t d) ≥ 0 and ‖w + t d‖ ≤ 1 bound t to an interval around 0.
        hi = min([-a / b for a, b in zip(zw, zd) if b < 0] + [-(w @ d) + math.sqrt((w @ d) ** 2 - w @ w + 1)])
        lo = max([-a / b for a, b in zip(zw, zd) if b > 0] + [-(w @ d) - math.sqrt((w @ d) ** 2 - w @ w + 1)])
        w = w + rng.uniform(lo, hi) * d
    assert (Z @ w).min() > 0
    return w


@pytest.fixture(scope="module")
def linear_case():
    X, y = data.gaussian(n=40, d=8, seed=0)
    solutions = {n: max_margin(X, y, n) for n in LINEAR_OWN.values()}
    spreads = {n: maxmargin.solution_spread(X, y, n) for n in LINEAR_OWN.values()}
    runs = [Run(opt, LINEAR_RATES[opt], 1000, schedule=0.7, model={"kind": "linear"}) for opt in LINEAR_OWN]
    hs = train1(runs, (X, y), norms=("l2",))
    return X, y, solutions, spreads, {h.run.label: h.directions[-1] for h in hs}


def _linear_verdict(case, directions):
    X, y, solutions, spreads, _ = case
    return steepest.linear(steepest.linear_rows(directions, LINEAR_OWN, solutions, X, y), spreads)


def test_linear_passes_on_the_trained_directions(linear_case):
    v = _linear_verdict(linear_case, linear_case[-1])
    assert v, v.failures


def test_linear_fails_when_signgd_is_scored_as_normalized_gd(linear_case):
    assert _linear_verdict(linear_case, linear_case[-1])
    mutant = dict(linear_case[-1], NormalizedGD=linear_case[-1]["SignGD"])
    v = _linear_verdict(linear_case, mutant)
    assert not v
    assert any(f.startswith("NormalizedGD") for f in v.failures)


def test_linear_fails_on_a_random_separating_direction(linear_case):
    X, y = linear_case[:2]
    assert _linear_verdict(linear_case, linear_case[-1])
    for opt in LINEAR_OWN:
        mutant = dict(linear_case[-1], **{opt: random_separating_direction(X, y, seed=1)})
        v = _linear_verdict(linear_case, mutant)
        assert not v, opt
        assert all(f.startswith(opt) for f in v.failures)


def test_linear_margin_fallback_when_the_solution_is_not_unique(linear_case):
    """With the spread declared large, the check is the margin: SignGD's direction still
    passes for ℓ∞, NormalizedGD's does not (its ℓ∞ margin is 91.9% of the maximum)."""
    X, y, solutions, spreads, dirs = linear_case
    loose = dict(spreads, linf=1.0)  # at 1,000 steps SignGD has 97.0% of the ℓ∞ maximum
    rows = steepest.linear_rows({"SignGD": dirs["SignGD"]}, LINEAR_OWN, solutions, X, y)
    assert steepest.linear(rows, loose, margin_min=0.94)
    rows = steepest.linear_rows({"SignGD": dirs["NormalizedGD"]}, LINEAR_OWN, solutions, X, y)
    assert not steepest.linear(rows, loose, margin_min=0.94)


@pytest.fixture(scope="module")
def net_case():
    """Chapter 2's three optimizers on 60 digits, width 16, 1,500 steps, and three mutants:
    MomentumGD at the ℓ2 length of a sign step (0.005·√p), labelled "mutant", NormalizedGD
    at SignGD's rate 0.005, and MomentumGD at normalized GD's rate (ℓ2 steepest descent
    with momentum: it separates the data, in the wrong geometry). Rows carry the
    function-level margins (layer-wise rescaling) beside the raw ones."""
    X, y = data.digits_even_odd(n=60)
    net = {"kind": "two_layer", "width": 16, "activation": "relu2"}
    p = (X.shape[1] + 1) * 16
    runs = [Run(opt, NET_RATES[opt], 1500, schedule=0.5, model=net) for opt in NET_OWN]
    runs.append(Run("MomentumGD", 0.005 * math.sqrt(p), 1500, schedule=0.5, model=net, label="mutant"))
    runs.append(Run("NormalizedGD", 0.005, 1500, schedule=0.5, model=net, label="NGD at the sign rate"))
    runs.append(Run("MomentumGD", NET_RATES["NormalizedGD"], 1500, schedule=0.5, model=net))
    hs = train1(runs, (X, y), norms=tuple(NET_OWN.values()))
    return symmetry.summary(hs, X, y, tuple(NET_OWN.values()), group="layer")


RAW = {"function-level": None, "raw": lambda n: f"{n} raw"}


def _as_signgd(rows, mutant):
    """The chapter's rows with the run labelled ``mutant`` in SignGD's place."""
    return [dict(r, label="SignGD") if r["label"] == mutant else r for r in rows
            if r["label"] in NET_OWN and r["label"] != "SignGD" or r["label"] == mutant]


def _chapter_rows(rows):
    return [r for r in rows if r["label"] in NET_OWN]


@pytest.mark.parametrize("margins", RAW)
def test_network_passes_on_the_chapter_optimizers(net_case, margins):
    v = verdicts.own_norm_wins(_chapter_rows(net_case), NET_OWN, key=RAW[margins])
    assert v, v.failures


@pytest.mark.parametrize("margins", RAW)
def test_network_fails_with_a_wrong_optimizer_in_place_of_signgd(net_case, margins):
    """MomentumGD at normalized GD's rate separates the data in the ℓ2 geometry: its ℓ∞
    margin, raw and function-level, is below SpectralDescent's. NormalizedGD at SignGD's
    rate never gets far enough to separate the data. MomentumGD at the ℓ2 length of a sign
    step separates, but only its raw ℓ∞ margin loses: its function-level one edges
    SpectralDescent's by 3% at this tiny size (3.8 against 4.4 at the chapter's smoke size),
    so it is a mutant of the raw margins only."""
    assert verdicts.own_norm_wins(_chapter_rows(net_case), NET_OWN, key=RAW[margins])
    separating = {r["label"]: r["l2"] > 0 for r in net_case}
    assert separating["MomentumGD"] and separating["mutant"]
    mutants = ["MomentumGD", "NGD at the sign rate"] + (["mutant"] if margins == "raw" else [])
    for mutant in mutants:
        v = verdicts.own_norm_wins(_as_signgd(net_case, mutant), NET_OWN, key=RAW[margins])
        assert not v, mutant
        assert any("SignGD" in f for f in v.failures)


@pytest.mark.parametrize("margins", RAW)
def test_network_fails_when_signgd_is_scored_as_normalized_gd(net_case, margins):
    assert verdicts.own_norm_wins(_chapter_rows(net_case), NET_OWN, key=RAW[margins])
    swap = {"SignGD": "NormalizedGD", "NormalizedGD": "SignGD"}
    rows = [dict(r, label=swap.get(r["label"], r["label"])) for r in _chapter_rows(net_case)]
    assert not verdicts.own_norm_wins(rows, NET_OWN, key=RAW[margins])
