"""Optimizers: oracles against torch.optim where the maths coincide, single-step checks of
each update rule against an independent computation, the learning-rate schedule, the
framed-loss support (``rescale_gradients``), and bad input."""

from __future__ import annotations

import inspect
import math
import warnings

import pytest
import torch
from helpers import F64, flat, logistic_loss, rel_err
from implicit_bias import data, models, optim, rules, train


def two_layer(seed: int = 0, d: int = 6, width: int = 8) -> models.TwoLayer:
    return models.TwoLayer(d, width, activation="relu2", seed=seed)


@pytest.fixture(scope="module")
def problem():
    X, y = data.gaussian(n=30, d=6, seed=3)
    return X, y


def train_steps(model, X, y, opt, steps: int = 20, scales=None, after_step=None):
    """``steps`` full-batch steps on the logistic loss. ``scales`` maps a step index to a
    factor c: before that step ``opt.rescale_gradients(c)`` is called and the loss is
    multiplied by the running product of the factors from then on. ``after_step`` (a
    scheduler's ``step``) is called after each."""
    scale = 1.0
    for t in range(steps):
        if scales and t in scales:
            opt.rescale_gradients(scales[t])
            scale *= scales[t]
        opt.zero_grad()
        logistic_loss(model, X, y, scale).backward()
        if getattr(opt, "needs_per_sample_gradients", False):
            for p, g in zip(model.parameters(), train.per_sample_gradients(model, X, y, scale=scale)):
                p.grad_sample = g
        opt.step()
        if after_step is not None:
            after_step()
    return [p.detach().clone() for p in model.parameters()]


def grads_of(model, X, y):
    model.zero_grad()
    logistic_loss(model, X, y).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def svd_polar(g: torch.Tensor) -> torch.Tensor:
    """Polar factor ``U Vᵀ`` from torch.linalg.svd in float64 (a vector is a 1×n row)."""
    m = g.reshape(1, -1) if g.dim() == 1 else g
    U, _, Vh = torch.linalg.svd(m, full_matrices=False)
    return (U @ Vh).reshape(g.shape)


# --- oracles: torch.optim -------------------------------------------------------------------

TORCH_ORACLES = {
    "Adam(eps=1e-8)": (lambda p: optim.Adam(p, lr=0.01, betas=(0.9, 0.99), eps=1e-8),
                       lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.99), eps=1e-8)),
    "Adam(eps=0)": (lambda p: optim.Adam(p, lr=0.01, betas=(0.8, 0.95), eps=0.0),
                    lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.95), eps=0.0)),
    "AdamW": (lambda p: optim.AdamW(p, lr=0.01, weight_decay=0.1),
              lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
    # Our momentum is the EMA m ← βm + (1−β)g (zero init); torch's buffer is Σ β^k g, so
    # ours is (1−β)× torch's and the rates differ by that factor.
    "MomentumGD(unnormalized)": (lambda p: optim.MomentumGD(p, lr=0.5, momentum=0.9, normalized=False),
                                 lambda p: torch.optim.SGD(p, lr=0.5 * (1 - 0.9), momentum=0.9)),
    "RMSProp": (lambda p: optim.RMSProp(p, lr=0.01, beta2=0.95, eps=1e-8),
                lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.95, eps=1e-8)),
    "RMSProp(momentum)": (lambda p: optim.RMSProp(p, lr=0.01, beta2=0.95, eps=1e-8, momentum=0.8),
                          lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.95, eps=1e-8, momentum=0.8)),
    "AdaGrad": (lambda p: optim.AdaGrad(p, lr=0.1, eps=1e-10),
                lambda p: torch.optim.Adagrad(p, lr=0.1, eps=1e-10)),
    # torch's names with torch's defaults (the learning rate too): nothing passed
    **{f"{ours.__name__}(defaults)": (ours, theirs) for ours, theirs in (
        (optim.Adam, torch.optim.Adam), (optim.AdamW, torch.optim.AdamW),
        (optim.RMSProp, torch.optim.RMSprop), (optim.AdaGrad, torch.optim.Adagrad))},
}


@pytest.mark.parametrize("case", list(TORCH_ORACLES))
def test_matches_torch_optim(case, problem):
    X, y = problem
    ours, theirs = TORCH_ORACLES[case]
    start = flat(two_layer())
    m1, m2 = two_layer(), two_layer()
    assert all(bool((g != 0).all()) for g in grads_of(m1, X, y))  # no dead unit: eps=0 is safe
    a = train_steps(m1, X, y, ours(list(m1.parameters())))
    b = train_steps(m2, X, y, theirs(list(m2.parameters())))
    assert rel_err(a, b) < 1e-10
    assert rel_err(b, start) > 1e-3  # the runs really moved


