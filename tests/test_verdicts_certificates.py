"""Chapter 3's verdicts pass on small correct inputs and fail on mutants: a perturbed or
another norm's exact solution, the other optimizer's model or a random separating direction
in place of a trained one, a summable schedule or a run cut short, a frame-less float32 run
in place of the framed one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import one_thread, thinned
from implicit_bias import data, max_margin, models
from implicit_bias.kkt import kkt_certificate
from implicit_bias.train import Run, train
from implicit_bias.verdicts import certificates as C

OWN = {"NormalizedGD": "l2", "SignGD": "linf"}
NET = {"kind": "two_layer", "width": 4, "activation": "relu2", "init_scale": 0.1}
STEPS = 2000


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    with one_thread():
        yield


# --- exact solutions -----------------------------------------------------------------------

NORMS3 = ("l2", "linf", "l1")


@pytest.fixture(scope="module")
def exact_case():
    """The chapter's data (30 random 3 × 4 inputs labelled by a random teacher), flattened."""
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal(12)
    X = rng.standard_normal((30, 12))
    X, y = torch.tensor(X), torch.tensor(np.sign(X @ teacher))
    return X, y, {n: max_margin(X, y, n).direction for n in NORMS3}


def certify_exact(X, y, directions):
    certs = {}
    for s in NORMS3:
        model = models.Linear(X.shape[1])
        model.w.data = torch.as_tensor(directions[s], dtype=X.dtype).clone()
        for n in NORMS3:
            certs[s, n] = kkt_certificate(model, X, y, n, active_tol=1e-6)
    return certs


@pytest.fixture(scope="module")
def exact_verdict(exact_case):
    return C.exact_solutions(certify_exact(*exact_case), NORMS3)


def test_exact_solutions_pass(exact_verdict):
    assert exact_verdict, exact_verdict.failures


def test_exact_solutions_fail_on_a_perturbed_solution(exact_case, exact_verdict):
    """Mutant: the ℓ2 solution moved by 1e-3 of its length in a random direction."""
    assert exact_verdict
    X, y, sols = exact_case
    noise = np.random.default_rng(0).standard_normal(sols["l2"].shape)
    mutant = dict(sols, l2=sols["l2"] + 1e-3 * np.linalg.norm(sols["l2"]) * noise / np.linalg.norm(noise))
    v = C.exact_solutions(certify_exact(X, y, mutant), NORMS3)
    assert not v
    assert any(f.startswith("l2 solution: own-norm ε") for f in v.failures), v.failures


def test_exact_solutions_fail_on_another_norms_solution(exact_case, exact_verdict):
    """Mutant: the ℓ∞ solution offered as the ℓ1 one."""
    assert exact_verdict
    X, y, sols = exact_case
    v = C.exact_solutions(certify_exact(X, y, dict(sols, l1=sols["linf"])), NORMS3)
    assert not v
    assert any(f.startswith("l1 solution: own-norm ε") for f in v.failures), v.failures


# --- the network ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return data.digits_even_odd(n=100)


@pytest.fixture(scope="module")
def runs(digits):
    """The chapter's runs at a tiny size, with two directional mutants trained alongside:
    a summable schedule (a = 1.5) and a run cut short before it has settled."""
    batch = [Run("NormalizedGD", 1.0, STEPS, schedule=0.8, model=NET),
             Run("SignGD", 0.05, STEPS, schedule=0.8, model=NET),
             Run("SignGD", 0.05, STEPS, schedule=1.5, model=NET, label="SignGD, a = 1.5")]
    hists = train(batch, digits, norms=("l2", "linf"), log_points=14, progress=False)
    short = train(Run("SignGD", 0.05, 300, schedule=0.8, model=NET, label="SignGD, 300 steps"), digits,
                  norms=("l2", "linf"), log_points=14, progress=False)
    return {h.run.label: h for h in hists + short}


@pytest.fixture(scope="module")
def certified(runs, digits):
    X, y = digits
    paths = {label: C.certify_path(runs[label], X, y, OWN.values()) for label in OWN}
    controls = {label: {n: kkt_certificate(C.random_separating(runs[label].model, X, y)[0], X, y, n)
                        for n in OWN.values()} for label in OWN}
    return paths, controls


# A run 10× shorter than the chapter's smoke size: its ε fell less (÷3.5 and ÷20 here, ÷6 and
# ÷55 there) and its δ/Σλ is larger (0.11 and 0.09 here, 0.06 and 0.04 there). The mutants'
# ε fall by ÷1.0.
NETWORK = dict(drop=1.5, delta_max=0.25)


def test_network_passes(certified):
    v = C.network(certified[0], OWN, certified[1], **NETWORK)
    assert v, v.failures


def test_network_fails_with_the_optimizers_swapped(certified):
    """Mutant: each optimizer's label on the other optimizer's model."""
    paths, controls = certified
    assert C.network(paths, OWN, controls, **NETWORK)
    swap = {"NormalizedGD": "SignGD", "SignGD": "NormalizedGD"}
    v = C.network({k: paths[swap[k]] for k in OWN}, OWN, {k: controls[swap[k]] for k in OWN}, **NETWORK)
    assert not v
    assert any(f.startswith("in l2,") for f in v.failures)
    assert any(f.startswith("in linf,") for f in v.failures)


