"""Chapter 4's verdicts (implicit_bias.verdicts.momentum) on small real runs, and on mutants
that must make each of them fail: the wrong optimizer, a random direction, momentum
switched off, a schedule outside the theorem's condition, Newton–Schulz in place of the
exact polar factor.

The network runs are the chapter's smoke size (300 digits, width 32, 1,500 steps); the
rates and schedules are the chapter's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import one_thread, thinned
from implicit_bias import data, max_margin
from implicit_bias.train import Run, train
from implicit_bias.verdicts import momentum as vm

OWN = {"MomentumGD": "l2", "Signum": "linf", "Muon": "spectral"}
RATE = {"MomentumGD": 1.0, "Signum": 0.05, "Muon": 0.5, "NormalizedGD": 1.0}
NET = {"kind": "two_layer", "width": 32, "activation": "relu2"}
STEPS = 1500
TOO_SLOW = 1e-3  # MomentumGD's rate in the schedule mutant: Σ η_t ≈ 0.08, it never separates


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Small tensors: one thread is as fast, and immune to a busy CPU."""
    with one_thread():
        yield


@pytest.fixture(scope="module")
def digits():
    return data.digits_even_odd(n=300)


def _run(opt, a=0.8, lr=None):
    lr = RATE[opt] if lr is None else lr
    return Run(opt, lr, STEPS, schedule=a, model=NET, label=f"{opt} a={a} lr={lr}")


@pytest.fixture(scope="module")
def runs(digits):
    """At t^-0.8: the three momentum methods, normalized GD, and the mutant MomentumGD at
    Signum's rate. At t^-0.5 (outside the momentum condition a > 1 − 1/L = 2/3):
    MomentumGD, normalized GD and Signum, and the mutant MomentumGD at a rate too small to
    separate the data, in a call of their own (``failures='return'``: a momentum run whose
    loss outruns its memory comes back as the error)."""
    inside = [_run(o) for o in RATE] + [_run("MomentumGD", lr=RATE["Signum"])]
    outside = [_run(o, 0.5) for o in ("MomentumGD", "NormalizedGD", "Signum")]
    outside.append(_run("MomentumGD", 0.5, lr=TOO_SLOW))
    hists = train(inside, digits, norms=("l2", "linf", "spectral"), progress=False)
    hists += train(outside, digits, norms=("l2", "linf", "spectral"), progress=False, failures="return")
    return {(r.optimizer, r.schedule, r.lr): h for r, h in zip(inside + outside, hists)}


def get(runs, opt, a=0.8, lr=None):
    return runs[opt, a, RATE[opt] if lr is None else lr]


def rows_of(hists):
    return [{"label": label, "seed": 0, **{n: h.final(n) for n in ("l2", "linf", "spectral")}}
            for label, h in hists.items()]


# --- margins -----------------------------------------------------------------------------------


def test_margins_verdict_passes_on_the_momentum_methods(runs):
    v = vm.margins(rows_of({o: get(runs, o) for o in OWN}), OWN)
    assert v, v.failures


def test_margins_verdict_fails_with_momentum_gd_at_sign_rates_for_signum(runs):
    assert vm.margins(rows_of({o: get(runs, o) for o in OWN}), OWN)
    mutant = {"MomentumGD": get(runs, "MomentumGD"), "Signum": get(runs, "MomentumGD", lr=RATE["Signum"]),
              "Muon": get(runs, "Muon")}
    assert not vm.margins(rows_of(mutant), OWN)


# --- certificates --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def final_eps(runs, digits):
    X, y = digits
    return {(o, n): vm.certify(get(runs, o).model, X, y, n).epsilon for o in OWN for n in OWN.values()}


@pytest.fixture(scope="module")
def random_eps(runs, digits):
    X, y = digits
    return {o: vm.certify(vm.random_separating(get(runs, o).model, X, y)[0], X, y, n).epsilon
            for o, n in OWN.items()}