@pytest.mark.parametrize("ours, theirs", [(optim.RMSProp, torch.optim.RMSprop),
                                           (optim.Adam, torch.optim.Adam), (optim.AdamW, torch.optim.AdamW)])
def test_one_cycle_lr_as_on_torchs_optimizer(ours, theirs, problem):
    """OneCycleLR at its defaults (it cycles the rate and the momentum, or β1) steps our
    optimizer as it steps torch's of the same name."""
    X, y = problem
    m1, m2 = two_layer(), two_layer()
    trajectories = []
    for model, cls in ((m1, ours), (m2, theirs)):
        opt = cls(list(model.parameters()), lr=0.01)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=12)
        trajectories.append(train_steps(model, X, y, opt, steps=10, after_step=sched.step))
    assert rel_err(*trajectories) < 1e-10


#: Optimizers without one momentum shared by all their groups: OneCycleLR needs
#: cycle_momentum=False for them, as for torch.optim.Adagrad (it says so with a ValueError).
NO_SHARED_MOMENTUM = {"AdaGrad", "AdamProxy", "MuonAdam"}


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
@pytest.mark.parametrize("scheduler", ["OneCycleLR", "CosineAnnealingLR", "StepLR"])
def test_torch_schedulers_work_for_every_optimizer(name, scheduler, problem):
    X, y = problem
    model = two_layer()
    opt = optim.make(name, list(model.parameters()), 0.01)
    lr_scheduler = torch.optim.lr_scheduler
    make = {"OneCycleLR": lambda **kw: lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=8, **kw),
            "CosineAnnealingLR": lambda: lr_scheduler.CosineAnnealingLR(opt, T_max=8),
            "StepLR": lambda: lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)}[scheduler]
    if scheduler == "OneCycleLR" and name in NO_SHARED_MOMENTUM:
        with pytest.raises(ValueError, match="momentum or beta1"):
            make()
        sched = make(cycle_momentum=False)
    else:
        sched = make()
    rates = []

    def after_step():
        sched.step()
        rates.append(opt.param_groups[0]["lr"])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchMuon's 1-D parameters, ε = 0 notes
        after = train_steps(model, X, y, opt, steps=5, after_step=after_step)
    assert len(set(rates)) > 1 and all(torch.isfinite(p).all() for p in after)


@pytest.mark.parametrize("shape,lr_factor", [((6, 12), 1.0), ((12, 6), math.sqrt(2.0))])
def test_newton_schulz_muon_matches_torch_muon(shape, lr_factor):
    """``Muon(polar='newton_schulz', ns_dtype=bfloat16)`` against ``torch.optim.Muon``
    (no weight decay, no Nesterov) on one 2-D parameter. torch multiplies the rate by
    sqrt(max(1, rows/cols)): 1 for rows ≤ cols; for the tall case we pass lr·sqrt(2).

    Both take an EMA momentum in float64 (``lerp`` in torch, ``β m + (1−β) g`` here, which
    may differ in the last bit), cast it to bfloat16, run the same five quintic
    Newton–Schulz steps in bfloat16 and add the result to the float64 parameter. In
    practice the two agree bit for bit; the tolerance allows a few bfloat16 roundings
    (2⁻⁸ relative) of the accumulated update to flip without hiding a real difference
    (Nesterov, a missing (1−β), another rate scaling all change every step by O(lr))."""
    rows, cols = shape
    X, y = data.gaussian(n=30, d=cols, seed=4)
    a = torch.linspace(-1.0, 1.0, rows, dtype=F64)
    W0 = torch.randn(rows, cols, dtype=F64, generator=torch.Generator().manual_seed(5)) * 0.3
    lr, beta, steps = 0.02, 0.9, 10

    def run(make_opt):
        W = torch.nn.Parameter(W0.clone())
        opt = make_opt([W])
        for _ in range(steps):
            opt.zero_grad()
            q = y * (torch.relu(X @ W.T) ** 2 @ a)
            torch.log1p(torch.exp(-q)).sum().backward()
            opt.step()
        return W.detach()

    ours = run(lambda p: optim.Muon(p, lr=lr * lr_factor, momentum=beta, polar="newton_schulz",
                                    ns_dtype=torch.bfloat16))
    theirs = run(lambda p: torch.optim.Muon(p, lr=lr, momentum=beta, weight_decay=0.0, nesterov=False,
                                            adjust_lr_fn=None))
    assert float((theirs - W0).norm()) > 5 * lr  # it moved
    assert float((ours - theirs).abs().max()) <= steps * lr * 2**-7