def test_network_fails_on_a_random_separating_direction(certified, runs, digits):
    """Mutant: a random separating direction (another draw than the control) as the final point."""
    X, y = digits
    paths, controls = certified
    assert C.network(paths, OWN, controls, **NETWORK)
    mutant = {}
    for label, (steps, certs) in paths.items():
        model = C.random_separating(runs[label].model, X, y, seed=1)[0]
        mutant[label] = (steps, certs[:-1] + [{n: kkt_certificate(model, X, y, n) for n in OWN.values()}])
    v = C.network(mutant, OWN, controls, **NETWORK)
    assert not v
    assert any("ε fell only" in f for f in v.failures)


def test_certify_path_on_a_thinned_history_certifies_the_kept_directions(certified, runs, digits):
    """``train(directions=5)`` keeps 5 of the 14 logged directions: the path has one
    certificate per kept, separated direction, each equal to the full history's there."""
    X, y = digits
    full_steps, full_certs = certified[0]["NormalizedGD"]
    thin = thinned(runs["NormalizedGD"], 5)
    steps, certs = C.certify_path(thin, X, y, ["l2"])
    assert set(steps) == set(thin.direction_grid) & set(full_steps)
    for step, cert in zip(steps, certs):
        assert cert["l2"].epsilon == full_certs[list(full_steps).index(step)]["l2"].epsilon


def test_turn_and_bound_on_a_thinned_history_reads_the_kept_directions(runs):
    full = runs["SignGD"]
    thin = thinned(full, 5)
    start = thin.direction_grid[thin.direction_grid >= full.run.steps / 2][0]
    late = [s for s in full.steps if s >= start and s in thin.direction_grid]
    cos = [full.directions[full.direction_row(s)] @ full.directions[-1] for s in late]
    bound = C.path_length_bound(full, "linf")["ratio"][list(full.steps).index(start)]
    turn, allowed, min_cos = C.turn_and_bound(thin, "linf")
    assert turn == pytest.approx(np.degrees(np.arccos(min(1.0, cos[0]))))
    assert allowed == pytest.approx(np.degrees(np.arcsin(min(1.0, bound))))
    assert min_cos == pytest.approx(min(cos))


def test_fitted_slope_recovers_a_power_law():
    steps = np.geomspace(1, 1e4, 20)
    assert C.fitted_slope(steps, 3 * steps**-0.2) == pytest.approx(-0.2)


# --- directional convergence ------------------------------------------------------------------


def test_directional_passes(runs):
    v = C.directional([runs[label] for label in OWN], OWN)
    assert v, v.failures


def test_directional_fails_on_a_summable_schedule(runs):
    """Mutant: η_t = η_0 t^{-1.5} has Σ η_t < ∞: the direction freezes, cos → 1, and the
    path-length bound already implies it."""
    assert C.directional([runs[label] for label in OWN], OWN)
    v = C.directional([runs["SignGD, a = 1.5"]], {"SignGD, a = 1.5": "linf"})
    assert not v
    assert any("implied by the schedule" in f for f in v.failures)


def test_directional_fails_on_a_run_cut_short(runs):
    """Mutant: the same sign descent stopped at 300 steps, before it separates the data (its
    cosine stays above 0.99 over the last half, and it turns by 0.41 of the allowed turn,
    against 0.26 for the full run: no margin to assert on)."""
    assert C.directional([runs[label] for label in OWN], OWN)
    v = C.directional([runs["SignGD, 300 steps"]], {"SignGD, 300 steps": "linf"})
    assert not v
    assert any("does not separate" in f for f in v.failures)


def test_path_length_bound_is_the_schedule_sum(runs):
    h = runs["NormalizedGD"]
    b = C.path_length_bound(h, "l2")
    s = int(b["steps"][-2])
    t = np.arange(s + 1, STEPS + 1)
    assert b["path"][-2] == pytest.approx((t**-0.8).sum())
    assert b["path"][-1] == 0.0
    for label in OWN:  # and it bounds the distance the run actually travelled
        h = runs[label]
        theta = h.directions * h.param_norm[:, None]
        travelled = np.linalg.norm(theta[-1] - theta, axis=1)
        assert (travelled <= C.path_length_bound(h, OWN[label])["path"] * (1 + 1e-9)).all()


# --- vanishing loss --------------------------------------------------------------------------


def vanishing_runs(steps=700):
    X, y = data.gaussian(n=20, d=5, seed=0)
    out = {}
    for dtype in ("float64", "float32"):
        for frame in (True, False):
            run = Run("NormalizedGD", 2.0, steps, model={"kind": "linear"}, dtype=dtype)
            out[dtype, frame] = train(run, (X, y), norms=("l2",), frame=frame, progress=False,
                                      engine="loop")[0]
    return out, max_margin(X, y, "l2").margin


@pytest.fixture(scope="module")
def vanishing():
    return vanishing_runs()


def test_vanishing_loss_passes(vanishing):
    v = C.vanishing_loss(*vanishing)
    assert v, v.failures


def test_vanishing_loss_fails_without_the_frame(vanishing):
    """Mutant: the frame-less float32 run in place of the framed one."""
    framed, best = vanishing
    assert C.vanishing_loss(framed, best)
    v = C.vanishing_loss({**framed, ("float32", True): framed["float32", False]}, best)
    assert not v
    assert any(f.startswith("framed float32") for f in v.failures)
