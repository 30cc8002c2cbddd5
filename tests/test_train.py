"""The training loop: the loss frame leaves trajectories unchanged, runs continue far below
float64's range, histories are well formed, and bad input fails clearly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import flat, rel_err, thinned
from implicit_bias import data, losses, margins, maxmargin, optim, train

LIN = {"kind": "linear"}
TWO = {"kind": "two_layer", "width": 6, "activation": "relu2"}

# Per optimizer: a model, a rate and options with which 300 steps take the loss from ~e^3
# to between e^-25 and e^-600: the frame changes (|log L + F| > 20) while the plain loss
# stays representable. Adam and RMSProp use a tiny ε > 0 (gradients stay far above it, so
# the loss keeps falling); AdaGrad's large first steps do the work before its
# accumulator freezes it.
FRAME_CASES = {
    "NormalizedGD": (LIN, 0.5, {}),
    "MomentumGD": (LIN, 0.5, {}),
    "SignGD": (LIN, 0.2, {}),
    "Signum": (LIN, 0.5, {}),
    "CoordinateDescent": (LIN, 0.5, {}),
    "SpectralDescent": (TWO, 0.02, {}),
    "Muon": (TWO, 0.05, {}),
    "Adam": (TWO, 0.05, {"eps": 1e-20, "betas": (0.5, 0.5)}),
    "AdamProxy": (LIN, 1.0, {}),
    "RMSProp": (TWO, 0.05, {"eps": 1e-20, "beta2": 0.5}),
    "AdaGrad": (LIN, 300.0, {"eps": 1e-10}),
    "MuonSignum": (TWO, 0.05, {}),
    "MuonAdam": (TWO, 0.05, {"eps": 1e-8, "betas": (0.5, 0.5)}),
    "AdamW": (TWO, 0.05, {"eps": 1e-20, "betas": (0.5, 0.5), "weight_decay": 1e-3}),
    "Lion": (LIN, 0.3, {"betas": (0.5, 0.6)}),
    "ClippedAdam": (TWO, 0.05, {"eps": 1e-20, "betas": (0.5, 0.5), "clip": 0.5}),
}


# torch.optim.Muon divides the momentum by max(‖m‖_F, 1e-7) before Newton–Schulz, so on
# the plain loss its steps change once the gradients fall below 1e-7 (loss ≲ e^-16): the
# framed run (gradients O(1)) is the scale-invariant one and the two cannot agree here.
# Its frame support is checked at representable scales in test_optim's RESCALE_CASES.
FRAME_EXEMPT = {"TorchMuon"}


def test_frame_cases_cover_every_optimizer():
    assert set(FRAME_CASES) | FRAME_EXEMPT == set(optim.OPTIMIZERS)


@pytest.mark.parametrize("name", list(FRAME_CASES))
def test_frame_does_not_change_the_trajectory(name, small_data):
    model, lr, options = FRAME_CASES[name]
    run = train.Run(name, lr, steps=300, model=model, options=options)
    framed, plain = (train.train(run, small_data, norms=("l2",), frame=f, progress=False, device="cpu")[0]
                     for f in (True, False))
    for h in (framed, plain):
        # Below e^-20 the frame has moved at least once; above e^-600 the plain loss and
        # its gradients are still representable.
        assert -600 < h.log_loss[-1] < -25
    assert rel_err(framed.model, plain.model) < 1e-10
    np.testing.assert_allclose(framed.log_loss, plain.log_loss, rtol=1e-8)


@pytest.mark.parametrize("name,lr,steps,options", [
    ("NormalizedGD", 4.0, 1500, {}),
    ("SignGD", 0.2, 2500, {}),
    ("Adam", 0.5, 3000, {"eps": 0.0, "betas": (0.5, 0.5)}),
])
def test_long_framed_run_goes_far_below_the_float_range(name, lr, steps, options, small_data):
    X, y = small_data
    run = train.Run(name, lr, steps=steps, model=LIN, options=options)
    h = train.train(run, small_data, norms=("l2", "linf", "l1"), progress=False, device="cpu")[0]
    assert h.log_loss[-1] < -230  # the loss is below 1e-100
    if name != "SignGD":
        assert h.log_loss[-1] < -710  # and even below float64's smallest normal number
    assert float(losses.loss(y * h.model(X).detach())) < 1e-100
    assert np.isfinite(h.log_loss).all() and np.isfinite(h.param_norm).all()
    assert torch.isfinite(flat(h.model)).all()
    # A linear model's normalized margin never beats the exact max margin in that norm,
    # and the run gets close to the max margin of the optimizer's own norm.
    best = {n: maxmargin.max_margin(X, y, n).margin for n in h.margins}
    for n, values in h.margins.items():
        assert np.isfinite(values).all()
        assert values.max() <= best[n] * (1 + 1e-6)
    own = {"NormalizedGD": "l2", "SignGD": "linf", "Adam": "linf"}[name]
    assert h.final(own) >= 0.95 * best[own]


@pytest.mark.parametrize("name, lr", [("NormalizedGD", 0.5), ("SignGD", 0.2)])
def test_float32_runs_go_below_the_float32_range(name, lr, small_data):
    """float32 underflows below ~1e-45 (log ≈ −103): the plain loss freezes there, the frame
    keeps a float32 run going to 1e-100 and beyond."""
    runs = {frame: train.Run(name, lr, steps=3000, model=LIN, dtype="float32") for frame in (True, False)}
    framed, plain = (train.train(runs[f], small_data, norms=("l2", "linf"), progress=False, frame=f,
                                 device="cpu")[0] for f in (True, False))
    assert framed.model.w.dtype == torch.float32
    assert framed.log_loss[-1] < -230 and plain.log_loss[-1] > -110
    assert np.isfinite(framed.log_loss).all() and torch.isfinite(framed.model.w).all()
    own = {"NormalizedGD": "l2", "SignGD": "linf"}[name]
    assert framed.final(own) >= 0.95 * maxmargin.max_margin(*small_data, own).margin


def test_constant_rate_normalized_descent_on_a_degree_3_model(small_data):
    """At a constant rate a normalized method moves log L by more than 709 (float64's
    exponent range) in one step once ‖θ‖ is large: the frame must follow in pieces."""
    run = train.Run("NormalizedGD", 1.0, steps=250, model=TWO)
    h = train.train(run, small_data, norms=("l2",), progress=False, device="cpu")[0]
    assert h.log_loss[-1] < -20_000
    assert np.isfinite(h.margins["l2"]).all() and h.margins["l2"][-1] > 0
    assert np.diff(h.log_loss).min() < -709


@pytest.mark.parametrize("engine", ["batched", "loop"])
def test_a_state_that_outlasts_the_loss_trains_on(engine, small_data):
    """With momentum the state remembers gradients e^{hundreds} larger than the current
    ones when the loss falls that fast: kept with a log-factor, it never overflows (it once
    did, near step 200, for Muon at this rate), and both engines agree."""
    run = train.Run("Muon", 0.2, steps=300, model=TWO)
    (h,) = train.train(run, small_data, norms=("l2",), progress=False, device="cpu", engine=engine)
    assert h.log_loss[-1] < -2000 and np.isfinite(h.margins["l2"]).all()


def test_history_shapes_and_values(small_data):
    X, y = small_data
    norms = ("l2", "linf", "spectral", "hybrid")
    run = train.Run("MuonSignum", 0.05, steps=120, model=TWO, seed=3, label="ms")
    (h,) = train.train(run, small_data, norms=norms, log_points=15, progress=False, device="cpu")
    grid = train.log_grid(120, 15)
    np.testing.assert_array_equal(h.steps, grid)
    k = len(grid)
    assert h.log_loss.shape == (k,) and h.param_norm.shape == (k,)
    assert set(h.margins) == set(norms) and all(v.shape == (k,) for v in h.margins.values())
    n_params = sum(p.numel() for p in h.model.parameters())
    assert h.directions.shape == (k, n_params)
    np.testing.assert_allclose(np.linalg.norm(h.directions, axis=1), 1.0, rtol=1e-12)
    cos = h.cosine_to_final()
    assert cos.shape == (k,) and cos[-1] == pytest.approx(1.0, abs=1e-12)
    # The last logged values are those of the returned model.
    theta = flat(h.model)
    assert h.param_norm[-1] == pytest.approx(float(theta.norm()), rel=1e-12)
    np.testing.assert_allclose(h.direction().numpy(), (theta / theta.norm()).numpy(), rtol=1e-12)
    q = (y * h.model(X)).detach()
    assert h.log_loss[-1] == pytest.approx(float(losses.log_loss(q)), rel=1e-12)
    for n in norms:
        assert h.final(n) == pytest.approx(margins.normalized_margin(h.model, X, y, n), rel=1e-10)
    assert h.run is run and run.label == "ms" and h.seconds > 0
    rows = train.summary([h], norms=["l2"])
    assert rows == [{"label": "ms", "seed": 3, "log10_loss": h.log_loss[-1] / math.log(10),
                     "l2": h.final("l2")}]
    assert set(train.summary([h])[0]) == {"label", "seed", "log10_loss", *norms}


def test_log_grid():
    for steps, points in [(1, 60), (10, 60), (1000, 60), (5000, 20), (37, 5)]:
        grid = train.log_grid(steps, points)
        assert grid[0] == 1 and grid[-1] == steps
        assert np.all(np.diff(grid) > 0)
        assert len(grid) <= points + 1
    np.testing.assert_array_equal(train.log_grid(10, 60), np.arange(1, 11))


def test_sweeps_of_runs_over_named_data_sets(small_data):
    other = data.gaussian(n=15, d=3, seed=9)
    runs = [train.Run("SignGD", 0.05, steps=20, model=LIN, data="a", label="first"),
            train.Run("NormalizedGD", 0.5, steps=30, model=LIN, data="b"),
            train.Run("SignGD", 0.05, steps=20, model=LIN, data="a", seed=1)]
    hs = train.train(runs, {"a": small_data, "b": other}, norms=("l2",), progress=False, device="cpu")
    assert [h.run for h in hs] == runs
    assert [h.run.label for h in hs] == ["first", "NormalizedGD", "SignGD"]
    assert [h.model.w.shape[0] for h in hs] == [5, 3, 5]
    assert [h.steps[-1] for h in hs] == [20, 30, 20]
    # Seeds give different initializations; the same run repeats exactly.
    assert not torch.equal(flat(hs[0].model), flat(hs[2].model))
    again = train.train(runs[0], {"a": small_data}, norms=("l2",), progress=False, device="cpu")[0]
    assert torch.equal(flat(again.model), flat(hs[0].model))


def test_schedule_and_options_reach_the_optimizer(small_data):
    """A SignGD run with η_t = η_0 t^{-1/2} moves each weight by Σ_t η_t at most."""
    run = train.Run("SignGD", 0.1, steps=16, schedule=0.5, model=LIN)
    h = train.train(run, small_data, norms=(), progress=False, device="cpu")[0]
    start = flat(train.models.build(LIN, 5, seed=0))
    moved = (flat(h.model) - start).abs()
    total = sum(0.1 * t**-0.5 for t in range(1, 17))
    assert float(moved.max()) <= total + 1e-12
    with pytest.raises(TypeError):
        train.train(train.Run("SignGD", 0.1, steps=2, model=LIN, options={"momentum": 0.9}),
                    small_data, norms=(), progress=False, device="cpu")


def test_bad_input(small_data):
    X, y = small_data
    with pytest.raises(KeyError, match="asks for data 'mnist'"):
        train.train(train.Run("SignGD", 0.1, steps=5, data="mnist"), {"data": small_data}, progress=False)
    with pytest.raises(ValueError, match="Unknown optimizer 'Lino'"):
        train.Run("Lino", 0.1, steps=5)
    for steps in (0, -3, 2.5):
        with pytest.raises(ValueError, match="steps must be a positive integer"):
            train.Run("SignGD", 0.1, steps=steps)
    with pytest.raises(ValueError, match="Unknown loss 'hinge'"):
        train.Run("SignGD", 0.1, steps=5, loss="hinge")
    with pytest.raises(ValueError, match="Labels must be -1 or \\+1"):
        train.train(train.Run("SignGD", 0.1, steps=5, model=LIN), (X, (y + 1) / 2), progress=False,
                    device="cpu")
    with pytest.raises(ValueError, match="X has NaN or inf entries"):
        Xnan = X.clone()
        Xnan[0, 0] = float("nan")
        train.train(train.Run("SignGD", 0.1, steps=5, model=LIN), (Xnan, y), progress=False, device="cpu")


def test_run_defaults_and_config():
    run = train.Run("Adam", 0.01, steps=10, options={"eps": 0.0})
    assert run.label == "Adam" and run.loss == "logistic" and run.schedule == 0.0
    assert run.model == {"kind": "two_layer", "width": 64, "activation": "relu2"}
    cfg = run.config()
    assert cfg["optimizer"] == "Adam" and cfg["options"] == {"eps": 0.0} and cfg["steps"] == 10
    # Default model dicts are not shared between runs.
    other = train.Run("Adam", 0.01, steps=10)
    other.model["width"] = 8
    assert run.model["width"] == 64


@pytest.mark.parametrize("engine", ["loop", "batched"])
def test_observe_records_without_changing_the_run(engine, small_data):
    """``observe`` sees every logged step; a run with it is the run without it, in either
    engine."""
    run = train.Run("Adam", 0.1, steps=40, model=LIN, options={"eps": 1e-8})
    plain = train.train(run, small_data, norms=("l2",), log_points=10, progress=False, device="cpu",
                        engine=engine)[0]
    assert plain.observed == {}
    seen = []

    def observe(model, optimizer, frame):
        seen.append(optimizer)
        return {"norm": float(flat(model).norm()), "w": flat(model).numpy().copy()}

    h = train.train(run, small_data, norms=("l2",), log_points=10, progress=False, device="cpu",
                    observe=observe, engine=engine)[0]
    assert h.engine["name"] == engine
    assert torch.equal(flat(h.model), flat(plain.model))
    k = len(h.steps)
    assert len(seen) == k and all(isinstance(o, optim.Adam) for o in seen)
    assert h.observed["norm"].shape == (k,) and h.observed["w"].shape == (k, 5)
    np.testing.assert_allclose(h.observed["norm"], h.param_norm, rtol=1e-12)


@pytest.mark.parametrize("name,options,root", [
    # With a constant gradient g (learning rate 0), √v̂ is known in closed form.
    ("Adam", {"betas": (0.9, 0.99), "eps": 0.0}, lambda g, t: g.abs()),  # bias-corrected
    ("RMSProp", {"beta2": 0.9, "eps": 1e-8}, lambda g, t: g.abs() * math.sqrt(1 - 0.9**t)),
    ("AdaGrad", {"eps": 1e-10}, lambda g, t: g.abs() * math.sqrt(t)),
])
def test_root_second_moments_and_adaptive_scales(name, options, root, small_data):
    X, y = small_data
    run = train.Run(name, 0.0, steps=7, model=LIN, options=options)
    h = train.train(run, small_data, norms=(), log_points=7, progress=False, device="cpu",
                    observe=train.adaptive_scales)[0]
    model = h.model
    model.zero_grad()
    losses.loss(y * model(X)).backward()
    g = model.w.grad
    for i, t in enumerate(h.steps):
        expected = root(g, int(t))
        assert h.observed["log10_grad_max"][i] == pytest.approx(math.log10(g.abs().max()), rel=1e-10)
        assert h.observed["log10_root_v_max"][i] == pytest.approx(math.log10(expected.max()), rel=1e-10)
        assert h.observed["log10_root_v_min"][i] == pytest.approx(math.log10(expected.min()), rel=1e-10)
    opt = optim.make(name, [model.w], 0.0, **options)
    assert opt.root_second_moments() == []  # no state before the first step


def test_adaptive_scales_do_not_depend_on_the_frame(small_data):
    """The observer reports the plain loss's units: framed and plain runs agree while the
    frame has moved by e^{25} and more."""
    run = train.Run("Adam", 0.05, steps=300, model=TWO, options={"eps": 1e-20, "betas": (0.5, 0.5)})
    framed, plain = (train.train(run, small_data, norms=(), frame=f, progress=False, device="cpu",
                                 observe=train.adaptive_scales)[0] for f in (True, False))
    assert framed.log_loss[-1] < -25
    for key in ("log10_grad_max", "log10_root_v_max", "log10_root_v_min"):
        assert np.isfinite(framed.observed[key]).all()
        np.testing.assert_allclose(framed.observed[key], plain.observed[key], rtol=1e-8)
    assert framed.observed["log10_grad_max"][-1] < framed.observed["log10_grad_max"][0] - 8


def test_adaptive_scales_without_a_second_moment(small_data):
    run = train.Run("SignGD", 0.1, steps=5, model=LIN)
    h = train.train(run, small_data, norms=(), progress=False, device="cpu",
                    observe=train.adaptive_scales)[0]
    assert np.isfinite(h.observed["log10_grad_max"]).all()
    assert np.isnan(h.observed["log10_root_v_max"]).all() and np.isnan(h.observed["log10_root_v_min"]).all()


# --- sweeps: chunks, directions kept, the store from the environment ------------------------


def test_train_refuses_bad_sweep_options():
    X, y = data.digits_even_odd(n=60)
    run = train.Run("NormalizedGD", 0.1, 5, model=TWO)
    for bad in (0, -1, 2.5, "all"):
        with pytest.raises(ValueError, match="directions must be"):
            train.train(run, (X, y), progress=False, directions=bad)
    with pytest.raises(ValueError, match="progress must be"):
        train.train(run, (X, y), progress="steps")


def test_chunks_follow_max_batch_and_keep_the_run_order():
    X, y = data.digits_even_odd(n=60)
    runs = [train.Run(o, 0.1, 5, seed=s, model=m) for m in (TWO, LIN) for o in ("NormalizedGD", "Adam")
            for s in range(3)]
    chunks = train.chunks(runs, {"data": (X, y)}, max_batch=4)
    assert [c for c, _ in chunks] == [[0, 1, 2, 3], [4, 5], [6, 7, 8, 9], [10, 11]]
    assert train.chunks(runs, {"data": (X, y)}, engine="loop")[0] == ([0], "engine='loop'")
    out = train.train(runs[:4], (X, y), progress=False, max_batch=3, directions=False)
    assert all(h.directions.shape[0] == 0 and h.engine["runs"] in (1, 3) for h in out)


def test_a_thinned_history_finds_each_direction_by_its_step(small_data):
    """``train(directions=k)`` keeps k rows: every reader finds a row through its step
    (``direction_grid``, ``direction_row``, ``on_direction_grid``), never through ``steps``."""
    run = train.Run("NormalizedGD", 0.5, 200, schedule=0.5, model=LIN)
    full, thin = (train.train(run, small_data, progress=False, engine="loop", directions=d)[0]
                  for d in (True, 5))
    np.testing.assert_array_equal(thin.directions, thinned(full, 5).directions)
    np.testing.assert_array_equal(thin.direction_grid, thinned(full, 5).direction_steps)
    np.testing.assert_array_equal(full.direction_grid, full.steps)
    assert len(thin.direction_grid) == len(thin.directions) == 5 < len(thin.steps)
    for row, step in enumerate(thin.direction_grid):
        assert thin.direction_row(step) == row
        np.testing.assert_array_equal(thin.directions[row], full.directions[full.direction_row(step)])
    assert thin.direction_row(thin.direction_grid[1] + 1) == 2  # the first kept row at or after a step
    np.testing.assert_array_equal(thin.on_direction_grid(thin.log_loss),
                                  full.log_loss[np.isin(full.steps, thin.direction_grid)])
    assert thin.cosine_to_final().shape == (5,)
    with pytest.raises(ValueError, match="no direction kept"):
        thin.direction_row(thin.steps[-1] + 1)


def test_the_store_can_come_from_the_environment(tmp_path, monkeypatch):
    from implicit_bias import store

    monkeypatch.setenv("IMPLICIT_BIAS_STORE", str(tmp_path))
    X, y = data.digits_even_odd(n=60)
    out = train.train(train.Run("NormalizedGD", 0.1, 5, model=TWO), (X, y), progress=False)
    assert isinstance(out, list) and len(store.RunStore(tmp_path)) == 1
    (key,) = store.RunStore(tmp_path).keys()
    assert np.array_equal(out[0].log_loss, store.RunStore(tmp_path).load(key).log_loss)