@pytest.mark.parametrize("d,width", [(6, 8), (8, 6)])
def test_torch_muon_wrapper_equals_our_newton_schulz_muon(problem, d, width):
    """``TorchMuon(nesterov=False)`` runs ``torch.optim.Muon`` on the two-layer model (the
    output vector as a 1×n matrix, torch's sqrt(rows/cols) factor divided out): it follows
    our bfloat16 Newton–Schulz Muon to within a few bfloat16 roundings per step, and
    Nesterov (torch's default) really changes the trajectory."""
    X, y = data.gaussian(n=30, d=d, seed=3)
    lr, steps = 0.02, 10
    start = flat(two_layer(d=d, width=width))

    def run(make):
        model = two_layer(d=d, width=width)
        return flat(train_steps(model, X, y, make(list(model.parameters())), steps=steps))

    ours = run(lambda p: optim.Muon(p, lr=lr, momentum=0.9, polar="newton_schulz", ns_dtype=torch.bfloat16))
    theirs = run(lambda p: optim.TorchMuon(p, lr=lr, momentum=0.9, nesterov=False))
    nesterov = run(lambda p: optim.TorchMuon(p, lr=lr, momentum=0.9))
    assert float((theirs - start).norm()) > 5 * lr  # it moved
    assert float((ours - theirs).abs().max()) <= steps * lr * 2**-7
    assert float((nesterov - theirs).abs().max()) > max(1e-3, 10 * float((ours - theirs).abs().max()))


def test_torch_muon_wrapper_clears_the_model_gradients(problem):
    X, y = problem
    model = two_layer()
    opt = optim.TorchMuon(list(model.parameters()), lr=0.01)
    logistic_loss(model, X, y).backward()
    opt.step()
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="momentum"):
        optim.TorchMuon(list(model.parameters()), lr=0.01, momentum=1.0)


def test_exact_muon_is_the_polar_factor_of_the_ema_momentum(problem):
    X, y = problem
    model = two_layer()
    lr, beta = 0.05, 0.8
    opt = optim.Muon(list(model.parameters()), lr=lr, momentum=beta)
    m = [torch.zeros_like(p) for p in model.parameters()]
    for _ in range(4):
        before = [p.detach().clone() for p in model.parameters()]
        g = grads_of(model, X, y)
        m = [beta * mi + (1 - beta) * gi for mi, gi in zip(m, g)]
        opt.step()
        for p, p0, mi in zip(model.parameters(), before, m):
            torch.testing.assert_close(p.detach(), p0 - lr * svd_polar(mi), rtol=0, atol=1e-12)


def test_spectral_descent_step_is_the_polar_factor(problem):
    X, y = problem
    model = two_layer()
    g = grads_of(model, X, y)
    before = [p.detach().clone() for p in model.parameters()]
    optim.SpectralDescent(list(model.parameters()), lr=0.1).step()
    for p, p0, gi in zip(model.parameters(), before, g):
        torch.testing.assert_close(p.detach(), p0 - 0.1 * svd_polar(gi), rtol=0, atol=1e-13)


def test_sign_gd_step(problem):
    X, y = problem
    model = two_layer()
    g = grads_of(model, X, y)
    before = [p.detach().clone() for p in model.parameters()]
    optim.SignGD(list(model.parameters()), lr=0.03).step()
    for p, p0, gi in zip(model.parameters(), before, g):
        torch.testing.assert_close(p.detach() - p0, -0.03 * torch.sign(gi), rtol=0, atol=1e-15)


def test_signum_is_the_sign_of_the_ema_momentum(problem):
    X, y = problem
    model = two_layer()
    opt = optim.Signum(list(model.parameters()), lr=0.01, momentum=0.7)
    m = [torch.zeros_like(p) for p in model.parameters()]
    for _ in range(3):
        before = [p.detach().clone() for p in model.parameters()]
        m = [0.7 * mi + 0.3 * gi for mi, gi in zip(m, grads_of(model, X, y))]
        opt.step()
        for p, p0, mi in zip(model.parameters(), before, m):
            torch.testing.assert_close(p.detach(), p0 - 0.01 * torch.sign(mi), rtol=0, atol=1e-15)


def test_normalized_gd_step_has_length_lr(problem):
    X, y = problem
    model = two_layer()
    g = flat(grads_of(model, X, y))
    before = flat(model)
    optim.NormalizedGD(list(model.parameters()), lr=0.25).step()
    step = flat(model) - before
    assert float(step.norm()) == pytest.approx(0.25, rel=1e-13)
    torch.testing.assert_close(step, -0.25 * g / g.norm(), rtol=0, atol=1e-15)


