"""The library as a user meets it: the optimizers keep torch.optim's conventions (frozen
parameters, added groups, checkpoints, schedulers, groups as geometry), and the open doors
of a sweep work and check their input (a model factory, a foreign torch optimizer, a
registered rule and optimizer, numpy data, a norm object)."""

from __future__ import annotations

import copy
import io
import math
import warnings

import numpy as np
import pytest
import torch
from helpers import flat, logistic_loss, rel_err
from implicit_bias import batched, models, norms, optim, rules, train
from implicit_bias.runs import Run

#: The built-in optimizers (a test below registers its own for a while).
BUILT_IN = sorted(optim.OPTIMIZERS)
#: Those made of registered rules (TorchMuon is torch.optim.Muon itself).
RULE_BASED = [name for name in BUILT_IN if issubclass(optim.OPTIMIZERS[name], optim.RuleOptimizer)]
HYBRIDS = ["MuonSignum", "MuonAdam"]
QUIET = dict(progress=False, device="cpu")


def two_layer():
    return models.TwoLayer(5, 4, activation="relu2", seed=0)


def step(model, opt, X, y, scale: float = 1.0):
    """One full-batch step on the logistic loss; per-sample gradients for the parameters
    that have a gradient when the optimizer needs them (AdamProxy)."""
    opt.zero_grad()
    logistic_loss(model, X, y, scale).backward()
    if getattr(opt, "needs_per_sample_gradients", False):
        for p, g in zip(model.parameters(), train.per_sample_gradients(model, X, y, scale=scale)):
            if p.grad is not None:
                p.grad_sample = g
    opt.step()


def snapshot(model):
    return [p.detach().clone() for p in model.parameters()]


def state_of(opt, model, i):
    """The optimizer state of the model's i-th parameter (TorchMuon keeps it on a shadow)."""
    p = opt._shadows[i] if isinstance(opt, optim.TorchMuon) else list(model.parameters())[i]
    return opt.state.get(p, {})


# --- torch.optim conventions -------------------------------------------------------------


@pytest.mark.parametrize("frozen", [0, 1], ids=["W", "a"])
@pytest.mark.parametrize("name", BUILT_IN)
def test_parameters_without_a_gradient_are_neither_moved_nor_given_state(name, frozen, small_data):
    model = two_layer()
    opt = optim.make(name, list(model.parameters()), 0.05)
    list(model.parameters())[frozen].requires_grad_(False)
    before = snapshot(model)
    for _ in range(3):
        step(model, opt, *small_data)
    after = snapshot(model)
    other = 1 - frozen
    assert torch.equal(after[frozen], before[frozen])
    assert len(state_of(opt, model, frozen)) == 0
    assert not torch.equal(after[other], before[other])
    assert len(state_of(opt, model, other)) > 0


@pytest.mark.parametrize("name", RULE_BASED)
def test_an_added_group_is_stepped_and_joins_the_loss_frame(name, small_data):
    """A parameter added after some steps (and after the frame moved) is stepped, in the
    optimizer's frame; the first group is not disturbed."""
    X, y = small_data
    model = two_layer()
    W, a = model.W, model.a
    opt = optim.make(name, [W], 0.05)
    a.requires_grad_(False)
    for _ in range(2):
        step(model, opt, X, y)
    opt.rescale_gradients(8.0)
    a.requires_grad_(True)
    opt.add_param_group({"params": [a]})
    assert all(g["frame"] == pytest.approx(math.log(8.0)) for g in opt.param_groups)
    a_before = a.detach().clone()
    step(model, opt, X, y, scale=8.0)
    assert not torch.equal(a.detach(), a_before)
    opt.rescale_gradients(2.0)
    assert all(g["frame"] == pytest.approx(math.log(16.0)) for g in opt.param_groups)


