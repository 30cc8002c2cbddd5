"""Chapter 12's verdict and the pieces under it: decoupled weight decay in the steepest rule
and the hybrids, the constrained certificate, the exact ball minimizer; the verdict on its
positive controls and its mutants (the wrong ball, coupled decay)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from implicit_bias import data, kkt, maxmargin, models, norms, optim
from implicit_bias.train import Run, train
from implicit_bias.verdicts import weight_decay

LAMBDA, RADIUS = 0.5, 2.0
LINEAR = {"kind": "linear"}
DECAY = {"weight_decay": LAMBDA}
RUNS = {"NormalizedGD": ("NormalizedGD", 0.5, DECAY), "Signum": ("Signum", 0.1, DECAY),
        "CoordinateDescent": ("CoordinateDescent", 0.5, DECAY),
        "AdamW": ("AdamW", 0.1, {**DECAY, "betas": (0.9, 0.99), "eps": 1e-8}), "Lion": ("Lion", 0.1, DECAY),
        "SGD, coupled": (torch.optim.SGD, 0.5, {"weight_decay": 0.01}),
        "Adam, coupled": (torch.optim.Adam, 0.05, {"weight_decay": 0.01})}
OWN = {"NormalizedGD": "l2", "Signum": "linf", "CoordinateDescent": "l1", "AdamW": "linf", "Lion": "linf"}


@pytest.fixture(scope="module")
def linear_rows():
    """Chapter 12's linear runs at its smoke size (2 draws, 8,000 steps)."""
    rows = []
    for draw in range(2):
        X, y = data.gaussian(n=20, d=10, seed=draw)
        minimizers = {b: maxmargin.ball_minimizer(X, y, b, RADIUS) for b in ("l2", "linf", "l1")}
        runs = [Run(opt, lr, 8000, schedule=0.5, seed=draw, model=LINEAR, label=label, options=options)
                for label, (opt, lr, options) in RUNS.items()]
        with pytest.warns(RuntimeWarning):  # torch's optimizers train on the plain loss
            histories = train(runs, (X, y), norms=("l2",), progress=False)
        rows += [dict(r, draw=draw) for r in weight_decay.rows(histories, X, y, RADIUS, minimizers)]
    return rows


def _as(rows, source, name):
    return [dict(r, optimizer=name) for r in rows if r["optimizer"] == source]


def test_each_decayed_optimizer_ends_at_its_own_balls_minimizer(linear_rows):
    v = weight_decay.in_own_ball(linear_rows, OWN)
    assert v, v.failures


@pytest.mark.parametrize("label, wrong", [("AdamW", "l2"), ("Lion", "l1"), ("NormalizedGD", "linf"),
                                          ("CoordinateDescent", "l2")])
def test_the_verdict_fails_in_another_ball(linear_rows, label, wrong):
    v = weight_decay.in_own_ball(linear_rows, {label: wrong})
    assert not v and any("nearer to" in f for f in v.failures), v


@pytest.mark.parametrize("coupled, name, ball", [("SGD, coupled", "NormalizedGD", "l2"),
                                                 ("Adam, coupled", "AdamW", "linf")])
def test_the_verdict_fails_on_coupled_weight_decay(linear_rows, coupled, name, ball):
    v = weight_decay.in_own_ball(_as(linear_rows, coupled, name), {name: ball})
    assert not v and any("‖θ‖/R" in f for f in v.failures), v


def test_the_verdict_needs_the_run(linear_rows):
    assert not weight_decay.in_own_ball(linear_rows, {"Muon": "spectral"})


# --- the pieces ------------------------------------------------------------------------------


def test_decoupled_decay_in_the_steepest_rule_is_theta_minus_eta_times_u_plus_lambda_theta():
    torch.manual_seed(0)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, dtype=torch.float64)
    before = w.detach().clone()
    opt = optim.SignGD([w], lr=0.1, weight_decay=0.3)
    w.grad = g.clone()
    opt.step()
    assert torch.allclose(w.detach(), before - 0.1 * (torch.sign(g) + 0.3 * before), atol=1e-15)


@pytest.mark.parametrize("cls, kw", [(optim.NormalizedGD, {}), (optim.Signum, {}), (optim.Muon, {}),
                                     (optim.MuonSignum, {}), (optim.MuonAdam, {"lr_adam": 0.05})])
def test_every_steepest_and_hybrid_optimizer_takes_weight_decay_and_zero_changes_nothing(cls, kw):
    X, y = data.small_gaussian(n=12, d=26, seed=0)
    model = {"kind": "block_linear", "blocks": {"W": (4, 5), "u": (6,)}}
    plain, zero, decayed = train([Run(cls, 0.1, 50, model=model, options=dict(kw, **extra))
                                  for extra in ({}, {"weight_decay": 0.0}, {"weight_decay": 0.5})],
                                 (X, y), norms=(), progress=False)
    assert np.array_equal(plain.directions, zero.directions)
    assert not np.allclose(plain.directions[-1], decayed.directions[-1])