def test_momentum_gd_normalized_step(problem):
    X, y = problem
    model = two_layer()
    opt = optim.MomentumGD(list(model.parameters()), lr=0.1, momentum=0.5)
    m = torch.zeros_like(flat(model))
    for _ in range(3):
        before = flat(model)
        m = 0.5 * m + 0.5 * flat(grads_of(model, X, y))
        opt.step()
        torch.testing.assert_close(flat(model) - before, -0.1 * m / m.norm(), rtol=0, atol=1e-14)


def test_coordinate_descent_moves_exactly_one_coordinate(problem):
    X, y = problem
    model = two_layer()
    g = flat(grads_of(model, X, y))
    before = flat(model)
    optim.CoordinateDescent(list(model.parameters()), lr=0.2).step()
    step = flat(model) - before
    j = int(g.abs().argmax())
    assert int((step != 0).sum()) == 1
    assert float(step[j]) == pytest.approx(-0.2 * float(torch.sign(g[j])), rel=1e-15)


def test_muon_signum_splits_matrices_and_vectors(problem):
    X, y = problem
    model = two_layer()
    W0, a0 = (p.detach().clone() for p in model.parameters())
    gW, ga = grads_of(model, X, y)
    opt = optim.MuonSignum(list(model.parameters()), lr=0.05, lr_signum=0.002, momentum=0.9)
    assert [len(g["params"]) for g in opt.param_groups] == [1, 1]
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.002]
    opt.step()  # first momentum is (1−β)g: same polar factor and sign as g
    torch.testing.assert_close(model.W.detach(), W0 - 0.05 * svd_polar(gW), rtol=0, atol=1e-13)
    torch.testing.assert_close(model.a.detach(), a0 - 0.002 * torch.sign(ga), rtol=0, atol=1e-15)
    # lr_signum defaults to lr.
    default = optim.MuonSignum(list(two_layer().parameters()), lr=0.3)
    assert [g["lr"] for g in default.param_groups] == [0.3, 0.3]


def test_muon_adam_splits_matrices_and_vectors(problem):
    X, y = problem
    model = two_layer()
    W0, a0 = (p.detach().clone() for p in model.parameters())
    gW, ga = grads_of(model, X, y)
    opt = optim.MuonAdam(list(model.parameters()), lr=0.05, lr_adam=0.003)
    assert [g["rule"] for g in opt.param_groups] == ["steepest", "adam"]
    opt.step()  # Adam's first step with ε = 0 is m̂/√v̂ = g/|g| = sign(g)
    torch.testing.assert_close(model.W.detach(), W0 - 0.05 * svd_polar(gW), rtol=0, atol=1e-13)
    torch.testing.assert_close(model.a.detach(), a0 - 0.003 * torch.sign(ga), rtol=0, atol=1e-15)
    # After that the vector block follows Adam exactly: compare with torch.optim.Adam.
    ref = torch.nn.Parameter(a0.clone())
    torch_adam = torch.optim.Adam([ref], lr=0.003, betas=(0.9, 0.99), eps=0.0)
    m2 = two_layer()
    opt2 = optim.MuonAdam(list(m2.parameters()), lr=0.05, lr_adam=0.003)
    for _ in range(5):
        gW, ga = grads_of(m2, X, y)
        ref.grad = ga
        torch_adam.step()
        opt2.step()
    torch.testing.assert_close(m2.a.detach(), ref.detach(), rtol=1e-12, atol=1e-14)


def test_power_schedule():
    p = torch.nn.Parameter(torch.zeros(3, dtype=F64))
    q = torch.nn.Parameter(torch.zeros(2, 2, dtype=F64))
    opt = optim.MuonSignum([q, p], lr=0.4, lr_signum=0.1)
    sched = optim.power_schedule(opt, 0.8)
    for t in (1, 2, 3):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.4 * t**-0.8, rel=1e-14)
        assert opt.param_groups[1]["lr"] == pytest.approx(0.1 * t**-0.8, rel=1e-14)
        before = p.detach().clone()
        p.grad, q.grad = torch.ones_like(p), torch.eye(2, dtype=F64)
        opt.step()
        sched.step()
        # The rate in force at step t is the one the step used.
        torch.testing.assert_close(before - p.detach(), torch.full_like(p, 0.1 * t**-0.8), rtol=1e-14, atol=0)
    sign = optim.SignGD([p], lr=0.5)
    constant = optim.power_schedule(sign, 0.0)
    p.grad = torch.ones_like(p)
    sign.step()
    constant.step()
    assert sign.param_groups[0]["lr"] == 0.5
    for bad in (-0.5, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="exponent"):
            optim.power_schedule(opt, bad)