def test_random_separating_direction_separates_and_differs(runs, digits):
    X, y = digits
    model = get(runs, "MomentumGD").model
    other, scale = vm.random_separating(model, X, y)
    assert (y * other(X)).min() > 0 and 0 < scale <= 0.5
    assert not torch.equal(torch.nn.utils.parameters_to_vector(other.parameters()),
                           torch.nn.utils.parameters_to_vector(model.parameters()))


def test_certificates_verdict_passes_on_the_trained_methods(final_eps, random_eps):
    v = vm.certificates(final_eps, OWN, random_eps)
    assert v, v.failures


def test_certificates_verdict_fails_with_a_random_direction_for_a_trained_model(runs, digits, final_eps,
                                                                                 random_eps):
    X, y = digits
    assert vm.certificates(final_eps, OWN, random_eps)
    fake, _ = vm.random_separating(get(runs, "MomentumGD").model, X, y, seed=1)
    eps = dict(final_eps) | {("MomentumGD", n): vm.certify(fake, X, y, n).epsilon for n in OWN.values()}
    assert not vm.certificates(eps, OWN, random_eps)


# --- the certificate falls -----------------------------------------------------------------------


def test_falling_verdict_passes_inside_and_fails_outside_the_schedule_condition(runs, digits):
    X, y = digits
    inside = {o: vm.certificate_path(get(runs, o), X, y, OWN[o], points=4) for o in ("MomentumGD", "Signum")}
    v = vm.falling(inside)
    assert v, v.failures
    # Mutants: Signum and MomentumGD at t^-0.5, outside a > 1 − 1/L: they move, but not towards a
    # KKT direction (Signum's ε rises; MomentumGD's hovers near 0.9, with a slope of about −0.04).
    for o in ("Signum", "MomentumGD"):
        outside = {o: vm.certificate_path(get(runs, o, 0.5), X, y, OWN[o], points=4)}
        v = vm.falling(outside)
        assert not v and any("slope" in f for f in v.failures), o


def test_certificate_path_on_a_thinned_history_certifies_kept_directions(runs, digits):
    """``train(directions=6)`` keeps 6 of the ~60 logged directions: the checkpoints are
    kept rows, and each ε is the full history's ε at that step."""
    X, y = digits
    full = get(runs, "MomentumGD")
    thin = thinned(full, 6)
    rows = vm.checkpoints(thin, points=4)
    assert len(rows) >= 2 and rows.max() == len(thin.directions) - 1
    steps, eps = vm.certificate_path(thin, X, y, "l2", points=4)
    np.testing.assert_array_equal(steps, thin.direction_grid[rows])
    for step, e in zip(steps, eps):
        assert e == vm.certify(full.model_at(full.direction_row(step)), X, y, "l2").epsilon


# --- the schedule condition ----------------------------------------------------------------------


def schedule_case(runs, digits, momentum_below=None, method="MomentumGD"):
    """The sweep's runs and ε (MomentumGD and NormalizedGD at a = 0.5 and 0.8), with
    ``method``'s runs under MomentumGD's label and ``momentum_below`` its run at a = 0.5."""
    X, y = digits
    sweep = {(label, a): get(runs, opt, a) for label, opt in (("MomentumGD", method),
                                                              ("NormalizedGD", "NormalizedGD"))
             for a in (0.5, 0.8)}
    if momentum_below is not None:
        sweep["MomentumGD", 0.5] = momentum_below
    return sweep, {k: vm.epsilon(h, X, y, "l2") for k, h in sweep.items()}


def test_schedule_verdict_passes_with_momentum(runs, digits):
    v = vm.schedule_sweep(*schedule_case(runs, digits), ["MomentumGD"], below=(0.5,))
    assert v, v.failures


def test_schedule_verdict_fails_with_momentum_switched_off(runs, digits):
    assert vm.schedule_sweep(*schedule_case(runs, digits), ["MomentumGD"], below=(0.5,))
    # MomentumGD with β = 0 is normalized GD, step for step: its runs stand for the mutant.
    assert not vm.schedule_sweep(*schedule_case(runs, digits, method="NormalizedGD"), ["MomentumGD"],
                                 below=(0.5,))


