"""Every optimizer against the frozen oracle of version 0.3.0 (``tests/oracle_v030``): the
rules-based optimizers must follow the same trajectories to 1e-10 in float64, under a
framed loss too. New optimizers (AdamW, Lion) against torch.optim or their definition."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from helpers import F64, logistic_loss, rel_err
from implicit_bias import models, optim, rules
from oracle_v030 import optim as oracle

#: (name, options) for every optimizer the oracle has (TorchMuon is torch's own).
CASES = [
    ("NormalizedGD", {}), ("NormalizedGD", {"momentum": 0.5}), ("MomentumGD", {}),
    ("MomentumGD", {"normalized": False}), ("SignGD", {}), ("Signum", {}),
    ("CoordinateDescent", {}), ("SpectralDescent", {}), ("Muon", {}),
    ("Muon", {"polar": "newton_schulz"}),  # Adam at the oracle's defaults:
    ("Adam", {"betas": (0.9, 0.99), "eps": 0.0}), ("Adam", {"betas": (0.9, 0.99), "eps": 1e-3}),
    ("RMSProp", {}), ("AdaGrad", {}), ("MuonSignum", {"lr_signum": 0.05}),
    ("MuonAdam", {"lr_adam": 0.05, "betas": (0.8, 0.9)}),
]


def _trajectory(make, data, steps=40, rescale_every=7):
    X, y = data
    model = models.TwoLayer(X.shape[1], 6, activation="relu2", seed=1)
    opt = make(list(model.parameters()))
    scale = 1.0
    for t in range(steps):
        opt.zero_grad()
        logistic_loss(model, X, y, scale).backward()
        opt.step()
        if rescale_every and t % rescale_every == 3:  # a framed loss: gradients grow by e^3
            opt.rescale_gradients(math.exp(3.0))
            scale *= math.exp(3.0)
    return model


@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}{o}" for n, o in CASES])
def test_every_optimizer_equals_the_frozen_oracle(name, options, small_data):
    new = _trajectory(lambda ps: optim.make(name, ps, 0.1, **options), small_data)
    old = _trajectory(lambda ps: oracle.make(name, ps, 0.1, **options), small_data)
    assert rel_err(new, old) < 1e-10


def test_unnormalized_steepest_descent_scales_by_the_dual_norm(small_data):
    # ‖g‖_* u for ℓ∞ is ‖g‖₁ sign(g), as in the oracle (an engine once used ‖g‖₂).
    def steepest(module):
        return lambda ps: module.SteepestDescent(ps, module.Linf(), 1e-3, normalized=False)

    new, old = _trajectory(steepest(optim), small_data), _trajectory(steepest(oracle), small_data)
    assert rel_err(new, old) < 1e-10


def test_adamw_equals_torch(small_data):
    ours, torchs = optim.AdamW, torch.optim.AdamW
    new = _trajectory(lambda ps: ours(ps, 0.01, weight_decay=0.1), small_data, rescale_every=None)
    ref = _trajectory(lambda ps: torchs(ps, 0.01, weight_decay=0.1), small_data, rescale_every=None)
    assert rel_err(new, ref) < 1e-10


def test_lion_follows_its_definition():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5, dtype=F64))
    opt = optim.Lion([p], lr=0.1, betas=(0.8, 0.95), weight_decay=0.2)
    theta, m = p.detach().clone(), torch.zeros(5, dtype=F64)
    for _ in range(4):
        g = torch.randn(5, dtype=F64)
        p.grad = g.clone()
        opt.step()
        theta = theta - 0.1 * (torch.sign(0.8 * m + 0.2 * g) + 0.2 * theta)
        m = 0.95 * m + 0.05 * g
        torch.testing.assert_close(p.detach(), theta, rtol=0, atol=1e-14)
        torch.testing.assert_close(opt.state[p]["exp_avg"], m, rtol=0, atol=1e-14)


def test_every_rule_declares_the_order_of_its_state():
    for rule in rules.RULES.values():
        assert all(order in (0, 1, 2) for order in rule.state.values()), rule.name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_state_stays_finite_in_its_dtype_however_far_the_frame_moves(dtype):
    """float32 overflows near e^88: a second moment rescaled by a frame move of 60 (a factor
    e^120) keeps its factor as a log, and Adam's direction equals float64's to rounding."""
    g = torch.tensor([[0.3, -2.0, 0.5]], dtype=torch.float64)
    rule, hyper = rules.get("adam"), {"betas": (0.9, 0.99), "eps": 0.0, "frame": 0.0}
    state = rule.update([g], {}, hyper, [1], [g]).state
    state = {k: rules.Entry([x.to(dtype) for x in e.tensors]) for k, e in state.items()}
    moved = rules.rescale(rule, state, 60.0)
    assert all(torch.isfinite(x).all() for e in moved.values() for x in e.tensors)
    assert rules.fold_limit(torch.float64) == rules.FOLD and rules.fold_limit(torch.float32) < 88
    # the next gradient, in the new frame's units (of order 1 again)
    u = rule.update([g.to(dtype)], moved, {**hyper, "frame": 60.0}, [2], [g.to(dtype)])
    wide = {k: rules.Entry([x.double() for x in e.tensors]) for k, e in state.items()}
    ref = rule.update([g], rules.rescale(rule, wide, 60.0), {**hyper, "frame": 60.0}, [2], [g])
    assert torch.isfinite(u.directions[0]).all()
    assert rel_err(u.directions[0].double(), ref.directions[0]) < (1e-5 if dtype == torch.float32 else 1e-12)


# --- a new optimizer is one rule: ClippedAdam (rules.adam_clip), its class generated ---------


def test_a_rule_that_names_an_optimizer_gets_its_class_with_the_rules_knobs():
    """``rules.adam_clip`` declares a hyperparameter no other rule has (``clip``); optim
    generates ``ClippedAdam`` from it: its signature, defaults and checks are the rule's."""
    rule = rules.get("adam_clip")
    assert optim.OPTIMIZERS["ClippedAdam"] is optim.ClippedAdam and rule.optimizer == "ClippedAdam"
    params = inspect.signature(optim.ClippedAdam).parameters
    defaults = {k: knob.default for k, knob in rule.knobs.items()}
    assert {k: params[k].default for k in ("betas", "eps", "clip")} == defaults
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    assert optim.ClippedAdam([p], 0.1).param_groups[0]["clip"] == 1.0
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="clip must be a finite number > 0"):
            optim.ClippedAdam([p], 0.1, clip=bad)
    with pytest.raises(TypeError, match=r"unknown hyperparameters \['rho'\]"):
        optim.ClippedAdam([p], 0.1, rho=0.1)


def test_clipped_adam_is_adam_until_a_step_exceeds_its_clip():
    """The positive control: with a clip no step reaches it equals Adam to the bit; the
    mutant: a small clip changes the steps, each coordinate's to at most ``clip``."""
    torch.manual_seed(0)
    grads = [torch.randn(5, dtype=torch.float64) for _ in range(4)]

    def run(make):
        p = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
        opt, moves = make([p]), []
        for g in grads:
            before = p.detach().clone()
            p.grad = g.clone()
            opt.step()
            moves.append((p.detach() - before).abs().max().item())
        return p.detach(), moves

    adam, _ = run(lambda ps: optim.Adam(ps, 0.1, betas=(0.9, 0.999), eps=1e-8))
    wide, _ = run(lambda ps: optim.ClippedAdam(ps, 0.1, clip=100.0))
    tight, moves = run(lambda ps: optim.ClippedAdam(ps, 0.1, clip=0.2))
    assert torch.equal(adam, wide)
    assert not torch.allclose(adam, tight) and max(moves) <= 0.1 * 0.2 + 1e-15