@pytest.mark.parametrize("name", [n for n in RULE_BASED if n not in HYBRIDS])
def test_an_added_group_equals_a_group_given_at_construction(name, small_data):
    X, y = small_data
    models_ = [two_layer(), two_layer()]
    added = optim.make(name, [models_[0].W], 0.05)
    added.add_param_group({"params": [models_[0].a], "lr": 0.02})
    given = optim.make(name, [{"params": [models_[1].W]}, {"params": [models_[1].a], "lr": 0.02}], 0.05)
    for _ in range(5):
        step(models_[0], added, X, y)
        step(models_[1], given, X, y)
    assert rel_err(models_[0], models_[1]) < 1e-14


@pytest.mark.parametrize("name", HYBRIDS)
def test_a_hybrid_splits_an_added_group_into_matrices_and_the_rest(name, small_data):
    """A group without a rule joins the hybrid split: the matrix W to Muon, the vectors to
    Signum/Adam. The rules act per tensor (polar factor) or per coordinate (sign, Adam), so
    the result equals the hybrid built over all parameters at once."""
    X, y = small_data
    nets = [models.TwoLayerWithVectorUnit(5, 4, seed=0) for _ in range(2)]
    W, a, v, b = nets[0].parameters()
    added = optim.make(name, [a], 0.05)
    added.add_param_group({"params": [W, v, b]})
    assert [(g["rule"], len(g["params"])) for g in added.param_groups][1:] == [
        ("steepest", 1), (added.param_groups[0]["rule"], 2)]
    assert added.param_groups[1]["params"][0] is W
    whole = optim.make(name, list(nets[1].parameters()), 0.05)
    for _ in range(5):
        step(nets[0], added, X, y)
        step(nets[1], whole, X, y)
    assert rel_err(nets[0], nets[1]) < 1e-14


@pytest.mark.parametrize("name", BUILT_IN)
def test_checkpoints_load_with_weights_only_and_reproduce_the_next_step(name, small_data, tmp_path):
    X, y = small_data
    model = two_layer()
    opt = optim.make(name, list(model.parameters()), 0.05)
    scale = 1.0
    for t in range(4):
        if t == 2:  # the frame has moved once: the checkpoint must carry it
            opt.rescale_gradients(3.0)
            scale = 3.0
        step(model, opt, X, y, scale)
    path = tmp_path / "opt.pt"
    torch.save(opt.state_dict(), path)
    state = torch.load(path, weights_only=True)
    twin = copy.deepcopy(model)
    fresh = optim.make(name, list(twin.parameters()), 0.05)
    fresh.load_state_dict(state)
    step(model, opt, X, y, scale)
    step(twin, fresh, X, y, scale)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)


def test_a_checkpoint_of_another_norm_is_refused():
    params = list(two_layer().parameters())
    saved = io.BytesIO()
    torch.save(optim.SteepestDescent(params, norms.L2(), 0.1).state_dict(), saved)
    saved.seek(0)
    state = torch.load(saved, weights_only=True)
    with pytest.raises(ValueError, match="saved with norm L2"):
        optim.SteepestDescent(params, norms.Linf(), 0.1).load_state_dict(state)
    optim.SteepestDescent(params, norms.L2(), 0.1).load_state_dict(state)  # the same norm loads


@pytest.mark.parametrize("name", ["Adam", "AdamW", "Lion", "MuonAdam"])
def test_adam_like_groups_carry_betas_as_torch(name):
    opt = optim.make(name, list(two_layer().parameters()), 0.01, betas=(0.8, 0.9))
    adam_like = [g for g in opt.param_groups if g["rule"] != "steepest"]
    assert adam_like and all(g["betas"] == (0.8, 0.9) for g in adam_like)
    assert all("beta1" not in g and "beta2" not in g for g in opt.param_groups)


