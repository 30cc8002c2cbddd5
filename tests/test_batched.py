"""The batched engine against the reference loop: per-run results equal to 1e−10 for
every optimizer it takes, with per-run rates, schedules, β's, ε, seeds and frames; the
stacked models against the models themselves; and the engine's choices (which runs it
takes, how many at once)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers import flat, rel_err
from hypothesis import given
from hypothesis import strategies as st
from implicit_bias import batched, models, norms, optim, stacked, train
from oracle_v030 import loop as oracle_loop
from oracle_v030 import optim as oracle_optim
from test_train import FRAME_CASES, LIN, TWO

UNBATCHED = {name for name in optim.OPTIMIZERS if batched.why_not(train.Run(name, 0.1, 1)) is not None}
BATCHED = sorted(set(optim.OPTIMIZERS) - UNBATCHED)

# Per optimizer: two more runs beside FRAME_CASES' one, with other numbers (rate,
# schedule, β, ε) in the same stack. Every run reaches losses where its frame has moved.
# ε = 0 on the squared-ReLU net is left to Adam alone: a unit whose input is 0 in one
# engine and 1e-17 in the other has a gradient of 0 or 1e-34, and ε = 0 turns that into
# a step of 0 or O(η) (any perturbation would; the dynamics, not the engine, decide).
VARIANTS = {
    "NormalizedGD": [dict(lr=0.4, schedule=0.1), dict(lr=0.5, options={"momentum": 0.5})],
    "MomentumGD": [dict(lr=0.4, options={"momentum": 0.5}), dict(lr=0.5, options={"momentum": 0.0})],
    "SignGD": [dict(lr=0.15), dict(lr=0.3, schedule=0.1)],
    "Signum": [dict(lr=0.4, options={"momentum": 0.5}), dict(lr=0.6, schedule=0.2)],
    "CoordinateDescent": [dict(lr=0.4), dict(lr=0.8, schedule=0.1)],
    # Spectral descent at larger rates (0.05–0.08, schedule 0.2) passes near-degenerate
    # singular values where 1-ulp differences grow to 1e-10 … 1e-2 (chaotic dynamics, the
    # same in either engine): the equality is tested where the dynamics are stable.
    "SpectralDescent": [dict(lr=0.015), dict(lr=0.03, schedule=0.1)],
    "Muon": [dict(lr=0.04, options={"momentum": 0.5}), dict(lr=0.08, schedule=0.3)],
    "Adam": [dict(lr=0.04, options={"eps": 0.0, "betas": (0.5, 0.6)}),
             dict(lr=0.08, schedule=0.3, options={"eps": 1e-12, "betas": (0.3, 0.5)})],
    "RMSProp": [dict(lr=0.04, options={"eps": 1e-20, "beta2": 0.6}),
                dict(lr=0.15, schedule=0.3, options={"eps": 1e-6, "beta2": 0.5})],
    "AdaGrad": [dict(lr=200.0), dict(lr=400.0, schedule=0.2, options={"eps": 0.0})],
    "MuonSignum": [dict(lr=0.04, options={"lr_signum": 0.02}), dict(lr=0.05, options={"momentum": 0.5})],
    "MuonAdam": [dict(lr=0.04, options={"lr_adam": 0.02, "eps": 1e-8, "betas": (0.5, 0.5)}),
                 dict(lr=0.05, schedule=0.3, options={"eps": 1e-12, "betas": (0.5, 0.6)})],
    "AdamW": [dict(lr=0.04, options={"eps": 1e-12, "betas": (0.5, 0.6), "weight_decay": 0.0}),
              dict(lr=0.08, schedule=0.3, options={"eps": 1e-8, "betas": (0.3, 0.5), "weight_decay": 1e-3})],
    "Lion": [dict(lr=0.4, options={"betas": (0.5, 0.6)}),
             dict(lr=0.6, schedule=0.1, options={"weight_decay": 1e-5})],
    "ClippedAdam": [dict(lr=0.04, options={"eps": 0.0, "betas": (0.5, 0.6), "clip": 0.3}),
                    dict(lr=0.08, schedule=0.3, options={"eps": 1e-12, "betas": (0.3, 0.5), "clip": 2.0})],
}


def sweep(name):
    model, lr, options = FRAME_CASES[name]
    base = dict(lr=lr, options=options)
    return [train.Run(name, steps=300, model=model, label=f"{name} {i}", **{**base, **variant})
            for i, variant in enumerate([{}, *VARIANTS[name]])]


def both(runs, dataset, **kwargs):
    kwargs = {"norms": ("l2", "linf"), "progress": False, "device": "cpu", **kwargs}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="eps = 0 and some coordinate")
        fast = train.train(runs, dataset, engine="batched", **kwargs)
        slow = train.train(runs, dataset, engine="loop", **kwargs)
    return fast, slow


def assert_same(fast, slow, tol=1e-10):
    for a, b in zip(fast, slow, strict=True):
        assert a.run is b.run
        assert a.engine["name"] == "batched" and b.engine["name"] == "loop"
        assert rel_err(a.model, b.model) < tol, a.run.label
        np.testing.assert_array_equal(a.steps, b.steps)
        np.testing.assert_allclose(a.log_loss, b.log_loss, rtol=tol, atol=tol)
        np.testing.assert_allclose(a.param_norm, b.param_norm, rtol=tol)
        # unit vectors: compared as whole vectors, like the parameters
        assert np.linalg.norm(a.directions - b.directions, axis=1).max() < tol, a.run.label
        assert a.margins.keys() == b.margins.keys()
        for name in a.margins:
            np.testing.assert_allclose(a.margins[name], b.margins[name], rtol=tol, atol=tol)


def test_variants_cover_every_batched_optimizer():
    assert set(VARIANTS) == set(BATCHED)
    assert set(BATCHED) - set(oracle_optim.OPTIMIZERS) == {"AdamW", "Lion", "ClippedAdam"}
    assert UNBATCHED == {"TorchMuon", "AdamProxy"}


@pytest.mark.parametrize("name", sorted(set(BATCHED) & set(oracle_optim.OPTIMIZERS)))
def test_batched_runs_equal_the_frozen_oracle(name, small_data):
    # Version 0.3.0's loop and optimizers (tests/oracle_v030), the engine's reference.
    runs = sweep(name)
    fast, _ = both(runs, small_data)
    for run, h in zip(runs, fast, strict=True):
        model, log_loss = oracle_loop.train(run, *small_data)
        assert rel_err(h.model, model) < 1e-10, run.label
        assert abs(h.log_loss[-1] - log_loss) < 1e-10 * max(1.0, abs(log_loss))


@pytest.mark.parametrize("name", BATCHED)
def test_batched_runs_equal_the_loop(name, small_data):
    fast, slow = both(sweep(name), small_data)
    assert fast[0].engine["runs"] == 3
    for h in slow:
        assert h.log_loss[-1] < -20  # every run's frame has moved at least once
    assert_same(fast, slow)


def test_one_stack_of_every_optimizer_equals_the_loop(small_data):
    """All optimizers of one model in one stack: one segment per optimizer structure, and
    optimizers of one structure (NormalizedGD, MomentumGD) share a segment."""
    runs = [r for name in BATCHED if FRAME_CASES[name][0] == TWO for r in sweep(name)]
    fast, slow = both(runs, small_data)
    assert {h.engine["runs"] for h in fast} == {len(runs)}
    assert_same(fast, slow)


@pytest.mark.parametrize("run", [
    train.Run("Muon", 0.05, 200, model=TWO, options={"polar": "newton_schulz"}),
    train.Run("Muon", 0.05, 200, model=TWO, options={"polar": "newton_schulz", "ns_steps": 3}),
    train.Run("MomentumGD", 0.05, 200, model=TWO, options={"normalized": False}),
    train.Run("NormalizedGD", 0.3, 200, schedule=0.5, model={"kind": "diagonal", "depth": 3}),
    train.Run("Adam", 0.05, 200, schedule=0.5, model={"kind": "mlp", "hidden": [4, 3], "activation": "relu"}),
    train.Run("NormalizedGD", 0.5, 200, schedule=0.5, model={**TWO, "activation": "relu"}),
    train.Run("SignGD", 0.02, 200, schedule=0.5, model={**TWO, "activation": "quadratic"}),
    train.Run("Muon", 0.05, 200, schedule=0.5, model={**TWO, "activation": ("relu_power", 3)}),
    train.Run("Adam", 0.05, 200, schedule=0.5, model={**TWO, "activation": "linear"},
              options={"eps": 1e-8}),
    train.Run("Adam", 0.1, 200, schedule=0.5, model=TWO, dtype="float32"),
], ids=lambda r: f"{r.optimizer}-{r.model['kind']}-{r.model.get('activation', '')}-{r.dtype}")
def test_other_models_and_options_equal_the_loop(run, small_data):
    fast, slow = both([run], small_data)
    assert_same(fast, slow, tol=1e-10 if run.dtype == "float64" else 1e-4)


def test_matrix_inputs_with_spectral_steps_equal_the_loop():
    """A linear model on 3×4 matrix inputs. Spectral steps there are chaotic after some
    100 steps (the loop itself moves by 1e-2 at step 200 when X changes by 1e-15: the
    polar factor of a gradient with a tiny singular value), so compare before that."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(60, 3, 4, generator=g, dtype=torch.float64)
    score = (X * torch.randn(3, 4, generator=g, dtype=torch.float64)).sum((1, 2))
    X, y = X[score.abs() > 1.0], torch.sign(score[score.abs() > 1.0])
    runs = [train.Run(o, 0.1, 100, schedule=0.5, model=LIN) for o in ("Muon", "SpectralDescent", "Adam")]
    fast, slow = both(runs, (X, y), norms=("l2", "spectral"))
    assert_same(fast, slow)