def test_rule_helpers():
    a, x = torch.tensor([1.0, 2.0], dtype=F64), torch.tensor([3.0, -1.0], dtype=F64)
    torch.testing.assert_close(rules.ema(rules.Entry([a]), [x], 0.25).tensors[0], 0.25 * a + 0.75 * x)
    # Unnormalized ℓ2 steepest step is the direction itself (gradient descent), divided
    # by the frame's gradient scale.
    from implicit_bias.norms import L2

    hyper = dict(momentum=0.0, norm=L2(), normalized=False, frame=math.log(4.0))
    (step,) = rules.steepest([x[None]], {}, hyper, [1], [a[None]]).directions
    torch.testing.assert_close(step[0], x / 4.0)
    (step,) = rules.steepest([x[None]], {}, dict(hyper, normalized=True), [1], [a[None]]).directions
    torch.testing.assert_close(step[0], x / x.norm())
    # Adam's first bias-corrected step with ε = 0 is the sign of the gradient.
    g = torch.tensor([0.5, -3.0, 0.0], dtype=F64)
    hyper = dict(betas=(0.9, 0.99), eps=0.0, frame=0.0)
    (d,), state, dead = rules.adam([g[None]], {}, hyper, [1], [g[None]])
    torch.testing.assert_close(d[0], torch.sign(g))
    assert dead  # the zero coordinate had 0/0, set to 0
    d, dead = rules.scaled_by_root([g], [g * g], 1e-3)
    assert not dead and torch.isfinite(d[0]).all()


# --- framed loss: rescaling gradients and state leaves the trajectory unchanged ----------------

RESCALE_CASES = {
    "NormalizedGD": dict(lr=0.05),
    "MomentumGD": dict(lr=0.05, momentum=0.9),
    "MomentumGD(unnormalized)": dict(lr=0.3, momentum=0.9, normalized=False),
    "SignGD": dict(lr=0.005),
    "Signum": dict(lr=0.005, momentum=0.9),
    "CoordinateDescent": dict(lr=0.05),
    "SpectralDescent": dict(lr=0.05),
    "Muon": dict(lr=0.05, momentum=0.9),
    "Muon(newton_schulz)": dict(lr=0.05, momentum=0.9, polar="newton_schulz"),
    "TorchMuon": dict(lr=0.05, momentum=0.9),
    # ε > 0 comparable to the gradients, so its rescaling with the gradients matters.
    "Adam": dict(lr=0.01, betas=(0.9, 0.99), eps=1e-2),
    "RMSProp": dict(lr=0.01, beta2=0.9, eps=1e-2),
    "AdaGrad": dict(lr=0.1, eps=1e-1),
    "AdamW": dict(lr=0.01, eps=1e-2, weight_decay=0.1),
    "Lion": dict(lr=0.005, weight_decay=0.1),
    "ClippedAdam": dict(lr=0.01, eps=1e-2, clip=0.5),
    "AdamProxy": dict(lr=0.01),
    "MuonSignum": dict(lr=0.05, lr_signum=0.005, momentum=0.9),
    "MuonAdam": dict(lr=0.05, lr_adam=0.005, eps=1e-2),
}


def test_rescale_cases_cover_every_optimizer():
    assert {case.split("(")[0] for case in RESCALE_CASES} == set(optim.OPTIMIZERS)


@pytest.mark.parametrize("case", list(RESCALE_CASES))
def test_rescaled_gradients_give_the_same_trajectory(case, problem):
    X, y = problem
    options = dict(RESCALE_CASES[case])
    lr = options.pop("lr")
    name = case.split("(")[0]
    results = []
    # Rescale up by 1e6 before step 5 and down by 1e-9 before step 12 (net 1e-3).
    for scales in (None, {5: 1e6, 12: 1e-9}):
        model = two_layer()
        opt = optim.make(name, list(model.parameters()), lr, **options)
        results.append(train_steps(model, X, y, opt, steps=20, scales=scales))
    assert rel_err(results[1], results[0]) < 1e-10
    assert rel_err(results[0], flat(two_layer())) > 1e-3


def test_rescaling_without_telling_the_optimizer_changes_adam(problem):
    """The check above has teeth: with ε > 0, scaling the loss without
    ``rescale_gradients`` does change Adam's trajectory."""
    X, y = problem
    out = []
    for scale in (1.0, 1e3):
        model = two_layer()
        opt = optim.Adam(list(model.parameters()), lr=0.01, eps=1e-2)
        for _ in range(10):
            opt.zero_grad()
            logistic_loss(model, X, y, scale).backward()
            opt.step()
        out.append(flat(model))
    assert rel_err(out[1], out[0]) > 1e-4


