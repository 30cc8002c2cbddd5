"""Chapter 11's verdicts pass on small runs of the chapter's kind and fail on mutants.

* ``smoothed_margin_rises`` (Lyu & Li, plain GD): passes on a constant-rate GD run of a
  five-class two-layer net on digit pairs; fails on normalized GD with η_t = t^-0.5 (the
  chapter's uncovered comparison: its smoothed margin falls by 6% once), and on the GD
  run stopped before its loss crosses ℓ(0).
* ``rmsprop_regime`` (Wang et al.): passes on RMSProp and AdaGrad with ε = 1e-3; fails with
  the two runs' labels swapped, and on RMSProp with ε = 1e-8 (still sign-like at the end).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import one_thread
from implicit_bias import data, models
from implicit_bias.train import Run, adaptive_scales, train
from implicit_bias.verdicts import beyond


def train1(*args, **kwargs):
    with one_thread():
        return train(*args, progress=False, **kwargs)


@pytest.fixture(scope="module")
def pairs():
    X, labels = data.digits_classes(n=30, num_classes=5)
    return data.class_pairs(X, labels, 5)


def net():
    return models.pairwise_factory(models.TwoLayerMulticlass, d=64, width=8, num_classes=5)


def gd(steps):
    return Run("MomentumGD", 1e-3, steps, seed=0, model=net(), loss="exponential",
               options=dict(momentum=0.0, normalized=False), label="GD")


@pytest.fixture(scope="module")
def gd_runs(pairs):
    """GD and, as the mutant, normalized GD at η_t = t^-0.5 (no theorem says its smoothed
    margin never falls), logged at every step."""
    ngd = Run("NormalizedGD", 1.0, 600, schedule=0.5, seed=0, model=net(), loss="exponential", label="NGD")
    return train1([gd(600), ngd], pairs, norms=("l2",), log_points=6000, directions=2)


def test_gd_smoothed_margin_rises(gd_runs):
    v = beyond.smoothed_margin_rises(beyond.curves_of(gd_runs[:1]))
    assert v, v.failures


def test_mutant_normalized_gd_fails(gd_runs):
    assert beyond.smoothed_margin_rises(beyond.curves_of(gd_runs[:1]))
    v = beyond.smoothed_margin_rises(beyond.curves_of(gd_runs[1:]))
    assert not v and any("falls by" in f for f in v.failures)


def test_mutant_run_stopped_before_threshold_fails(pairs, gd_runs):
    assert beyond.smoothed_margin_rises(beyond.curves_of(gd_runs[:1]))
    (h,) = train1([gd(40)], pairs, norms=("l2",))
    assert h.log_loss[-1] > beyond.loss_threshold("exponential")
    v = beyond.smoothed_margin_rises(beyond.curves_of([h]))
    assert not v and "never fell below" in v.failures[0]


def test_smoothed_margins_match_margins_module(gd_runs, pairs):
    from implicit_bias import margins

    Z, ones = pairs
    value = margins.smoothed_margin(gd_runs[0].model, Z, ones, "l2", loss="exponential")
    assert beyond.smoothed_margins(gd_runs[0])[-1] == pytest.approx(value, rel=1e-9)


@pytest.fixture(scope="module")
def adaptive(pairs):
    runs = [Run("RMSProp", 3e-3, 3000, seed=0, model=net(), options=dict(eps=1e-3)),
            Run("AdaGrad", 1e-2, 3000, seed=0, model=net(), options=dict(eps=1e-3)),
            Run("RMSProp", 3e-3, 3000, seed=0, model=net(), options=dict(eps=1e-8), label="RMSProp tiny ε")]
    hs = train1(runs, pairs, norms=("l2",), observe=adaptive_scales)
    return [{"label": h.run.label, "seed": h.run.seed,
             "spread": beyond.conditioner_spread(h.observed["log10_root_v_max"][-1],
                                                 h.observed["log10_root_v_min"][-1], h.run.options["eps"])}
            for h in hs]


def test_rmsprop_regime_passes(adaptive):
    v = beyond.rmsprop_regime(adaptive[:2])
    assert v, v.failures


def test_mutant_swapped_labels_fails(adaptive):
    assert beyond.rmsprop_regime(adaptive[:2])
    swapped = [dict(r, label={"RMSProp": "AdaGrad", "AdaGrad": "RMSProp"}[r["label"]]) for r in adaptive[:2]]
    assert not beyond.rmsprop_regime(swapped)


def test_mutant_rmsprop_tiny_eps_fails(adaptive):
    assert beyond.rmsprop_regime(adaptive[:2])
    tiny = dict(adaptive[2], label="RMSProp")
    v = beyond.rmsprop_regime([tiny, adaptive[1]])
    assert not v and "RMSProp's conditioner spread" in v.failures[0]


def test_conditioner_spread():
    assert beyond.conditioner_spread(-np.inf, -np.inf, 1e-3) == pytest.approx(1.0)
    assert beyond.conditioner_spread(0.0, -np.inf, 1.0) == pytest.approx(2.0)