@pytest.mark.parametrize("scheme,size", [("cyclic", 1), ("replacement", 3), ("reshuffle", 4)])
@pytest.mark.parametrize("model", [LIN, TWO], ids=["linear", "two_layer"])
def test_batch_schemes_equal_the_loop(scheme, size, model, small_data):
    runs = [train.Run(o, lr, 300, schedule=0.5, seed=seed, model=model, batch=scheme, batch_size=size,
                      options=opts)
            for seed in (0, 3)
            for o, lr, opts in (("Adam", 0.05, {"betas": (0.5, 0.6)}), ("Signum", 0.05, {}))]
    fast, slow = both(runs, small_data)
    assert_same(fast, slow)


def test_both_engines_warn_when_a_batch_underflows_the_frame(small_data):
    """Stateless sign steps per batch of 3, far from the smallest margin: the engine warns
    at the same steps as the loop (the count is compared with every warning shown)."""
    run = train.Run("SignGD", 10.0, 400, model=LIN, batch="cyclic", batch_size=3, seed=2)
    counts = []
    for engine in ("batched", "loop"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train.train(run, small_data, norms=("l2",), progress=False, device="cpu", engine=engine)
        counts.append(sum("framed loss is below float64's range" in str(w.message) for w in caught))
    assert counts[0] == counts[1] > 0, counts


def test_chunks_equal_one_stack_and_keep_the_order(small_data):
    runs = [train.Run(o, 0.1, 120, schedule=0.5, seed=s, model=TWO)
            for s in range(3) for o in ("NormalizedGD", "Adam")]
    runs.insert(2, train.Run("TorchMuon", 0.05, 120, model=TWO))  # goes to the loop
    runs.insert(4, train.Run("NormalizedGD", 0.1, 90, model=TWO))  # another group (steps)
    kw = dict(norms=("l2",), progress=False, device="cpu")
    whole = train.train(runs, small_data, **kw)
    parts = train.train(runs, small_data, max_batch=2, **kw)
    for a, b, run in zip(whole, parts, runs, strict=True):
        assert a.run is run and b.run is run
        assert rel_err(a.model, b.model) < 1e-12
    assert [h.engine["name"] for h in whole] == ["batched"] * 2 + ["loop"] + ["batched"] * 5
    assert [h.engine["runs"] for h in whole if h.engine["name"] == "batched"] == [6, 6, 6, 1, 6, 6, 6]
    assert max(h.engine["runs"] for h in parts if h.engine["name"] == "batched") == 2
    assert all(h.engine["peak_bytes"] > 0 for h in whole if h.engine["name"] == "batched")


def everything(model, optimizer, frame):
    """An observer that reads all the loop offers: parameters, gradients, every state
    buffer, the scheduled rate, the gradient scale and the frame."""
    out = {"frame": frame}
    for i, p in enumerate(model.parameters()):
        out[f"p{i}"], out[f"g{i}"] = p.detach().numpy().copy(), p.grad.numpy().copy()
        for name, value in optimizer.state[p].items():
            out[f"{name}{i}"] = np.asarray(value.numpy() if torch.is_tensor(value) else value, dtype=float)
    for i, group in enumerate(optimizer.param_groups):
        out[f"lr{i}"], out[f"frame{i}"] = group["lr"], group["frame"]
    out.update(train.adaptive_scales(model, optimizer, frame))
    return out


@pytest.mark.parametrize("name", ["MomentumGD", "Adam", "RMSProp", "AdaGrad", "MuonAdam"])
def test_observers_see_what_the_loop_shows_them(name, small_data):
    """``observe`` in the engine gets each run's own model and optimizer objects, holding
    the loop's parameters, gradients, state, rate and scale at every logged step (a
    MomentumGD run at β = 0 has no momentum buffer, as in the loop)."""
    fast, slow = both(sweep(name), small_data, observe=everything)
    for a, b in zip(fast, slow, strict=True):
        assert a.engine["name"] == "batched" and b.engine["name"] == "loop"
        assert set(a.observed) == set(b.observed), (a.run.label, set(a.observed) ^ set(b.observed))
        for key, expected in b.observed.items():
            got = a.observed[key]
            assert got.shape == expected.shape, key
            np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))  # NaN: no √v̂
            got, expected = np.nan_to_num(got), np.nan_to_num(expected)
            assert np.linalg.norm(got - expected) <= 1e-10 * np.linalg.norm(expected), (a.run.label, key)


