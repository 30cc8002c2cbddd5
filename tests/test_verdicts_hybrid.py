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


RATIO_NET = {"kind": "two_layer_vector_unit", "width": 16, "activation": "relu2"}
RATIOS_NET = (0.1, 0.3, 1)


def _vector_block_ngd():
    """The mutant optimizer: Muon on W, normalized GD (an ℓ2 step, not Adam's sign-like one) on
    a, v, b, at Adam's ℓ2 step length (η^A times the square root of their size)."""
    from implicit_bias import norms, optim

    class MuonNormalizedGD(optim.Hybrid):
        def __init__(self, params, lr, lr_rest):
            step = dict(rule="steepest", momentum=0.9, normalized=True)
            super().__init__(params, dict(step, norm=norms.Spectral(), lr=lr),
                             dict(step, norm=norms.L2(), lr=lr_rest))

    return MuonNormalizedGD


def _ratio_rows(runs, X, y):
    from implicit_bias import kkt, norms

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hs = train(runs, (X, y), norms=(), progress=False)
    rows = []
    for h in hs:
        params = list(h.model.parameters())
        rows.append({"run": h.run.label, "seed": h.run.seed, **{
            f"ε in r={r:g}": kkt.kkt_certificate(h.model, X, y, norms.hybrid(params, r), active_tol=0.5,
                                                 solver_options={"eps_abs": 1e-4, "eps_rel": 1e-4}).epsilon
            for r in RATIOS_NET}})
    return rows


def test_ratio_certified_passes_for_muon_adam_and_fails_for_normalized_gd_on_the_vector_block(cert_data):
    """Chapter 8's ratio sweep at its smoke size (300 digits, width 16, 4,000 steps, 5 seeds)."""
    X, y = cert_data
    adam = [Run("MuonAdam", 0.15, 4000, schedule=0.7, seed=seed, model=RATIO_NET, label=f"r={r:g}",
                options={"lr_adam": 0.15 * r, "betas": (0.5, 0.5), "eps": 0.0})
            for seed in range(5) for r in RATIOS_NET]
    v = hybrid.ratio_certified(_ratio_rows(adam, X, y), RATIOS_NET)
    assert v, v.failures
    p_rest = 16 + X.shape[1] + 1  # a, v and b
    mutant = [Run(_vector_block_ngd(), 0.15, 4000, schedule=0.7, seed=seed, model=RATIO_NET, label=f"r={r:g}",
                  options={"lr_rest": 0.15 * r * p_rest**0.5}) for seed in range(5) for r in RATIOS_NET]
    v = hybrid.ratio_certified(_ratio_rows(mutant, X, y), RATIOS_NET)
    assert not v and any("r=0.3" in f for f in v.failures), v


# --- the exact test on the block linear model ------------------------------------------------

BLOCKS = {"W": (4, 5), "u": (6,)}
RATIOS = (0.3, 1, 3)
ADAM_HALF = {"betas": (0.5, 0.5), "eps": 0.0}
OWN_EXACT = {"MuonSignum": "hybrid(1)", **{f"MuonAdam r={r:g}": f"hybrid({r:g})" for r in RATIOS}}


@pytest.fixture(scope="module")
def exact_rows():
    """Chapter 8's exact test at its smoke size (3 draws, 3,000 steps, η_t = 0.1 t^-0.3, θ_0 near 0),
    plus Muon-Adam with lr_adam ignored (both halves at Muon's rate) for the mutant."""
    from implicit_bias import maxmargin, models, norms

    spec = {"kind": "block_linear", "blocks": BLOCKS, "init_scale": 0.01}
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
        rows += [{"label": h.run.label, "draw": draw, **maxmargin.nearness(h.model, X, y, solutions)}
                 for h in hs]
    return rows


def _relabelled(rows, names: dict, drop=()):
    return [dict(r, label=names.get(r["label"], r["label"])) for r in rows if r["label"] not in drop]


def test_exact_solutions_passes_on_the_hybrids(exact_rows):
    v = hybrid.exact_solutions(exact_rows, OWN_EXACT, margin_min=0.97)
    assert v, v.failures
    # the controls reach their own geometries' solutions too
    controls = {"Muon": "max{‖W‖, ‖u‖₂}", "NormalizedGD": "ℓ2"}
    assert hybrid.exact_solutions(exact_rows, controls, margin_min=0.97)


@pytest.mark.parametrize("stand_in", ["Muon", "Signum", "NormalizedGD"])
def test_exact_solutions_fails_with_another_optimizer_in_place_of_muon_signum(exact_rows, stand_in):
    rows = _relabelled(exact_rows, {stand_in: "MuonSignum"}, drop=("MuonSignum",))
    v = hybrid.exact_solutions(rows, {"MuonSignum": "hybrid(1)"}, margin_min=0.97)
    assert not v and any("nearest" in f for f in v.failures), v


def test_exact_solutions_fails_when_muon_adam_ignores_lr_adam(exact_rows):
    ignored = {f"ignored r={r:g}": f"MuonAdam r={r:g}" for r in RATIOS}
    rows = _relabelled(exact_rows, ignored, drop=tuple(ignored.values()))
    v = hybrid.exact_solutions(rows, OWN_EXACT, margin_min=0.97)
    assert not v and any("r=0.3" in f for f in v.failures) and any("r=3" in f for f in v.failures), v


def test_exact_solutions_fails_with_the_ratio_labels_permuted(exact_rows):
    permuted = {"MuonAdam r=0.3": "MuonAdam r=1", "MuonAdam r=1": "MuonAdam r=3",
                "MuonAdam r=3": "MuonAdam r=0.3"}
    v = hybrid.exact_solutions(_relabelled(exact_rows, permuted), OWN_EXACT, margin_min=0.97)
    assert not v and sum("nearest" in f for f in v.failures) >= 6, v


def test_exact_solutions_needs_three_draws(exact_rows):
    v = hybrid.exact_solutions([r for r in exact_rows if r["draw"] < 2], OWN_EXACT, margin_min=0.97)
    assert not v and "fewer than 3" in v.failures[0]


# --- certificates in the hybrid norm on the network, and directional convergence ------------

CERT_NET = {"kind": "two_layer", "width": 16, "activation": "relu2"}
CERT_RATES = {"MuonSignum": (0.15, {}),
              "MuonAdam": (0.15, {"lr_adam": 0.15, "betas": (0.5, 0.5), "eps": 0.0}),
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