@pytest.mark.parametrize("name", ["Adam", "RMSProp", "AdaGrad"])
def test_eps_zero_survives_a_frame_beyond_float64(name):
    """The frame's factor e^F is beyond float64 once the loss is below ~1e-308; ε = 0 must
    stay 0 then (0·inf would be NaN)."""
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=F64))
    opt = optim.make(name, [p], 0.1, eps=0.0)
    for ratio in (1e300, 1e300):
        opt.rescale_gradients(ratio)
    assert opt.param_groups[0]["frame"] == pytest.approx(2 * math.log(1e300))
    p.grad = torch.tensor([1e-10, -3e-12], dtype=F64)
    opt.step()
    assert torch.isfinite(p).all()
    # First step: g/|g| for Adam (bias-corrected) and AdaGrad; RMSProp's v = (1−β₂)g²
    # with β₂ = 0.99 gives g/(0.1|g|).
    step = 1.0 if name == "RMSProp" else 0.1
    want = torch.tensor([1.0 - step, -2.0 + step], dtype=F64)
    torch.testing.assert_close(p.detach(), want, rtol=0, atol=1e-14)


def test_rescale_by_a_ratio_whose_square_overflows_a_python_float():
    """Adam's second moment scales by ratio²; ratio = 1e200 is fine when the state is small
    (gradients of the old frame were ~1e-150), although 1e200**2 is not a Python float."""
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=F64))
    opt = optim.Adam([p], lr=0.1, betas=(0.9, 0.99), eps=1e-8)
    p.grad = torch.tensor([3e-150, -1e-151], dtype=F64)
    opt.step()
    opt.rescale_gradients(1e200)
    v = optim.state_value(opt.state[p], "exp_avg_sq")
    torch.testing.assert_close(v, 0.01 * torch.tensor([9e100, 1e98], dtype=F64), rtol=1e-12, atol=0)
    assert opt.param_groups[0]["frame"] == pytest.approx(math.log(1e200))


#: The direction of the first step's state, g1 = (1, 0.5), when the new gradient g2 is
#: e^1381 times smaller than it (``None``: a step of about e^-690, i.e. none).
G1 = torch.tensor([1.0, 0.5], dtype=F64)
ADAM_2 = (0.9 * 0.1 * G1 / 0.19) / (0.99 * 0.01 * G1 * G1 / 0.0199).sqrt()  # m̂/√v̂ at t = 2
OUTLASTING = {
    "MomentumGD": G1 / G1.norm(), "Signum": torch.sign(G1), "Lion": torch.sign(G1),
    "Adam": ADAM_2, "AdamW": ADAM_2, "RMSProp": None, "AdaGrad": None,
}


@pytest.mark.parametrize("name", list(OUTLASTING))
def test_a_state_far_larger_than_the_gradients_never_overflows(name):
    """After the frame moves by e^1381 (the loss fell that much faster than the state
    forgets) the state is e^1381 times the new gradients: beyond float64, so it is kept with
    a log-factor, finite, and its direction decides the next step as the algebra says."""
    options = {"eps": 0.0, "betas": (0.9, 0.99)} if name in ("Adam", "AdamW") else {}
    options.update({"weight_decay": 0.0} if name == "AdamW" else {})
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=F64))
    opt = optim.make(name, [p], 0.1, **options)
    p.grad = G1.clone()
    opt.step()
    before = p.detach().clone()
    for _ in range(2):
        opt.rescale_gradients(1e300)
    state = opt.state[p]
    assert all(torch.isfinite(x).all() for x in state.values() if torch.is_tensor(x))
    assert any(key.endswith("_log_factor") for key in state)
    p.grad = torch.tensor([-1.0, 3.0], dtype=F64)  # opposite in sign to g1: it must not matter
    opt.step()
    step = (before - p.detach()) / 0.1
    want = OUTLASTING[name]
    if want is None:
        assert float(step.abs().max()) < 1e-200
    else:
        torch.testing.assert_close(step, want, rtol=1e-12, atol=0)


# --- bad input ---------------------------------------------------------------------------------


def params():
    return list(two_layer().parameters())


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
@pytest.mark.parametrize("lr", [-0.1, float("nan"), float("inf")])
def test_bad_learning_rate(name, lr):
    with pytest.raises(ValueError, match="Learning rate must be a finite number"):
        optim.make(name, params(), lr)


def test_bad_hybrid_learning_rates():
    with pytest.raises(ValueError, match="Learning rate"):
        optim.MuonSignum(params(), lr=0.1, lr_signum=-1.0)
    with pytest.raises(ValueError, match="Learning rate"):
        optim.MuonAdam(params(), lr=0.1, lr_adam=-1.0)