def test_the_engine_leaves_unbatched_runs_to_the_loop(small_data):
    kw = dict(norms=("l2",), progress=False, device="cpu")
    runs = [train.Run("TorchMuon", 0.05, 20, model=TWO), train.Run("AdamProxy", 0.1, 20, model=LIN),
            train.Run("Adam", 0.1, 20, model=LIN)]
    assert [h.engine["name"] for h in train.train(runs, small_data, **kw)] == ["loop", "loop", "batched"]
    observed = train.train(runs, small_data, observe=lambda m, o, f: {"one": 1.0}, **kw)
    assert [h.engine["name"] for h in observed] == ["loop", "loop", "batched"]
    assert all(len(h.observed["one"]) == len(h.steps) for h in observed)
    for run in runs[:2]:
        with pytest.raises(ValueError, match="cannot be batched"):
            train.train(run, small_data, engine="batched", **kw)
    with pytest.raises(ValueError, match="engine must be one of"):
        train.train(runs[2], small_data, engine="fast", **kw)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="max_batch"):
            train.train(runs[2], small_data, max_batch=bad, **kw)


@pytest.mark.parametrize("engine", ["batched", "loop"])
def test_overflow_and_divergence_are_reported_per_run(engine, small_data):
    """A failed run raises RunFailed naming it; with failures='return' it comes back as
    that error in its place, and the other runs are what they are without it."""
    kw = dict(norms=("l2",), progress=False, device="cpu", engine=engine)
    fine = [train.Run("Muon", 0.01, 300, model=TWO, schedule=0.5, seed=s, label=f"fine {s}") for s in (0, 1)]
    bad = train.Run("MomentumGD", 1e200, 300, model=TWO, options={"normalized": False}, label="too fast")
    with pytest.raises(train.RunFailed, match="too fast.*(loss became|NaN or inf)") as caught:
        train.train([fine[0], bad, fine[1]], small_data, **kw)
    assert caught.value.run is bad and isinstance(caught.value, FloatingPointError)
    partial = caught.value.history  # what the run logged before it failed
    assert partial.run is bad and len(partial.steps) == len(partial.log_loss) >= 1
    got = train.train([fine[0], bad, fine[1]], small_data, failures="return", **kw)
    assert isinstance(got[1], train.RunFailed) and got[1].run is bad
    alone = train.train(fine, small_data, **kw)
    for h, ref in zip([got[0], got[2]], alone, strict=True):
        assert h.run is ref.run and h.engine["name"] == engine
        assert rel_err(h.model, ref.model) < 1e-12
        np.testing.assert_allclose(h.log_loss, ref.log_loss, rtol=1e-12)
    with pytest.raises(ValueError, match="failures must be one of"):
        train.train(fine, small_data, failures="ignore", **kw)


