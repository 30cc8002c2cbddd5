"""Regime monitors: Adam's forgetting rate, the step-ratio deficit predicted from the loss,
the measured step ratio, and the warning `train` gives."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from implicit_bias import data, optim, regime, rules
from implicit_bias.train import History, Run, train


def _history(run, steps, log_loss):
    n = len(steps)
    return History(run=run, steps=np.asarray(steps), log_loss=np.asarray(log_loss, dtype=float), margins={},
                   param_norm=np.ones(n), directions=np.ones((n, 1)), model=None, seconds=0.0)


def test_forget_rate():
    assert regime.forget_rate(0.95) == pytest.approx(0.5 * math.log(1 / 0.95))
    with pytest.raises(ValueError):
        regime.forget_rate(1.0)


def test_deficit_grows_only_while_the_loss_falls_faster_than_the_memory_forgets():
    run = Run("Adam", 0.1, 1000, options={"betas": (0.9, 0.95)})
    rate = regime.forget_rate(0.95)
    steps = np.arange(1, 1001, 10)
    slow = _history(run, steps, -0.5 * rate * steps)  # falls at half the rate: no deficit
    fast = _history(run, steps, -3.0 * rate * steps)  # three times: deficit 2·rate per step
    assert regime.ratio_deficit(slow, 0.95)[1].max() == 0.0
    assert regime.ratio_deficit(fast, 0.95)[1][-1] == pytest.approx(2 * rate * (steps[-1] - steps[0]))
    assert regime.check(slow) is None
    assert "left Adam's regime" in regime.check(fast)
    assert regime.check(_history(Run("Signum", 0.1, 1000), steps, -3.0 * rate * steps)) is None


@pytest.fixture(scope="module")
def muon_adam_runs():
    X, y = data.digits_even_odd(n=200)
    X = X[:, X.abs().sum(0) > 0]
    net = {"kind": "two_layer", "width": 8, "activation": "relu2"}
    runs = [Run("MuonAdam", 0.5, 1500, schedule=0.8, model=net, label=f"β={b}",
                options={"lr_adam": 0.5, "betas": (b, b2), "eps": 0.0})
            for b, b2 in ((0.9, 0.95), (0.5, 0.5))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hs = train(runs, (X, y), norms=(), progress=False, observe=regime.step_ratio)
    return hs, [str(w.message) for w in caught]


def test_train_warns_when_muon_adam_leaves_its_regime_and_the_ratio_collapses(muon_adam_runs):
    (out, inside), messages = muon_adam_runs
    left = [m for m in messages if "left Adam's regime" in m]
    assert len(left) == 1 and "β=0.9" in left[0], left
    # the measured median |m̂|/√v̂ on the output weights agrees with the prediction
    assert out.observed["step ratio a"][-1] < 1e-6
    assert inside.observed["step ratio a"][-1] > 1e-2


def test_step_ratio_ignores_groups_without_adam():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = regime.step_ratio(model, opt, 0.0)  # no parameter's ratio; the pooled ones NaN
    assert set(out) == {"step ratio median", "step ratio max", "live fraction"}
    assert all(math.isnan(v) for v in out.values())


def test_warn_skips_failed_runs():
    from implicit_bias.train import RunFailed

    regime.warn([RunFailed(Run("Adam", 0.1, 10), "diverged")])  # no AttributeError


def test_step_ratio_reads_the_moments_each_rule_declares():
    """The step ratio asks the rule for its moments (rules.Moment): ours and torch's Adam
    give the same ratios; RMSProp (a second moment only) and Signum have none."""
    torch.manual_seed(0)
    X, y = torch.randn(8, 3, dtype=torch.float64), torch.tensor([1.0, -1.0] * 4, dtype=torch.float64)
    ratios = {}
    for label, make in {"ours": lambda ps: optim.Adam(ps, 0.1, betas=(0.8, 0.9)),
                        "torch": lambda ps: torch.optim.Adam(ps, 0.1, betas=(0.8, 0.9)),
                        "rmsprop": lambda ps: optim.RMSProp(ps, 0.1),
                        "signum": lambda ps: optim.Signum(ps, 0.1, momentum=0.5)}.items():
        model = torch.nn.Linear(3, 1, bias=False).double()
        with torch.no_grad():
            model.weight.copy_(torch.tensor([[0.5, -0.2, 0.1]]))
        opt = make(list(model.parameters()))
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.softplus(-y * model(X).squeeze(1)).mean().backward()
            opt.step()
        ratios[label] = regime.live_step_ratios(model, opt)
    torch.testing.assert_close(ratios["ours"]["weight"][0], ratios["torch"]["weight"][0], rtol=1e-12, atol=0)
    assert 0 < float(ratios["ours"]["weight"][0].max()) <= 1.5
    assert ratios["rmsprop"] == {} and ratios["signum"] == {}


def test_a_rule_must_keep_the_moments_it_declares():
    with pytest.raises(ValueError, match="not in its state"):
        rules.register("bad_moments", state={"m": 1}, moments={"second": rules.Moment("v")})(lambda *a: None)
    assert "bad_moments" not in rules.RULES


def test_adam_beta2_is_the_optimizers_own_default():
    assert regime.adam_beta2(Run("Adam", 0.1, 10)) == 0.999  # torch's default
    assert regime.adam_beta2(Run("MuonAdam", 0.1, 10)) == 0.99
    assert regime.adam_beta2(Run("Adam", 0.1, 10, options={"betas": (0.9, 0.95)})) == 0.95