def test_one_cycle_cycles_adams_betas(small_data):
    model = two_layer()
    opt = optim.Adam(model.parameters(), 0.01, betas=(0.9, 0.99), eps=1e-8)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=6)
    seen = []
    for _ in range(5):
        step(model, opt, *small_data)
        sched.step()
        seen.append((opt.param_groups[0]["lr"], opt.param_groups[0]["betas"]))
    assert len({b for _, (b, _) in seen}) > 1 and all(b2 == 0.99 for _, (_, b2) in seen)
    assert all(math.isfinite(p) for p in flat(model).tolist())


def test_one_cycle_runs_on_muon_adam(small_data):
    """torch's OneCycleLR cycles one momentum key ('momentum' or 'betas') across all
    groups; Muon-Adam's Muon group has 'momentum', its Adam group 'betas', so it cycles the
    rates only (cycle_momentum=False)."""
    model = two_layer()
    opt = optim.MuonAdam(model.parameters(), 0.01, lr_adam=0.02)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[0.05, 0.1], total_steps=6, cycle_momentum=False)
    lrs = []
    for _ in range(5):
        step(model, opt, *small_data)
        sched.step()
        lrs.append([g["lr"] for g in opt.param_groups])
    assert len({lr for lr, _ in lrs}) > 1 and all(b == pytest.approx(2 * m) for m, b in lrs)


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_parameter_groups_are_steepest_descent_for_a_weighted_max_norm(momentum, small_data):
    """NormalizedGD with groups at rates η_1, η_2 is steepest descent at rate 1 for
    ``max_g ‖θ_g‖_2 / η_g`` (MaxNorm with weights 1/η_g), as optim's docstring says; one
    group of both is another geometry (ℓ2 of all parameters)."""
    X, y = small_data
    eta = (0.05, 0.02)
    nets = [two_layer() for _ in range(3)]
    groups = [{"params": [nets[0].W], "lr": eta[0]}, {"params": [nets[0].a], "lr": eta[1]}]
    grouped = optim.NormalizedGD(groups, lr=eta[0], momentum=momentum)
    max_norm = norms.MaxNorm([(norms.L2(), [0], 1 / eta[0]), (norms.L2(), [1], 1 / eta[1])])
    steepest = optim.SteepestDescent(list(nets[1].parameters()), max_norm, lr=1.0, momentum=momentum)
    one_group = optim.NormalizedGD(list(nets[2].parameters()), lr=eta[0], momentum=momentum)
    for _ in range(10):
        for net, opt in zip(nets, (grouped, steepest, one_group)):
            step(net, opt, X, y)
    assert rel_err(nets[0], nets[1]) < 1e-13
    assert rel_err(nets[0], nets[2]) > 1e-3


# --- open doors ------------------------------------------------------------------------


class ReLUNet(torch.nn.Module):
    """A user's own bias-free two-layer ReLU net: ``f(x) = Σ_j a_j relu(w_j·x)``, degree 2."""

    def __init__(self, d, width=6, degree=2, column=False):
        super().__init__()
        self.W = torch.nn.Parameter(torch.randn(width, d) / math.sqrt(d))
        self.a = torch.nn.Parameter(torch.randn(width) / math.sqrt(width))
        self.column = column
        if degree is not None:
            self.degree = degree

    def forward(self, X):
        out = torch.relu(X @ self.W.T) @ self.a
        return out[:, None] if self.column else out


def close(h, g, tol=1e-10):
    """Two histories of one run agree to ``tol`` (relative) in every logged quantity."""
    assert np.array_equal(h.steps, g.steps)
    for a, b in [(h.log_loss, g.log_loss), (h.directions, g.directions), (h.param_norm, g.param_norm),
                 *((h.margins[k], g.margins[k]) for k in g.margins)]:
        assert np.linalg.norm(a - b) <= tol * np.linalg.norm(b)
    assert h.margins.keys() == g.margins.keys()