@pytest.mark.parametrize("build,key", [
    (lambda: optim.MomentumGD(params(), lr=0.1, momentum=1.0), "momentum"),
    (lambda: optim.Signum(params(), lr=0.1, momentum=-0.1), "momentum"),
    (lambda: optim.Muon(params(), lr=0.1, momentum=1.5), "momentum"),
    (lambda: optim.MuonSignum(params(), lr=0.1, momentum=1.0), "momentum"),
    (lambda: optim.MuonAdam(params(), lr=0.1, momentum=1.0), "momentum"),
    (lambda: optim.MuonAdam(params(), lr=0.1, betas=(0.9, 1.0)), "beta2"),
    (lambda: optim.Adam(params(), lr=0.1, betas=(1.0, 0.99)), "beta1"),
    (lambda: optim.Adam(params(), lr=0.1, betas=(-0.1, 0.99)), "beta1"),
    (lambda: optim.Adam(params(), lr=0.1, betas=(0.9, 1.0)), "beta2"),
    (lambda: optim.RMSProp(params(), lr=0.1, beta2=1.0), "beta2"),
    (lambda: optim.RMSProp(params(), lr=0.1, beta2=float("nan")), "beta2"),
])
def test_bad_momentum_or_beta(build, key):
    with pytest.raises(ValueError, match=rf"{key} must lie in \[0, 1\)"):
        build()


@pytest.mark.parametrize("name", ["Adam", "RMSProp", "AdaGrad", "MuonAdam"])
def test_negative_eps(name):
    with pytest.raises(ValueError, match="eps must be ≥ 0"):
        optim.make(name, params(), 0.1, eps=-1e-8)


@pytest.mark.parametrize("name", ["SpectralDescent", "Muon", "MuonSignum", "MuonAdam", "TorchMuon"])
def test_the_muon_family_flattens_convolution_kernels_one_way(name):
    # (out, in, kh, kw) -> out × (in·kh·kw), as Keller Jordan's Muon: the same step as on the matrix.
    torch.manual_seed(0)
    kernel = torch.nn.Parameter(torch.randn(4, 3, 2, 2, dtype=F64))
    matrix = torch.nn.Parameter(kernel.detach().reshape(4, -1).clone())
    grad = torch.randn(4, 3, 2, 2, dtype=F64)
    for p, g in ((kernel, grad), (matrix, grad.reshape(4, -1))):
        opt = optim.make(name, [p], 0.1)
        p.grad = g.clone()
        opt.step()
    torch.testing.assert_close(kernel.detach().reshape(4, -1), matrix.detach(), rtol=0, atol=1e-12)


def test_other_construction_errors():
    with pytest.raises(ValueError, match="Unknown optimizer 'Lino'"):
        optim.make("Lino", params(), 0.1)
    with pytest.raises(TypeError, match="Norm"):
        optim.SteepestDescent(params(), norm=3, lr=0.1)
    with pytest.raises(ValueError, match="Unknown norm"):
        optim.SteepestDescent(params(), norm="l7", lr=0.1)
    by_name = optim.SteepestDescent(params(), norm="linf", lr=0.1)
    assert isinstance(by_name.param_groups[0]["norm"], optim.Linf)
    with pytest.raises(TypeError, match="plain list of parameters"):
        optim.MuonSignum([{"params": params()}], lr=0.1)
    opt = optim.SignGD(params(), lr=0.1)
    for ratio in (0.0, -2.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="finite and positive"):
            opt.rescale_gradients(ratio)


def test_beta1_above_beta2_warns():
    with pytest.warns(UserWarning, match="beta1 = 0.99 > beta2 = 0.9"):
        optim.Adam(params(), lr=0.1, betas=(0.99, 0.9))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optim.Adam(params(), lr=0.1, betas=(0.9, 0.99))