def test_both_engines_agree_with_weight_decay():
    X, y = data.gaussian(n=20, d=10, seed=1)
    net = {"kind": "two_layer", "width": 8}
    runs = [Run(name, 0.1, 200, schedule=0.5, model=net, options={"weight_decay": 0.2})
            for name in ("NormalizedGD", "Signum", "Muon", "MuonSignum")]
    fast = train(runs, (X, y), norms=("l2",), progress=False)
    loop = train(runs, (X, y), norms=("l2",), progress=False, engine="loop")
    for a, b in zip(fast, loop):
        assert np.allclose(a.directions, b.directions, atol=1e-10), a.run.label


def test_a_state_dict_from_before_weight_decay_loads_and_steps():
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = optim.Signum([w], lr=0.1)
    w.grad = torch.ones(3, dtype=torch.float64)
    opt.step()
    state = opt.state_dict()
    del state["param_groups"][0]["weight_decay"]  # as saved before the knob existed
    again = optim.Signum([w], lr=0.1)
    again.load_state_dict(state)
    w.grad = torch.ones(3, dtype=torch.float64)
    again.step()
    assert again.param_groups[0]["weight_decay"] == 0.0


def test_the_constrained_certificate_is_zero_at_the_exact_ball_minimizer_and_not_elsewhere():
    X, y = data.gaussian(n=20, d=10, seed=0)
    for ball in ("l2", "linf", "l1"):
        w = maxmargin.ball_minimizer(X, y, ball, RADIUS)
        model = models.Linear(10)
        with torch.no_grad():
            model.w.copy_(torch.as_tensor(w))
        c = kkt.constrained_certificate(model, X, y, ball, RADIUS)
        assert abs(c.gap) < 1e-3 and abs(c.norm_ratio - 1) < 1e-6, (ball, c)  # to the solver's accuracy
        other = "l2" if ball != "l2" else "linf"
        assert kkt.constrained_certificate(model, X, y, other, RADIUS).gap > 0.05 or \
            abs(kkt.constrained_certificate(model, X, y, other, RADIUS).norm_ratio - 1) > 0.05
        with torch.no_grad():
            model.w.copy_(torch.as_tensor(w) * 0.5)  # inside the ball: not a KKT point
        assert kkt.constrained_certificate(model, X, y, ball, RADIUS).gap > 0.3


def test_the_certificate_and_the_minimizer_refuse_a_bad_radius():
    X, y = data.gaussian(n=20, d=10, seed=0)
    with pytest.raises(ValueError, match="radius"):
        kkt.constrained_certificate(models.Linear(10), X, y, "l2", 0.0)
    with pytest.raises(ValueError, match="radius"):
        maxmargin.ball_minimizer(X, y, "l2", float("inf"))


def test_the_block_ball_minimizer_is_on_the_hybrid_sphere():
    X, y = data.small_gaussian(n=12, d=26, seed=0)
    blocks = {"W": (4, 5), "u": (6,)}
    model = models.BlockLinear(26, blocks)
    ball = norms.hybrid(list(model.parameters()))
    w = maxmargin.ball_minimizer(X, y, ball, RADIUS, blocks=blocks)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.as_tensor(w), model.parameters())
    c = kkt.constrained_certificate(model, X, y, ball, RADIUS)
    assert abs(c.norm_ratio - 1) < 1e-6 and abs(c.gap) < 1e-3, c  # to the SDP solver's accuracy


# --- λ → 0: the ball minimizers tend to the max-margin direction -------------------------------


@pytest.fixture(scope="module")
def toward():
    X, y = data.gaussian(n=20, d=10, seed=0)
    radii = np.geomspace(0.5, 2e4, 6)
    return (weight_decay.toward_max_margin(X, y, ("l2", "linf", "l1"), radii),
            weight_decay.toward_max_margin(X, y, ("linf", "l1"), radii, compare={"linf": "l2", "l1": "l2"}))


def test_the_ball_minimizers_approach_their_norms_max_margin_direction(toward):
    v = weight_decay.approaches_max_margin(toward[0])
    assert v, v.failures


def test_they_do_not_approach_another_norms_max_margin_direction(toward):
    v = weight_decay.approaches_max_margin(toward[1])
    assert not v and any("cos" in f for f in v.failures), v


def test_a_small_radius_is_not_the_max_margin_direction(toward):
    curves = {n: {k: c[k][:2] for k in c} for n, c in toward[0].items()}  # R ≤ 3.8 only
    assert not weight_decay.approaches_max_margin(curves)