@pytest.mark.parametrize("name", ["Adam", "Muon"])
def test_a_model_factory_trains_in_the_batched_engine_as_in_the_loop(name, small_data):
    options = {"betas": (0.5, 0.5), "eps": 1e-20} if name == "Adam" else {}  # Adam's regime: β2 forgets
    runs = [Run(name, 0.05, 150, model=ReLUNet, seed=s, options=options, label=f"{name} {s}") for s in (0, 1)]
    fast = train.train(runs, small_data, norms=("l2", "spectral"), **QUIET)
    loop = train.train(runs, small_data, norms=("l2", "spectral"), engine="loop", **QUIET)
    for h, g in zip(fast, loop):
        assert h.engine["name"] == "batched" and h.engine["runs"] == 2
        assert isinstance(h.model, ReLUNet)
        close(h, g)
    assert fast[0].log_loss[-1] < fast[0].log_loss[0]
    assert not np.allclose(fast[0].directions[-1], fast[1].directions[-1])  # each its own seed


def test_a_factory_may_declare_its_degree_as_a_float(small_data):
    (h,) = train.train(Run("Muon", 0.05, 10, model=lambda d: ReLUNet(d, degree=2.0)), small_data,
                       norms=("l2",), **QUIET)
    assert h.engine["name"] == "batched" and h.model.degree == 2.0


class CountingSGD(torch.optim.SGD):
    steps = 0

    def step(self, closure=None):
        CountingSGD.steps += 1
        return super().step(closure)


@pytest.mark.parametrize("factory, error, message", [
    (lambda d: ReLUNet(d, degree=None), TypeError, "Run 'mine': ReLUNet has no `degree`"),
    (lambda d: ReLUNet(d, degree="two"), TypeError, "`degree` must be a number"),
    (lambda d: ReLUNet(d, degree=3), ValueError, r"declares degree 3 but f\(cθ\) = c\^2.00"),
    (lambda d: ReLUNet(d, column=True), ValueError, r"shape \(20, 1\).*squeeze"),
], ids=["no degree", "not a number", "wrong degree", "(n, 1) output"])
def test_a_bad_model_factory_is_refused_before_training(factory, error, message, small_data):
    for optimizer in ("Adam", CountingSGD):  # the batched engine, and the loop
        CountingSGD.steps = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # CountingSGD trains unframed
            with pytest.raises(error, match=message):
                train.train(Run(optimizer, 0.05, 20, model=factory, label="mine"), small_data, **QUIET)
        assert CountingSGD.steps == 0


def test_a_foreign_torch_optimizer_trains_unframed_in_the_loop(small_data):
    """torch.optim.SGD(lr=η, momentum=β) is our unnormalized MomentumGD at rate η/(1−β)."""
    run = Run(torch.optim.SGD, 0.05, 100, model={"kind": "two_layer", "width": 4}, options={"momentum": 0.9})
    with pytest.warns(RuntimeWarning, match="SGD has no reframe or rescale_gradients"):
        (h,) = train.train(run, small_data, norms=("l2",), **QUIET)
    assert h.engine["name"] == "loop" and "SGD" in h.engine["reason"]
    assert "registered update rules" in h.engine["reason"] and h.run.label == "SGD"
    ours = Run("MomentumGD", 0.05 / (1 - 0.9), 100, model=run.model,
               options={"momentum": 0.9, "normalized": False})
    (g,) = train.train(ours, small_data, norms=("l2",), **QUIET)
    assert g.engine["name"] == "batched"
    close(h, g)


@pytest.fixture
def scaled_signum():
    """A user's rule (the sign of the EMA momentum times a number c) and its optimizer,
    registered for one test and removed afterwards."""

    @rules.register("scaled_sign_test", state={"exp_avg": 1}, numbers=("beta", "scale"))
    def scaled_sign(grads, state, hyper, steps, params):
        m = rules.ema(rules.entry(state, "exp_avg", grads), grads, hyper["beta"])
        u = [norms.column(hyper["scale"], x) * torch.sign(x) for x in m.tensors]
        return rules.Update(u, {"exp_avg": m})

    class ScaledSignum(optim.RuleOptimizer):
        def __init__(self, params, lr, beta=0.9, scale=1.0):
            super().__init__(params, dict(rule="scaled_sign_test", lr=lr, beta=beta, scale=scale))

    optim.register(ScaledSignum)
    yield ScaledSignum
    del rules.RULES["scaled_sign_test"], optim.OPTIMIZERS["ScaledSignum"]


