"""Chapter 5's verdicts pass on the chapter's runs (at a tiny size) and fail on mutants:
normalized GD in place of Adam, Adam with PyTorch's default β2 = 0.999 (outside the
regime of the ε = 0 theorem), a sweep whose ε labels are shuffled, Adam with ε = 0 in place
of RMSProp with ε, RMSProp in place of AdaGrad, β1² < β2 in place of β1² > β2, and
``torch.optim.Adam`` (ε = 0, which divides 0 by 0) in place of the library's Adam."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from helpers import one_thread, thinned
from implicit_bias import data, max_margin, maxmargin, models, regime, symmetry
from implicit_bias.train import Run, train
from implicit_bias.verdicts import adam

LIN = {"kind": "linear"}
BETAS = (0.9, 0.95)
EPS = (0.0, 1e-20, 1e-12, 1e-8, 1e-4, 1e-2)
EPS_NET = (0.0, 1e-8, 1e-4, 1e-2)
NET = {"kind": "two_layer", "width": 16, "activation": "relu2"}


def train1(*args, **kwargs):
    """``train`` on one thread (tiny runs; two threads on busy cores cost several times
    the CPU time), with the ε = 0 dead-coordinate and the regime warnings silenced."""
    with one_thread(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="eps = 0 and some coordinate")
        warnings.filterwarnings("ignore", message=".*left Adam's regime")  # the mutants do
        return train(*args, progress=False, **kwargs)


def adam_run(steps, eps=0.0, betas=BETAS, lr=1.0, label=None, model=LIN, schedule=0.5):
    return Run("Adam", lr, steps, schedule=schedule, model=model, options={"betas": betas, "eps": eps},
               label=label or f"Adam ε={eps:g}")


# --- linear data -------------------------------------------------------------------


@pytest.fixture(scope="module")
def linear_case():
    """Chapter 5's linear runs at the smoke size (1,500 steps): the ε sweep, normalized GD,
    and the mutants Adam β2 = 0.999 and Adam at ten times the rate."""
    X, y = data.gaussian(n=40, d=8, seed=0)
    sol = {n: max_margin(X, y, n) for n in ("l2", "linf")}
    unit = {n: s.direction / np.linalg.norm(s.direction) for n, s in sol.items()}
    runs = [adam_run(1500, eps) for eps in EPS]
    runs += [Run("NormalizedGD", 10.0, 1500, schedule=0.7, model=LIN),
             adam_run(1500, betas=(0.9, 0.999), label="Adam β2=0.999"),
             adam_run(1500, lr=10.0, label="Adam η0=10")]
    hs = train1(runs, (X, y), norms=("l2", "linf"), observe=adam.scales)
    return {"X": X, "y": y, "sol": sol, "unit": unit, "spread": maxmargin.solution_spread(X, y, "linf"),
            "sweep": hs[:len(EPS)], **{h.run.label: h for h in hs[len(EPS):]}}


def linear_verdict(c, adam_run):
    """``adam.linear`` with ``adam_run`` in the ε = 0 Adam run's place."""
    return adam.linear(adam_run, c["NormalizedGD"], c["unit"], c["spread"])


def test_linear_passes_for_adam_with_eps_zero(linear_case):
    v = linear_verdict(linear_case, linear_case["sweep"][0])
    assert v, v.failures


@pytest.mark.parametrize("mutant", ["NormalizedGD", "Adam ε=0.01"])
def test_linear_fails_with_an_l2_method_in_place_of_adam(linear_case, mutant):
    """Normalized GD, and Adam with ε = 1e-2, which hands over to gradient descent (chapter
    5's sweep) and ends nearer the ℓ2 solution: both in Adam's place."""
    c = linear_case
    assert linear_verdict(c, c["sweep"][0])
    h = c["NormalizedGD"] if mutant == "NormalizedGD" else c["sweep"][EPS.index(1e-2)]
    v = linear_verdict(c, h)
    assert not v
    assert any("cosine" in f and "linf" in f or "closer to the l2" in f for f in v.failures)


@pytest.fixture(scope="module")
def linear_seeds(linear_case):
    """The chapter's form: Adam (ε = 0) and normalized GD on training seeds 0, 1, 2 (seed 0
    from ``linear_case``; seeds 1 and 2 in one batched call)."""
    c = linear_case
    runs = [Run("Adam", 1.0, 1500, schedule=0.5, seed=s, model=LIN, options={"betas": BETAS, "eps": 0.0},
                label="Adam ε=0") for s in (1, 2)]
    runs += [Run("NormalizedGD", 10.0, 1500, schedule=0.7, seed=s, model=LIN) for s in (1, 2)]
    hs = train1(runs, (c["X"], c["y"]), norms=("l2", "linf"), observe=adam.scales)
    return [c["sweep"][0], *hs[:2]], [c["NormalizedGD"], *hs[2:]]