def test_schedule_verdict_fails_when_the_run_below_never_separates(runs, digits):
    """Mutant: MomentumGD below the boundary at a rate too small to separate the data. Its ε
    is 1 by convention, above ε at a = 0.8, but that is no evidence of a lost bias."""
    assert vm.schedule_sweep(*schedule_case(runs, digits), ["MomentumGD"], below=(0.5,))
    slow = get(runs, "MomentumGD", 0.5, lr=TOO_SLOW)
    assert vm.outcome(slow) == "not separated"
    v = vm.schedule_sweep(*schedule_case(runs, digits, momentum_below=slow), ["MomentumGD"], below=(0.5,))
    assert not v and any("never separated the data" in f for f in v.failures)


# --- a unique limit, and the polar factor (linear models) ----------------------------------------


@pytest.fixture(scope="module")
def linear():
    """Multiclass linear classifiers (20 digits, 10 classes: 180 matrix inputs), as in the
    chapter; the ℓ2 runs need more steps than the Muon runs."""
    Z, yz = data.digits_multiclass(n=20, num_classes=10)
    ns = {"polar": "newton_schulz"}
    specs = {"MomentumGD": ("MomentumGD", 3.0, {}, 2000), "NormalizedGD": ("NormalizedGD", 3.0, {}, 2000),
             "Signum": ("Signum", 0.05, {}, 2000), "Muon": ("Muon", 1.0, {}, 800),
             "Muon (Newton–Schulz)": ("Muon", 1.0, ns, 800),
             "Muon (Newton–Schulz, bfloat16)": ("Muon", 1.0, {**ns, "ns_dtype": torch.bfloat16}, 800)}
    hists = train([Run(o, lr, steps, schedule=0.5, model={"kind": "linear"}, options=opt, label=label)
                   for label, (o, lr, opt, steps) in specs.items()], (Z, yz), norms=("l2", "spectral"),
                  progress=False)
    exact = {"l2": max_margin(Z.reshape(len(Z), -1), yz, "l2"), "spectral": max_margin(Z, yz, "spectral")}
    return {h.run.label: h for h in hists}, exact


def test_same_limit_verdict_passes_for_momentum_and_normalized_gd(linear):
    hists, exact = linear
    w = {k: h.model.w.detach() for k, h in hists.items()}
    v = vm.same_limit(w["MomentumGD"], w["NormalizedGD"], torch.as_tensor(exact["l2"].direction))
    assert v, v.failures


def test_same_limit_verdict_fails_with_signum_for_momentum_gd(linear):
    hists, exact = linear
    w = {k: h.model.w.detach() for k, h in hists.items()}
    assert vm.same_limit(w["MomentumGD"], w["NormalizedGD"], torch.as_tensor(exact["l2"].direction))
    assert not vm.same_limit(w["Signum"], w["NormalizedGD"], torch.as_tensor(exact["l2"].direction))


def test_polar_factor_verdict_passes_for_exact_muon_and_fails_for_newton_schulz(linear):
    hists, exact = linear
    frac = {k: h.final("spectral") / exact["spectral"].margin
            for k, h in hists.items() if k.startswith("Muon")}
    approx = ("Muon (Newton–Schulz, bfloat16)",)
    v = vm.polar_factor(frac, approximations=("Muon (Newton–Schulz)", *approx))
    assert v, v.failures
    # Mutant: Newton–Schulz Muon (float64) handed in as the exact one.
    assert not vm.polar_factor(frac, exact="Muon (Newton–Schulz)", approximations=approx)


def test_margins_verdict_on_function_level_margins(runs, digits):
    """The same verdict on margins at the best rescaling of each network (ib.symmetry)."""
    from implicit_bias import symmetry

    X, y = digits
    real = symmetry.summary([get(runs, o) for o in OWN], X, y, ("l2", "linf", "spectral"))
    for row, o in zip(real, OWN):
        row["label"] = o
    v = vm.margins(real, OWN)
    assert v, v.failures
    mutant = symmetry.summary([get(runs, "MomentumGD", lr=RATE["Signum"])], X, y, ("l2", "linf", "spectral"))
    mutant[0]["label"] = "Signum"
    assert not vm.margins([real[0], mutant[0], real[2]], OWN)
