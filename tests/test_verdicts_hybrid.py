"""Mutation tests for the verdicts of chapter 8 (hybrid optimizers and the main table): each
predicate run on a deliberately wrong input must fail."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from implicit_bias import data, regime, symmetry
from implicit_bias.train import Run, train
from implicit_bias.verdicts import hybrid

NET = {"kind": "two_layer", "width": 8, "activation": "relu2"}


@pytest.fixture(scope="module")
def digits():
    X, y = data.digits_even_odd(n=200)
    return X[:, X.abs().sum(0) > 0], y


@pytest.fixture(scope="module")
def sweep(digits):
    runs = [Run(name, lr, 1500, schedule=0.8, model=NET) for name, lr in
            (("NormalizedGD", 1.0), ("SignGD", 0.05), ("Muon", 0.5), ("SpectralDescent", 0.5))]
    hs = train(runs, digits, norms=("l2",), progress=False)
    return hs, symmetry.summary(hs, *digits, ("l2", "linf", "spectral"))


def test_column_winners_fails_when_a_wrong_optimizer_stands_in(sweep):
    _, rows = sweep
    named = {"l2": {"NormalizedGD"}, "linf": {"SignGD"}, "spectral": {"Muon", "SpectralDescent"}}
    assert hybrid.column_winners(rows, named, ("linf",))
    # mutant: normalized GD's run in place of sign descent's
    mutant = [dict(r, label="SignGD") if r["label"] == "NormalizedGD" else r
              for r in rows if r["label"] != "SignGD"]
    v = hybrid.column_winners(mutant, named, ("linf",))
    assert not v and "linf" in v.failures[0]


def test_adam_in_regime_fails_for_muon_adam_at_the_old_betas(digits):
    runs = [Run("MuonAdam", 0.5, 1500, schedule=0.8, model=NET, label="MuonAdam",
                options={"lr_adam": 0.5, "betas": betas, "eps": 0.0}) for betas in ((0.5, 0.5), (0.9, 0.95))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inside, outside = train(runs, digits, norms=(), progress=False, observe=regime.step_ratio)
    assert hybrid.adam_in_regime([inside]), hybrid.adam_in_regime([inside]).failures
    v = hybrid.adam_in_regime([outside])  # mutant: β = (0.9, 0.95), the block freezes
    assert not v and any("froze" in f for f in v.failures) and any("regime" in f for f in v.failures)
    assert not hybrid.adam_in_regime([train(Run("Adam", 0.05, 10, model=NET), digits, norms=(),
                                            progress=False)[0]])  # mutant: no observer, no evidence


def _ratio_rows(models_by_label, X, y, ratios):
    from implicit_bias import norms

    rows = []
    for label, model in models_by_label:
        params, (matrix, vector) = [p.detach() for p in model.parameters()], model.branches(X)
        share = float((vector.norm() / (matrix + vector).norm()).detach())
        rows.append({"run": label, "seed": 0, "share": share,
                     **{f"margin in r={r:g}": symmetry.function_margin(model, X, y, norms.hybrid(params, r))
                        for r in ratios}})
    return rows


def test_ratio_verdict_fails_when_normalized_gd_replaces_adam(digits):
    import torch
    from implicit_bias import losses, models, norms, optim

    X, y = digits
    ratios = (0.03, 0.1)
    fitted = []
    for r in ratios:  # mutant: spectral descent on W, normalized GD (not Adam) on a, v, b
        torch.manual_seed(0)
        model = models.TwoLayerWithVectorUnit(X.shape[1], 8, seed=0)
        W, a, v, b = model.parameters()
        step = dict(rule="steepest", momentum=0.0, normalized=True)
        opt = optim.RuleOptimizer([dict(step, params=[W], norm=norms.Spectral(), lr=0.5),
                                   dict(step, params=[a, v, b], norm=norms.L2(), lr=0.5 * r)], {})
        schedule = optim.power_schedule(opt, 0.8)
        for _ in range(600):
            opt.zero_grad()
            log_l = losses.log_loss(y * model(X))
            (log_l - log_l.detach()).exp().backward()  # a frame: normalized steps do not see it
            opt.step()
            schedule.step()
        fitted.append((f"r={r:g}", model))
    v = hybrid.ratio_sets_the_norm(_ratio_rows(fitted, X, y, ratios), ratios)
    assert not v, v


# --- the exact test on the block linear model ------------------------------------------------

BLOCKS = {"W": (4, 5), "u": (6,)}
RATIOS = (0.3, 1, 3)
ADAM_HALF = {"betas": (0.5, 0.5), "eps": 0.0}
OWN_EXACT = {"MuonSignum": "hybrid(1)", **{f"MuonAdam r={r:g}": f"hybrid({r:g})" for r in RATIOS}}


@pytest.fixture(scope="module")
def exact_rows():
    """Chapter 8's exact test at its smoke size (3 draws, 3,000 steps, η_t = 0.1 t^-0.3), plus
    Muon-Adam with lr_adam ignored (both halves at Muon's rate) for the mutant."""
    from implicit_bias import maxmargin, models, norms

    spec = {"kind": "block_linear", "blocks": BLOCKS}
    runs = {"MuonSignum": ("MuonSignum", 0.1, {}), "Muon": ("Muon", 0.1, {}), "Signum": ("Signum", 0.02, {}),
            "NormalizedGD": ("NormalizedGD", 0.2, {}),
            **{f"MuonAdam r={r:g}": ("MuonAdam", 0.1, {"lr_adam": 0.1 * r, **ADAM_HALF}) for r in RATIOS},
            **{f"ignored r={r:g}": ("MuonAdam", 0.1, ADAM_HALF) for r in RATIOS}}
    rows = []
    for draw in range(3):
        X, y = data.small_gaussian(n=12, d=26, seed=draw)
        model = models.BlockLinear(26, BLOCKS)
        params = list(model.parameters())
        geometries = {**{f"hybrid({r:g})": norms.hybrid(params, r) for r in RATIOS},
                      "max{‖W‖, ‖u‖₂}": norms.MaxNorm.named(model, [(norms.Spectral(), ["W"], 1),
                                                                      (norms.L2(), ["u"], 1)]),
                      "ℓ2": norms.L2(), "ℓ∞": norms.Linf()}
        solutions = {g: (n, maxmargin.max_margin(X, y, n, blocks=BLOCKS)) for g, n in geometries.items()}
        hs = train([Run(name, lr, 3000, schedule=0.3, seed=draw, model=spec, label=label, options=options)
                    for label, (name, lr, options) in runs.items()], (X, y), norms=(), progress=False)
        rows += [{"label": h.run.label, "draw": draw, **maxmargin.nearness(h.model, X, y, solutions)} for h in hs]
    return rows


def _relabelled(rows, names: dict, drop=()):
    return [dict(r, label=names.get(r["label"], r["label"])) for r in rows if r["label"] not in drop]


def test_exact_solutions_passes_on_the_hybrids(exact_rows):
    v = hybrid.exact_solutions(exact_rows, OWN_EXACT, margin_min=0.95)
    assert v, v.failures
    # the controls reach their own geometries' solutions too
    controls = {"Muon": "max{‖W‖, ‖u‖₂}", "NormalizedGD": "ℓ2"}
    assert hybrid.exact_solutions(exact_rows, controls, margin_min=0.95)


@pytest.mark.parametrize("stand_in", ["Muon", "Signum", "NormalizedGD"])
def test_exact_solutions_fails_with_another_optimizer_in_place_of_muon_signum(exact_rows, stand_in):
    rows = _relabelled(exact_rows, {stand_in: "MuonSignum"}, drop=("MuonSignum",))
    v = hybrid.exact_solutions(rows, {"MuonSignum": "hybrid(1)"}, margin_min=0.95)
    assert not v and any("nearest" in f for f in v.failures), v


def test_exact_solutions_fails_when_muon_adam_ignores_lr_adam(exact_rows):
    ignored = {f"ignored r={r:g}": f"MuonAdam r={r:g}" for r in RATIOS}
    rows = _relabelled(exact_rows, ignored, drop=tuple(ignored.values()))
    v = hybrid.exact_solutions(rows, OWN_EXACT, margin_min=0.95)
    assert not v and any("r=0.3" in f for f in v.failures) and any("r=3" in f for f in v.failures), v


def test_exact_solutions_fails_with_the_ratio_labels_permuted(exact_rows):
    permuted = {"MuonAdam r=0.3": "MuonAdam r=1", "MuonAdam r=1": "MuonAdam r=3", "MuonAdam r=3": "MuonAdam r=0.3"}
    v = hybrid.exact_solutions(_relabelled(exact_rows, permuted), OWN_EXACT, margin_min=0.95)
    assert not v and sum("nearest" in f for f in v.failures) >= 6, v


def test_exact_solutions_needs_three_draws(exact_rows):
    v = hybrid.exact_solutions([r for r in exact_rows if r["draw"] < 2], OWN_EXACT, margin_min=0.95)
    assert not v and "fewer than 3" in v.failures[0]


# --- certificates in the hybrid norm on the network, and directional convergence ------------

CERT_NET = {"kind": "two_layer", "width": 16, "activation": "relu2"}
CERT_RATES = {"MuonSignum": (0.15, {}), "MuonAdam": (0.15, {"lr_adam": 0.15, "betas": (0.5, 0.5), "eps": 0.0}),
              "Muon": (0.2, {}), "MomentumGD": (0.5, {})}
CERT_OWN = {"MuonSignum": "hybrid", "MuonAdam": "hybrid", "Muon": "spectral", "MomentumGD": "l2"}


@pytest.fixture(scope="module")
def cert_data():
    X, y = data.digits_even_odd(n=300)
    return X[:, X.abs().sum(0) > 0], y


@pytest.fixture(scope="module")
def cert_sweep(cert_data):
    """Chapter 8's certificate sweep (300 digits, width 16, 4,000 steps, t^-0.7) for the two
    hybrids, Muon and momentum GD (the non-hybrid with the smallest hybrid ε there), 3 seeds."""
    runs = [Run(name, lr, 4000, schedule=0.7, seed=seed, model=CERT_NET, options=options)
            for seed in range(3) for name, (lr, options) in CERT_RATES.items()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(runs, cert_data, norms=("l2",), progress=False)


@pytest.fixture(scope="module")
def cert_rows(cert_sweep, cert_data):
    from implicit_bias import kkt, norms

    X, y = cert_data
    rows = []
    for h in cert_sweep:
        first = np.flatnonzero(h.margins["l2"] > 0)[0]
        points = np.unique(np.geomspace(max(first, 1), len(h.steps) - 1, 4).round().astype(int))
        for k, i in enumerate(points):
            if h.run.label == "MomentumGD" and k < len(points) - 1:
                continue
            model = h.model_at(i)
            eps = kkt.kkt_certificate(model, X, y, norms.hybrid(list(model.parameters())), active_tol=0.5,
                                      solver_options={"eps_abs": 1e-4, "eps_rel": 1e-4}).epsilon
            rows.append({"label": h.run.label, "seed": h.run.seed, "checkpoint": k, "step": int(h.steps[i]),
                         "hybrid": eps})
    return rows


def test_certified_in_norm_passes_for_the_hybrids_and_fails_for_muon(cert_rows):
    v = hybrid.certified_in_norm(cert_rows, "hybrid", ["MuonSignum", "MuonAdam"], factor=1.0)
    assert v, v.failures
    # mutant: Muon named as if its theorem were about the hybrid norm
    v = hybrid.certified_in_norm(cert_rows, "hybrid", ["MuonSignum", "Muon"], factor=1.0)
    assert not v and any("not above" in f and "Muon's" in f for f in v.failures), v
    # and two seeds are not enough
    assert not hybrid.certified_in_norm([r for r in cert_rows if r["seed"] < 2], "hybrid", ["MuonSignum"])


def test_directional_passes_on_the_sweep_and_fails_on_runs_cut_short(cert_sweep, cert_data):
    from implicit_bias.verdicts import certificates

    v = certificates.directional(cert_sweep, CERT_OWN)
    assert v, v.failures
    short = [Run(h.run.optimizer, h.run.lr, 400, schedule=0.7, seed=h.run.seed, model=CERT_NET,
                 options=h.run.options) for h in cert_sweep if h.run.seed == 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cut = certificates.directional(train(short, cert_data, norms=("l2",), progress=False), CERT_OWN)
    assert not cut and any("turned" in f or "min cos" in f for f in cut.failures), cut