def test_linear_passes_on_three_seeds(linear_case, linear_seeds):
    adams, ngds = linear_seeds
    assert [h.run.seed for h in adams] == [0, 1, 2] == [h.run.seed for h in ngds]
    v = adam.linear(adams, ngds, linear_case["unit"], linear_case["spread"])
    assert v, v.failures


def test_linear_fails_when_one_seed_is_an_l2_method(linear_case, linear_seeds):
    """Mutant: Adam with ε = 1e-2 (which hands over to gradient descent) in place of one of the
    three Adam seeds: the verdict requires the claim on every seed, not on most."""
    c = linear_case
    adams, ngds = linear_seeds
    assert adam.linear(adams, ngds, c["unit"], c["spread"])
    v = adam.linear([*adams[:2], c["sweep"][EPS.index(1e-2)]], ngds, c["unit"], c["spread"])
    assert not v
    assert any("cosine" in f and "linf" in f or "closer to the l2" in f for f in v.failures)


@pytest.mark.parametrize("mutant", ["Adam β2=0.999", "Adam η0=10"])
def test_linear_fails_outside_adams_regime(linear_case, mutant):
    """β2 = 0.999 forgets at 0.0005 per step while log L falls ~0.004 per step; η0 = 10 makes
    the loss fall at the forget rate itself. Either way √v̂ cannot forget, the step ratio
    collapses, and the run ends near the ℓ2 direction instead."""
    c = linear_case
    assert adam.regime(c["sweep"][0]) and linear_verdict(c, c["sweep"][0])
    h = c[mutant]
    assert not adam.regime(h)
    v = linear_verdict(c, h)
    assert not v
    assert any("step ratio" in f for f in v.failures)


def test_regime_needs_an_adam_run(linear_case):
    assert adam.regime(linear_case["sweep"][0])
    v = adam.regime(linear_case["NormalizedGD"])
    assert not v and "no Adam step ratio" in v.failures[0]


def test_eps_sweep_linear_passes(linear_case):
    v = adam.eps_sweep_linear(linear_case["sweep"], EPS, linear_case["unit"])
    assert v, v.failures


def test_eps_sweep_linear_fails_with_shuffled_eps(linear_case):
    assert adam.eps_sweep_linear(linear_case["sweep"], EPS, linear_case["unit"])
    perm = np.random.default_rng(0).permutation(len(EPS))
    v = adam.eps_sweep_linear(linear_case["sweep"], [EPS[i] for i in perm], linear_case["unit"])
    assert not v


def test_eps_sweep_linear_fails_with_the_two_largest_eps_swapped(linear_case):
    assert adam.eps_sweep_linear(linear_case["sweep"], EPS, linear_case["unit"])
    eps = (*EPS[:-2], EPS[-1], EPS[-2])
    assert not adam.eps_sweep_linear(linear_case["sweep"], eps, linear_case["unit"])


def test_eps_sweep_linear_fails_when_its_eps_zero_run_leaves_the_regime(linear_case):
    sweep = [linear_case["Adam β2=0.999"], *linear_case["sweep"][1:]]
    v = adam.eps_sweep_linear(sweep, EPS, linear_case["unit"])
    assert not v


def test_eps_sweep_linear_on_thinned_histories(linear_case):
    """``train(directions=20)`` keeps 20 of the ~60 logged directions: the hand-over's
    cosine is read at the first kept direction at or after it, and the verdict still holds."""
    c = linear_case
    thin = [thinned(h, 20) for h in c["sweep"]]
    for h, t, row in zip(c["sweep"], thin, adam.linear_sweep_rows(thin, EPS, c["unit"], c["sol"])):
        k = adam.handover(h, row["ε"])
        if k is None:
            continue
        kept = t.direction_grid[t.direction_grid >= h.steps[k]][0]
        want = h.directions[h.direction_row(kept)] @ c["unit"]["l2"]
        assert row["cos ℓ2 at hand-over"] == pytest.approx(want, rel=1e-12)
    v = adam.eps_sweep_linear(thin, EPS, c["unit"])
    assert v, v.failures


# --- RMSProp, AdaGrad --------------------------------------------------------------


@pytest.fixture(scope="module")
def preconditioned_case():
    scales = torch.tensor(np.geomspace(0.2, 5.0, 20))
    X, y = data.gaussian(n=40, d=20, seed=0)
    X = X * scales
    runs = [Run("RMSProp", 0.1, 1500, model=LIN, options={"eps": 1e-2, "beta2": 0.95}),
            Run("AdaGrad", 1.0, 1500, model=LIN, options={"eps": 1e-10}),
            adam_run(1500, label="Adam")]
    rms, ada, adam0 = train1(runs, (X, y), norms=("l2", "linf"), observe=adam.conditioner)
    return X, y, rms, ada, adam0