def test_dead_coordinates_warn_once_and_stay_finite(small_data):
    X, y = small_data
    X = X.clone()
    X[:, 0] = 0.0  # a constant-zero feature: its coordinate's gradient is always exactly 0
    runs = [train.Run("Adam", 0.1, 50, model=LIN, options={"eps": 0.0}, seed=s) for s in range(2)]
    with pytest.warns(RuntimeWarning, match="eps = 0") as record:
        (h, _) = train.train(runs, (X, y), norms=("l2",), progress=False, device="cpu", engine="batched")
    assert sum("eps = 0" in str(w.message) for w in record) == 1
    assert torch.isfinite(flat(h.model)).all()


def test_chunk_size_follows_memory_and_cache(monkeypatch):
    big = train.Run("NormalizedGD", 0.1, 10, model={"kind": "two_layer", "width": 128})
    cpu = torch.device("cpu")
    per_run_activations = 3 * 1797 * 128 * 8
    assert batched.chunk_size(big, 1797, 8320, cpu) == batched.CPU_WORKSET // per_run_activations
    monkeypatch.setattr(batched, "free_memory", lambda dev: 10 * per_run_activations)
    assert batched.chunk_size(big, 1797, 8320, cpu) == 4  # half of the free memory, with the state
    monkeypatch.setattr(batched, "free_memory", lambda dev: 1000)
    assert batched.chunk_size(big, 1797, 8320, cpu) == 1
    assert batched.free_memory.__module__  # the real one is restored by monkeypatch