def test_a_registered_rule_and_optimizer_train_in_the_batched_engine(scaled_signum, small_data):
    """By name, two runs with their own numbers in one stack, through frame moves: equal
    to the loop, and to Signum at rate η·c (the maths it is)."""
    model = {"kind": "two_layer", "width": 4}
    runs = [Run("ScaledSignum", 0.05, 200, model=model, options={"beta": 0.5, "scale": 2.0}),
            Run("ScaledSignum", 0.1, 200, model=model, schedule=0.1, options={"beta": 0.8, "scale": 0.5})]
    fast = train.train(runs, small_data, norms=("l2", "linf"), **QUIET)
    loop = train.train(runs, small_data, norms=("l2", "linf"), engine="loop", **QUIET)
    assert [h.engine["name"] for h in fast] == ["batched", "batched"] and fast[0].engine["runs"] == 2
    assert fast[0].log_loss[-1] < -2 * 20  # the frame has moved, and the state with it
    for h, g in zip(fast, loop):
        close(h, g)
    signum = [Run("Signum", 0.05 * 2.0, 200, model=model, options={"momentum": 0.5}),
              Run("Signum", 0.1 * 0.5, 200, model=model, schedule=0.1, options={"momentum": 0.8})]
    for h, g in zip(fast, train.train(signum, small_data, norms=("l2", "linf"), **QUIET)):
        close(h, g)
    assert batched.why_not(runs[0]) is None


def test_registering_leaves_no_trace(small_data):
    assert "scaled_sign_test" not in rules.RULES and "ScaledSignum" not in optim.OPTIMIZERS
    with pytest.raises(TypeError, match="torch.optim.Optimizer subclass"):
        optim.register(dict)


def test_numpy_data_and_norm_objects(small_data):
    X, y = small_data
    run = Run("Muon", 0.05, 60, model={"kind": "two_layer", "width": 4})
    mine = norms.MaxNorm([(norms.L2(), [0], 1.0), (norms.Linf(), [1], 2.0)], name="mine")
    for engine in ("auto", "loop"):
        (h,) = train.train(run, (X, y), norms=("l2", mine), engine=engine, **QUIET)
        (g,) = train.train(run, (X.numpy(), y.numpy()), norms=("l2", mine), engine=engine, **QUIET)
        assert h.margins.keys() == {"l2", "mine"}
        close(h, g, tol=0)
        with torch.no_grad():
            expected = float((y * h.model(X)).min() / mine(list(h.model.parameters())) ** h.model.degree)
        assert h.final("mine") == pytest.approx(expected, rel=1e-12)


def test_why_not_names_the_reason_a_run_goes_to_the_loop():
    lin = {"kind": "linear"}
    torch_muon = batched.why_not(Run("TorchMuon", 0.1, 5, model=lin))
    assert "TorchMuon: it is not built from registered update rules" in torch_muon
    assert "per-sample gradients" in batched.why_not(Run("AdamProxy", 0.1, 5, model=lin))
    assert "Adagrad: it is not built from registered update rules" in batched.why_not(
        Run(torch.optim.Adagrad, 0.1, 5, model=lin))
    assert batched.why_not(Run(optim.Adam, 0.1, 5, model=lin)) is None  # a class of ours: batched

    class PerSample(optim.Adam):
        needs_per_sample_gradients = True

    assert "PerSample: it needs per-sample gradients" == batched.why_not(Run(PerSample, 0.1, 5, model=lin))