@pytest.mark.parametrize("name", ["Adam", "RMSProp", "AdaGrad"])
def test_eps_zero_with_a_dead_parameter_warns_once_and_stays_finite(name):
    live = torch.nn.Parameter(torch.tensor([0.5, -1.0], dtype=F64))
    dead = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0], dtype=F64))  # gradient exactly 0
    unused = torch.nn.Parameter(torch.tensor([4.0], dtype=F64))  # never gets a gradient
    opt = optim.make(name, [live, dead, unused], 0.1, eps=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            opt.zero_grad()
            (torch.exp(-live.sum()) + 0.0 * dead.sum()).backward()
            opt.step()
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(runtime) == 1 and "eps = 0" in str(runtime[0].message)
    assert "same zero step" in str(runtime[0].message)  # says what to do, and that ε > 0 is no fix
    for p in (live, dead, unused):
        assert torch.isfinite(p).all()
    assert dead.tolist() == [1.0, 2.0, 3.0] and unused.tolist() == [4.0]
    assert live.tolist() != [0.5, -1.0]


def test_adam_eps_zero_dead_coordinate_others_follow_torch(problem):
    """A zero feature makes one weight's gradient exactly 0: we keep that weight fixed
    (and warn) while the others follow torch.optim.Adam on the problem without that
    feature (torch itself would turn the dead weight, and through it everything, to NaN)."""
    X, y = problem
    X = X.clone()
    X[:, 2] = 0.0
    keep = [0, 1, 3, 4, 5]
    ours = models.Linear(6, seed=1)
    w0 = ours.w.detach().clone()
    with pytest.warns(RuntimeWarning, match="eps = 0"):
        a = train_steps(ours, X, y, optim.Adam(list(ours.parameters()), lr=0.05, betas=(0.9, 0.99), eps=0.0),
                        steps=10)[0]
    reduced = models.Linear(5)
    with torch.no_grad():
        reduced.w.copy_(w0[keep])
    torch_adam = torch.optim.Adam(list(reduced.parameters()), lr=0.05, betas=(0.9, 0.99), eps=0.0)
    b = train_steps(reduced, X[:, keep], y, torch_adam, steps=10)[0]
    assert torch.isfinite(a).all() and a[2] == w0[2]
    torch.testing.assert_close(a[keep], b, rtol=1e-12, atol=0)
    assert float((b - w0[keep]).abs().min()) > 0.1


def test_no_warning_when_every_gradient_is_nonzero(problem):
    X, y = problem
    model = two_layer()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_steps(model, X, y, optim.Adam(list(model.parameters()), lr=0.01, eps=0.0), steps=3)


def test_eps_positive_gives_a_dead_coordinate_the_same_zero_step():
    """The 0/0 := 0 convention of ε = 0 is the ε → 0 limit: with ε > 0 a coordinate whose
    gradient is exactly zero does not move either, and the other coordinates agree."""
    runs = {}
    for eps in (0.0, 1e-30):
        p = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0], dtype=F64))
        opt = optim.Adam([p], lr=0.1, eps=eps)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(5):
                opt.zero_grad()
                torch.exp(-p[:2].sum()).backward()
                opt.step()
        runs[eps] = p.detach().clone()
    assert runs[0.0][2] == 2.0 and runs[1e-30][2] == 2.0
    torch.testing.assert_close(runs[0.0], runs[1e-30], rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_torch_flags_at_their_defaults_change_nothing_and_others_say_why(name):
    """Code written for torch passes its flags: at torch's defaults (and foreach/fused at any
    value) the optimizer steps exactly as without them; any other value is refused with the
    reason, never a bare TypeError."""
    cls = optim.OPTIMIZERS[name]
    if not issubclass(cls, optim.RuleOptimizer):
        pytest.skip(f"{name} is torch's own optimizer")
    torch.manual_seed(0)
    start = [torch.randn(3, 4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)]
    grads = [torch.randn_like(t) for t in start]
    own = set(inspect.signature(cls).parameters)
    flags = {f: default for f, (default, _) in optim.TORCH_FLAGS.items() if f not in own}
    finals = []
    for kw in ({}, {**flags, "foreach": True, "fused": False}):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = cls(params, 0.1, **kw)
            for _ in range(3):
                for p, g in zip(params, grads):
                    p.grad, p.grad_sample = g.clone(), g.unsqueeze(0).clone()  # AdamProxy's per-sample
                opt.step()
        finals.append([p.detach().clone() for p in params])
    assert all(torch.equal(a, b) for a, b in zip(*finals))
    for flag, (_, why) in optim.TORCH_FLAGS.items():
        if why is None or flag in own:
            continue
        wrong = 0.01 if flag == "weight_decay" else True
        with pytest.raises(ValueError, match=rf"{name}\({flag}=.*not supported: "):
            cls([torch.nn.Parameter(start[0].clone())], 0.1, **{flag: wrong})


def test_a_flag_the_optimizer_takes_itself_keeps_its_meaning():
    """AdamW's and Lion's weight_decay is their own (decoupled), not refused."""
    assert "weight_decay" in inspect.signature(optim.AdamW).parameters
    opt = optim.AdamW([torch.nn.Parameter(torch.ones(2))], 0.1, weight_decay=0.1)
    assert opt.param_groups[0]["weight_decay"] == 0.1


def test_the_dead_coordinate_warning_points_at_the_users_line():
    """An ε = 0 step that meets 0/0 warns once, at the line that called ``step()`` (here),
    not inside torch's optimizer wrappers."""
    p = torch.nn.Parameter(torch.ones(2, dtype=F64))
    opt = optim.Adam([p], 0.1, betas=(0.9, 0.99), eps=0.0)
    p.grad = torch.tensor([1.0, 0.0], dtype=F64)  # the second coordinate never gets a gradient
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt.step()
    (w,) = [w for w in caught if "eps = 0" in str(w.message)]
    assert w.filename == __file__, w.filename