# --- the stacked models --------------------------------------------------------------

SPECS = [{"kind": "linear"}, {"kind": "diagonal", "depth": 3},
         {"kind": "two_layer", "width": 5, "activation": "relu2"},
         {"kind": "two_layer", "width": 5, "activation": "relu"},
         {"kind": "two_layer", "width": 5, "activation": ("relu_power", 3)},
         {"kind": "two_layer", "width": 5, "activation": "quadratic"},
         {"kind": "mlp", "hidden": [4, 3], "activation": "relu2"}]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s['kind']}-{s.get('activation', '')}")
@pytest.mark.parametrize("per_run", [False, True], ids=["shared", "per-run"])
def test_stack_outputs_and_gradients_equal_each_model(spec, per_run, small_data):
    X, y = small_data
    nets = [models.build(spec, X.shape[1], seed=s) for s in range(3)]
    stack = stacked.stack(nets)
    assert stack.size == 3 and stack.degree == nets[0].degree
    if per_run:
        idx = torch.tensor([[0, 1, 2, 3], [4, 4, 5, 6], [7, 8, 9, 0]])
        inputs = [X[i] for i in idx]
        Xs = X[idx]
    else:
        inputs, Xs = [X] * 3, X
    df = torch.randn(3, inputs[0].shape[0], generator=torch.Generator().manual_seed(0), dtype=X.dtype)
    f = stack.forward(Xs)
    grads = stack.backward(df.clone())
    torch.testing.assert_close(stack.outputs(Xs), f, rtol=1e-13, atol=1e-13)
    for k, net in enumerate(nets):
        fk = net(inputs[k])
        torch.testing.assert_close(f[k], fk.detach(), rtol=1e-13, atol=1e-13)
        expected = torch.autograd.grad(fk, list(net.parameters()), grad_outputs=df[k])
        for g, e in zip(grads, expected, strict=True):
            torch.testing.assert_close(g[k], e, rtol=1e-12, atol=1e-12)
    assert type(stack).__name__ == {"linear": "LinearStack", "two_layer": "TwoLayerStack"}.get(
        spec["kind"], "Stack")


def test_stack_refuses_mixed_models():
    with pytest.raises(TypeError, match="one class"):
        stacked.stack([models.build({"kind": "linear"}, 3), models.build({"kind": "diagonal"}, 3)])


# --- the batched steepest directions -------------------------------------------------

NORMS = [norms.L2(), norms.Linf(), norms.L1(), norms.Spectral(), norms.Spectral("newton_schulz")]
shapes = st.lists(st.sampled_from([(), (3,), (4, 2), (2, 5), (3, 2, 2)]), min_size=1, max_size=3)


@given(shapes=shapes, seed=st.integers(0, 2**16), zero=st.booleans(),
       scale=st.sampled_from([1.0, 1e-30, 1e30]))
@pytest.mark.parametrize("norm", NORMS, ids=repr)
def test_batched_steepest_equals_each_run(norm, shapes, seed, zero, scale):
    g = torch.Generator().manual_seed(seed)
    ds = [torch.randn(4, *s, generator=g, dtype=torch.float64) * scale for s in shapes]
    if zero:
        for d in ds:
            d[1] = 0.0  # one run with a zero direction
    # The batched maths against the base class's run-by-run loop (what a user's norm gets).
    out = norm.steepest_stacked(ds)
    expected = norms.Norm.steepest_stacked(norm, ds)
    for u, e in zip(out, expected, strict=True):
        torch.testing.assert_close(u, e, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(norm.dual_stacked(ds), norms.Norm.dual_stacked(norm, ds), rtol=1e-12, atol=0)