def test_preconditioned_passes(preconditioned_case):
    X, y, rms, ada, _ = preconditioned_case
    v = adam.preconditioned(rms, ada, X, y, floor=0.9)
    assert v, v.failures


def test_preconditioned_fails_with_adam_eps_zero_in_place_of_rmsprop(preconditioned_case):
    X, y, rms, ada, adam0 = preconditioned_case
    assert adam.preconditioned(rms, ada, X, y, floor=0.9)
    v = adam.preconditioned(adam0, ada, X, y, floor=0.9)
    assert not v
    assert any(f.startswith("Adam") for f in v.failures)


def test_preconditioned_fails_with_rmsprop_in_place_of_adagrad(preconditioned_case):
    X, y, rms, ada, _ = preconditioned_case
    assert adam.preconditioned(rms, ada, X, y, floor=0.9)
    v = adam.preconditioned(rms, rms, X, y, floor=0.9)
    assert not v
    assert any("M-norm" in f for f in v.failures)


# --- β1 > β2 -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def beta_case():
    X, y = data.gaussian(n=40, d=8, seed=0)
    sol = {n: max_margin(X, y, n) for n in ("l2", "linf")}
    unit = {n: s.direction / np.linalg.norm(s.direction) for n, s in sol.items()}
    cases = [(0.9, 0.95), (0.9, 0.85), (0.95, 0.9), (0.95, 0.99)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hs = train1([adam_run(2000, betas=b, label=f"Adam β={b}") for b in cases], (X, y),
                    norms=("l2", "linf"), observe=regime.step_ratio)
    return hs, unit, [str(w.message) for w in caught]


def test_beta_cases_pass(beta_case):
    (ok, mild, bad, _), unit, messages = beta_case
    v = adam.beta_cases(ok, mild, bad, unit, messages)
    assert v, v.failures


def test_beta_cases_fail_with_beta1_squared_below_beta2_in_place_of_the_bad_case(beta_case):
    (ok, mild, bad, tame), unit, messages = beta_case
    assert adam.beta_cases(ok, mild, bad, unit, messages)
    v = adam.beta_cases(ok, mild, tame, unit, messages)
    assert not v
    assert any("not unbounded" in f for f in v.failures)


def test_beta_cases_fail_when_the_bad_run_is_called_ok(beta_case):
    (ok, mild, bad, _), unit, messages = beta_case
    assert adam.beta_cases(ok, mild, bad, unit, messages)
    assert not adam.beta_cases(bad, mild, ok, unit, messages)


# --- the network ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def net_case():
    """150 digits (blank pixels dropped), width 16, 1,000 steps, the chapter's optimizers and
    rates, the ε sweep, and the mutants: Adam with β2 = 0.999 and normalized GD at the ℓ2
    length of a sign step (0.05·√p). Rows: function-level (per-unit) and raw margins."""
    X, y = data.digits_even_odd(n=150)
    X = X[:, X.abs().sum(0) > 0]
    rates = {"Adam": (0.05, {"betas": BETAS, "eps": 0.0}), "Signum": (0.05, {}), "NormalizedGD": (3.0, {}),
             "Muon": (0.5, {})}
    runs = [Run(opt, lr, 1000, schedule=0.8, model=NET, options=o) for opt, (lr, o) in rates.items()]
    runs += [adam_run(1000, eps, lr=0.05, model=NET, schedule=0.8) for eps in EPS_NET[1:]]
    runs += [adam_run(1000, betas=(0.9, 0.999), lr=0.05, model=NET, schedule=0.8, label="Adam β2=0.999"),
             Run("NormalizedGD", 0.05 * math.sqrt((X.shape[1] + 1) * 16), 1000, schedule=0.8, model=NET,
                 label="NGD at sign length")]
    hs = train1(runs, (X, y), norms=("l2", "linf"), observe=adam.scales)
    return {h.run.label: h for h in hs}, symmetry.summary(hs, X, y, ("l2", "linf"))


RAW = {"function-level": None, "raw": lambda n: f"{n} raw"}


def _with_adam(rows, label):
    return [dict(r, label="Adam") if r["label"] == label else r for r in rows if r["label"] != "Adam"]


def network_verdict(net_case, margins, label="Adam"):
    """``adam.network`` on the chapter's rows with the run ``label`` in Adam's place."""
    hs, rows = net_case
    return adam.network(_with_adam(rows, label) if label != "Adam" else rows, [hs[label]], key=RAW[margins])


@pytest.mark.parametrize("margins", RAW)
def test_network_passes(net_case, margins):
    v = network_verdict(net_case, margins)
    assert v, v.failures


@pytest.mark.parametrize("margins", RAW)
@pytest.mark.parametrize("mutant", ["NGD at sign length", "NormalizedGD"])
def test_network_fails_with_normalized_gd_in_place_of_adam(net_case, mutant, margins):
    """Normalized GD at its rate, or at the ℓ2 length of a sign step. (Adam with ε = 1e-2 is
    no mutant here: in 1,000 steps its √v̂ stays above ε, it never hands over, and it ranks
    as ε = 0 Adam does; on the linear data it hands over and is the ℓ2 mutant there.)"""
    assert network_verdict(net_case, margins)
    v = network_verdict(net_case, margins, mutant)
    assert not v
    assert any("Signum" in f or "NormalizedGD" in f for f in v.failures)  # the margins, not only the regime


@pytest.mark.parametrize("margins", RAW)
def test_network_fails_outside_adams_regime(net_case, margins):
    assert network_verdict(net_case, margins)
    hs, rows = net_case
    v = adam.network(_with_adam(rows, "Adam β2=0.999"), [hs["Adam β2=0.999"]], key=RAW[margins])
    assert not v
    assert any("forgets" in f for f in v.failures)


def net_sweep(net_case, eps_zero="Adam"):
    hs, _ = net_case
    return [hs[eps_zero], *(hs[f"Adam ε={e:g}"] for e in EPS_NET[1:])]


def test_eps_sweep_network_passes(net_case):
    v = adam.eps_sweep_network(net_sweep(net_case), EPS_NET)
    assert v, v.failures


# Not (1, 0, 2, 3): ε = 1e-8 stays far below √v̂ on these runs, so it is ε = 0 up to rounding.
@pytest.mark.parametrize("perm", [(0, 2, 1, 3), (0, 1, 3, 2), (3, 2, 1, 0)])
def test_eps_sweep_network_fails_with_shuffled_eps(net_case, perm):
    assert adam.eps_sweep_network(net_sweep(net_case), EPS_NET)
    assert not adam.eps_sweep_network(net_sweep(net_case), [EPS_NET[i] for i in perm])


def test_eps_sweep_network_fails_when_its_eps_zero_run_leaves_the_regime(net_case):
    assert adam.eps_sweep_network(net_sweep(net_case), EPS_NET)
    sweep = net_sweep(net_case, "Adam β2=0.999")
    v = adam.eps_sweep_network(sweep, EPS_NET)
    assert not v
    assert any("forgets" in f for f in v.failures)


# --- dead coordinates ----------------------------------------------------------------


@pytest.fixture(scope="module")
def dead_case():
    """Raw digits (blank pixels kept), width 8, the first seed with a dead unit."""
    X, y = data.digits_even_odd(n=100)
    net = {"kind": "two_layer", "width": 8, "activation": "relu2"}
    seed = next(s for s in range(100)
                if ((X @ models.build(net, X.shape[1], seed=s).W.T > 0).sum(0) == 0).any())
    return X, y, net, seed


def _trained(dead_case, make_optimizer):
    X, y, net, seed = dead_case
    model = models.build(net, X.shape[1], seed=seed)
    start = models.build(net, X.shape[1], seed=seed)
    opt = make_optimizer(model.parameters())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(30):
            opt.zero_grad()
            torch.nn.functional.softplus(-y * model(X)).sum().backward()
            opt.step()
    return start, model, [str(w.message) for w in caught]


def library_adam_verdict(dead_case):
    from implicit_bias.optim import Adam

    start, end, messages = _trained(dead_case, lambda p: Adam(p, 0.05, betas=BETAS, eps=0.0))
    return adam.dead_coordinates(start, end, dead_case[0], messages)


def test_dead_coordinates_pass_with_the_library_adam(dead_case):
    v = library_adam_verdict(dead_case)
    assert v, v.failures


def test_dead_coordinates_fail_with_torch_adam_eps_zero(dead_case):
    assert library_adam_verdict(dead_case)
    start, end, messages = _trained(dead_case, lambda p: torch.optim.Adam(p, 0.05, betas=BETAS, eps=0.0))
    v = adam.dead_coordinates(start, end, dead_case[0], messages)
    assert not v
    assert any("NaN" in f for f in v.failures)


def test_dead_coordinates_fail_when_eps_hides_the_warning(dead_case):
    from implicit_bias.optim import Adam

    assert library_adam_verdict(dead_case)
    start, end, messages = _trained(dead_case, lambda p: Adam(p, 0.05, betas=BETAS, eps=1e-8))
    v = adam.dead_coordinates(start, end, dead_case[0], messages)
    assert not v and any("warning" in f for f in v.failures)
