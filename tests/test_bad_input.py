"""The bad-input suite (issue 17): every bad or extreme input a careful user might try gets
a clear error that names the problem and the fix, a warning, or the right answer — never
a silent number, a raw traceback from deep inside, or a hang.

The cases are tables, one per area: data at every public entry; optimizer options;
models; certificates; non-finite values and failures during training; runs refused at
construction; extreme scales (the loss frame, large parameters); solvers at scale. Each
row builds something and states what must happen: ``raises(type, regex)``,
``warns(category, regex)`` or ``ok(check)`` (the result, with no warning).
"""

from __future__ import annotations

import signal
import time
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from implicit_bias import data, history, margins, models, norms, optim
from implicit_bias.kkt import kkt_certificate
from implicit_bias.maxmargin import max_margin
from implicit_bias.norms import Spectral
from implicit_bias.train import Run, RunFailed, train

F64 = torch.float64
NAN, INF = float("nan"), float("inf")


# --- outcomes -------------------------------------------------------------------------------


def raises(exc, match):
    return ("raises", exc, match)


def warns(category, match):
    return ("warns", category, match)


def ok(check=None):
    return ("ok", check, None)


def expect(build, outcome):
    """Run ``build()`` and assert ``outcome``; a correct result must come without warnings."""
    kind, what, match = outcome
    if kind == "raises":
        with pytest.raises(what, match=match):
            build()
    elif kind == "warns":
        with pytest.warns(what, match=match):
            build()
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = build()
        if what is not None:
            what(result)


@contextmanager
def deadline(seconds: float):
    """Fail instead of hanging: SIGALRM interrupts a Python loop that runs past ``seconds``."""

    def stop(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def points(n=12, d=5):
    return data.gaussian(n=n, d=d, seed=0)


def with_entry(x, index, value):
    x = x.clone()
    x[index] = value
    return x


LINEAR = {"kind": "linear"}


def quiet_train(runs_, data_, **kwargs):
    return train(runs_, data_, progress=False, **kwargs)


# --- data at every public entry ---------------------------------------------------------------

ENTRIES = [
    pytest.param(lambda X, y: quiet_train(Run("NormalizedGD", 0.1, 3, model=LINEAR), (X, y)), id="train"),
    pytest.param(lambda X, y: margins.normalized_margin(models.Linear(5), X, y), id="normalized_margin"),
    pytest.param(lambda X, y: margins.smoothed_margin(models.Linear(5), X, y), id="smoothed_margin"),
    pytest.param(lambda X, y: kkt_certificate(models.Linear(5), X, y), id="kkt_certificate"),
    pytest.param(lambda X, y: max_margin(X, y), id="max_margin"),
]

BAD_DATA = [
    pytest.param(lambda X, y: (X, (y + 1) / 2), r"Labels must be -1 or \+1.*2\*y - 1", id="labels-0-1"),
    pytest.param(lambda X, y: (X, 3 * y), r"Labels must be -1 or \+1", id="labels-3y"),
    pytest.param(lambda X, y: (X, with_entry(y, 0, 2 * y[0])), r"Labels must be -1 or \+1", id="one-label-2"),
    pytest.param(lambda X, y: (X, with_entry(y, 0, NAN)), r"Labels must be -1 or \+1.*nan", id="label-nan"),
    pytest.param(lambda X, y: (X, y[:, None]), r"\(12, 1\).*y\.reshape\(-1\)", id="y-shape-n-1"),
    pytest.param(
        lambda X, y: (X, y[:1]),
        r"one label per row|12 samples but y has 1 label|n = len\(y\)",
        id="one-label-for-12-samples",
    ),
    pytest.param(lambda X, y: (X[:0], y[:0]), r"empty|no samples", id="empty"),
    pytest.param(lambda X, y: (with_entry(X, (3, 2), NAN), y), r"X has NaN or inf", id="nan-in-X"),
    pytest.param(lambda X, y: (with_entry(X, (3, 2), INF), y), r"X has NaN or inf", id="inf-in-X"),
    pytest.param(lambda X, y: (X[:, 0], y), r"one row per sample|X must be \(n, d\)", id="X-one-dimensional"),
]


@pytest.mark.parametrize("bad,match", BAD_DATA)
@pytest.mark.parametrize("entry", ENTRIES)
def test_bad_data_is_refused_at_every_entry(entry, bad, match):
    X, y = bad(*points())
    expect(lambda: entry(X, y), raises(ValueError, match))


def finite_history(hs):
    (h,) = hs
    assert np.isfinite(h.log_loss).all() and np.isfinite(h.param_norm).all()


DATA_TYPES = [
    pytest.param(
        lambda X, y: margins.normalized_margin(models.Linear(5), X, y.numpy()),
        raises(TypeError, r"y must be a torch tensor"),
        id="margin-y-numpy",
    ),
    pytest.param(
        lambda X, y: margins.normalized_margin(models.Linear(5), X.long(), y),
        raises(TypeError, r"X has dtype torch\.int64.*X\.to\(torch\.float64\)"),
        id="margin-X-int",
    ),
    pytest.param(
        lambda X, y: kkt_certificate(models.Linear(5), X.float(), y),
        raises(TypeError, r"X has dtype torch\.float32"),
        id="kkt-X-float32",
    ),
    pytest.param(
        lambda X, y: margins.normalized_margin(models.Linear(5), X, y > 0),
        raises(ValueError, r"Labels must be -1 or \+1"),
        id="margin-y-bool",
    ),
    pytest.param(
        lambda X, y: quiet_train(Run("NormalizedGD", 0.1, 3, model=LINEAR), (X.numpy(), y.numpy())),
        ok(finite_history),
        id="train-numpy-arrays",
    ),
    pytest.param(
        lambda X, y: quiet_train(Run("NormalizedGD", 0.1, 3, model=LINEAR), (X, y.long())),
        ok(finite_history),
        id="train-integer-labels",
    ),
]


@pytest.mark.parametrize("build,outcome", DATA_TYPES)
def test_data_types(build, outcome):
    X, y = points()
    expect(lambda: build(X, y), outcome)


# --- optimizer options ------------------------------------------------------------------------


def params():
    return list(models.TwoLayer(5, 4).parameters())  # a matrix and a vector: both hybrid groups


def make(name, lr=0.1, **options):
    return lambda: optim.make(name, params(), lr, **options)


EPS = r"eps must be ≥ 0 \(0 is allowed\) and finite"
NS = r"ns_steps \(Newton–Schulz iterations\) must be a positive integer"
PAIR = r"betas must be a pair \(beta1, beta2\) of numbers in \[0, 1\)"

OPTIONS = [
    *[
        pytest.param(make(name, eps=INF), raises(ValueError, EPS), id=f"{name}-eps-inf")
        for name in ("Adam", "AdamW", "RMSProp", "AdaGrad", "MuonAdam")
    ],
    pytest.param(make("Adam", eps=NAN), raises(ValueError, EPS), id="Adam-eps-nan"),
    pytest.param(
        make("Muon", polar="newton_schulz", ns_steps=-1), raises(ValueError, NS), id="Muon-ns_steps--1"
    ),
    pytest.param(
        make("Muon", polar="newton_schulz", ns_steps=0), raises(ValueError, NS), id="Muon-ns_steps-0"
    ),
    pytest.param(
        make("Muon", polar="newton_schulz", ns_steps=1.5), raises(ValueError, NS), id="Muon-ns_steps-1.5"
    ),
    pytest.param(make("TorchMuon", ns_steps=-1), raises(ValueError, NS), id="TorchMuon-ns_steps--1"),
    pytest.param(lambda: Spectral("newton_schulz", -1), raises(ValueError, NS), id="Spectral-ns_steps--1"),
    pytest.param(
        make("Muon", polar="newton_schulz", ns_dtype="bf16"),
        raises(TypeError, r"ns_dtype must be None or a floating torch dtype"),
        id="Muon-ns_dtype-str",
    ),
    pytest.param(
        make("Muon", polar="qr"),
        raises(ValueError, r"polar must be 'svd' or 'newton_schulz'"),
        id="Muon-polar-qr",
    ),
    pytest.param(
        make("Adam", lr=torch.tensor(0.1)),
        raises(ValueError, r"Learning rate.*pass float\(lr\)"),
        id="Adam-lr-tensor",
    ),
    pytest.param(
        make("Adam", betas=(1.2, 0.9)), raises(ValueError, r"beta1 must lie in \[0, 1\)"), id="Adam-beta1-1.2"
    ),
    pytest.param(
        make("Adam", betas=(True, 0.9)),
        raises(ValueError, r"beta1 must lie in \[0, 1\)"),
        id="Adam-beta1-True",
    ),
    pytest.param(
        make("Adam", betas=(0.9, NAN)), raises(ValueError, r"beta2 must lie in \[0, 1\)"), id="Adam-beta2-nan"
    ),
    pytest.param(make("Adam", betas=(0.9,)), raises(ValueError, PAIR), id="Adam-betas-one"),
    pytest.param(make("Adam", betas=None), raises(ValueError, PAIR), id="Adam-betas-None"),
    pytest.param(make("Adam", betas="ab"), raises(ValueError, PAIR), id="Adam-betas-str"),
    pytest.param(
        make("AdamW", betas=(-0.1, 0.9)),
        raises(ValueError, r"beta1 must lie in \[0, 1\)"),
        id="AdamW-beta1-negative",
    ),
    pytest.param(
        make("Lion", betas=(0.9, 1.0)), raises(ValueError, r"beta2 must lie in \[0, 1\)"), id="Lion-beta2-1"
    ),
    pytest.param(
        make("MuonAdam", betas=(0.9, 1.5)),
        raises(ValueError, r"beta2 must lie in \[0, 1\)"),
        id="MuonAdam-beta2-1.5",
    ),
    *[
        pytest.param(
            make(name, momentum=True),
            raises(ValueError, r"momentum must lie in \[0, 1\)"),
            id=f"{name}-momentum-True",
        )
        for name in ("MomentumGD", "Signum", "Muon", "TorchMuon")
    ],
    pytest.param(
        make("MomentumGD", normalized="no"),
        raises(TypeError, r"normalized must be True or False"),
        id="MomentumGD-normalized-str",
    ),
    *[
        pytest.param(
            make(name, weight_decay=INF),
            raises(ValueError, r"weight_decay must be ≥ 0"),
            id=f"{name}-weight_decay-inf",
        )
        for name in ("AdamW", "Lion", "TorchMuon")
    ],
    pytest.param(
        make("TorchMuon", nesterov="yes"),
        raises(TypeError, r"nesterov must be True or False"),
        id="TorchMuon-nesterov-str",
    ),
    pytest.param(
        make("Adam", betas=(0.99, 0.9)),
        warns(UserWarning, r"beta1 = 0.99 > beta2 = 0.9"),
        id="Adam-beta1-above-beta2",
    ),
    pytest.param(
        make("MuonAdam", betas=(0.99, 0.9)),
        warns(UserWarning, r"beta1 = 0.99 > beta2 = 0.9"),
        id="MuonAdam-beta1-above-beta2",
    ),
]


@pytest.mark.parametrize("build,outcome", OPTIONS)
def test_optimizer_options(build, outcome):
    expect(build, outcome)


def one_step(name, lr):
    """One step of a fresh optimizer on a two-layer net; returns the parameters before and after."""
    X, y = points()
    model = models.TwoLayer(5, 4)
    before = [p.detach().clone() for p in model.parameters()]
    opt = optim.make(name, list(model.parameters()), lr)
    margins_loss = torch.nn.functional.softplus(-y * model(X)).sum()
    margins_loss.backward()
    for p in model.parameters():
        p.grad_sample = p.grad[None]  # AdamProxy: a batch of one
    opt.step()
    return before, [p.detach() for p in model.parameters()]


def moved_finitely(result):
    before, after = result
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
@pytest.mark.parametrize(
    "lr,outcome",
    [
        pytest.param(
            True, raises(ValueError, r"Learning rate must be a finite number ≥ 0, got True"), id="lr-True"
        ),
        pytest.param(
            NAN, raises(ValueError, r"Learning rate must be a finite number ≥ 0, got nan"), id="lr-nan"
        ),
        pytest.param("0.1", raises(ValueError, r"Learning rate must be a finite number ≥ 0"), id="lr-str"),
        pytest.param(np.float32(0.1), ok(moved_finitely), id="lr-numpy-float32"),
    ],
)
def test_learning_rates(name, lr, outcome):
    expect(lambda: one_step(name, lr), outcome)


@pytest.mark.parametrize(
    "name,options,scale",
    [
        pytest.param("Adam", {}, 1.0, id="Adam"),
        pytest.param("AdamW", {"eps": 0.0, "weight_decay": 0.0}, 1.0, id="AdamW"),
        pytest.param("RMSProp", {"eps": 0.0}, 10.0, id="RMSProp"),  # 1/√(1 − β2) at the first step
        pytest.param("AdaGrad", {"eps": 0.0}, 1.0, id="AdaGrad"),
    ],
)
def test_complex_parameters_use_the_squared_modulus(name, options, scale):
    # The second moment of a complex gradient is |g|² (g·ḡ), not g·g: the first step is
    # −η g/|g| (times RMSProp's 1/√(1 − β2)), a unit-modulus entry per coordinate.
    p = torch.nn.Parameter(torch.tensor([1 + 2j, -3 + 0.5j, 0.25 - 1j], dtype=torch.complex128))
    g = torch.tensor([0.3 - 0.4j, -1 + 1j, 2j], dtype=torch.complex128)
    start = p.detach().clone()
    opt = optim.make(name, [p], 0.1, **options)
    p.grad = g.clone()
    opt.step()
    torch.testing.assert_close(p.detach(), start - 0.1 * scale * g / g.abs())


# --- models -----------------------------------------------------------------------------------


class Tanh(models.Activation):
    """A subclass of Activation that is not homogeneous."""

    degree = 1.0

    def forward(self, z):
        return torch.tanh(z)


class WrongSlope(models.Activation):
    """Homogeneous, but its hand-written slope (the batched engine's backward) is wrong."""

    degree = 1.0

    def forward(self, z):
        return torch.relu(z)

    def value_and_slope(self, z):
        return torch.relu(z), torch.ones_like(z)


def relu_claiming_degree_2():
    act = models.ReLU()
    act.degree = 2.0
    return act


POSITIVE = r"must be a positive integer"
NOT_HOMOGENEOUS = r"declares degree .* not positively homogeneous"

MODELS = [
    pytest.param(lambda: models.TwoLayer(5, 0), raises(ValueError, r"width " + POSITIVE), id="width-0"),
    pytest.param(
        lambda: models.TwoLayer(5, -1), raises(ValueError, r"width " + POSITIVE), id="width-negative"
    ),
    pytest.param(lambda: models.TwoLayer(5, 2.5), raises(ValueError, r"width " + POSITIVE), id="width-2.5"),
    pytest.param(lambda: models.TwoLayer(5, True), raises(ValueError, r"width " + POSITIVE), id="width-True"),
    pytest.param(lambda: models.TwoLayer(0, 4), raises(ValueError, r"d " + POSITIVE), id="two-layer-d-0"),
    pytest.param(
        lambda: models.TwoLayerWithVectorUnit(5, 0),
        raises(ValueError, r"width " + POSITIVE),
        id="vector-unit-width-0",
    ),
    pytest.param(lambda: models.Linear(0), raises(ValueError, r"d " + POSITIVE), id="linear-d-0"),
    pytest.param(lambda: models.Linear((0, 3)), raises(ValueError, POSITIVE), id="linear-shape-0-3"),
    pytest.param(
        lambda: models.Linear("5"),
        raises(ValueError, r"d must be a positive integer or a shape"),
        id="linear-d-str",
    ),
    pytest.param(
        lambda: models.DiagonalLinear(5, depth=0), raises(ValueError, r"depth " + POSITIVE), id="depth-0"
    ),
    pytest.param(
        lambda: models.DiagonalLinear(5, depth=1.5), raises(ValueError, r"depth " + POSITIVE), id="depth-1.5"
    ),
    pytest.param(lambda: models.MLP([5, 0, 1]), raises(ValueError, POSITIVE), id="mlp-width-0"),
    pytest.param(lambda: models.MLP([5, 3, 2]), raises(ValueError, r"ending in 1"), id="mlp-two-outputs"),
    pytest.param(
        lambda: models.TwoLayer(5, 4, init_scale=NAN),
        raises(ValueError, r"init_scale must be a finite"),
        id="init_scale-nan",
    ),
    pytest.param(
        lambda: models.TwoLayer(5, 4, init_scale=-1.0),
        raises(ValueError, r"init_scale .*≥ 0"),
        id="init_scale-negative",
    ),
    pytest.param(
        lambda: models.TwoLayer(5, 4, seed=1.5), raises(TypeError, r"seed must be an integer"), id="seed-1.5"
    ),
    pytest.param(
        lambda: models.TwoLayer(5, 4, dtype="float64"),
        raises(TypeError, r"dtype must be a floating"),
        id="dtype-str",
    ),
    pytest.param(
        lambda: models.TwoLayer(5, 4, activation="tanh"),
        raises(ValueError, r"not a positively homogeneous activation"),
        id="activation-tanh-name",
    ),
    pytest.param(
        lambda: models.TwoLayer(5, 4, activation=("relu_power", 0.5)),
        raises(ValueError, r"q ≥ 1"),
        id="relu-power-0.5",
    ),
    pytest.param(lambda: models.ReLUPower(INF), raises(ValueError, r"finite q ≥ 1"), id="relu-power-inf"),
    pytest.param(lambda: models.ReLUPower("2"), raises(ValueError, r"finite q ≥ 1"), id="relu-power-str"),
    pytest.param(
        lambda: models.TwoLayer(5, 4, activation=Tanh()),
        raises(ValueError, NOT_HOMOGENEOUS),
        id="activation-tanh-subclass",
    ),
    pytest.param(
        lambda: models.TwoLayer(5, 4, activation=relu_claiming_degree_2()),
        raises(ValueError, r"declares degree 2"),
        id="activation-overwritten-degree",
    ),
    pytest.param(
        lambda: models.TwoLayer(5, 4, activation=WrongSlope()),
        raises(ValueError, r"value_and_slope\(z\) disagrees"),
        id="activation-wrong-slope",
    ),
    pytest.param(
        lambda: models.build({"kind": "two_layer", "widht": 4}, 5),
        raises(TypeError, r"widht"),
        id="build-misspelt-option",
    ),
    pytest.param(
        lambda: models.build({"kind": "conv"}, 5),
        raises(ValueError, r"Unknown model kind 'conv'"),
        id="build-unknown-kind",
    ),
    pytest.param(
        lambda: models.TwoLayer(5, 4, activation=models.ReLUPower(1.5)), ok(), id="relu-power-instance"
    ),
    pytest.param(
        lambda: models.ReLUPower(1.0).value_and_slope(torch.tensor([-1.0, 0.0, 2.0], dtype=F64)),
        ok(lambda vs: torch.testing.assert_close(vs[1], torch.tensor([0.0, 0.0, 1.0], dtype=F64))),
        id="relu-power-1-slope-is-0-below-0",
    ),
]


@pytest.mark.parametrize("build,outcome", MODELS)
def test_models(build, outcome):
    expect(build, outcome)


def overwritten_degree():
    model = models.TwoLayer(5, 4)  # relu2: degree 3
    model.degree = 2.0
    return model


MODEL_USE = [
    pytest.param(
        lambda X, y: margins.normalized_margin(overwritten_degree(), X, y),
        raises(ValueError, r"declares degree 2 but f\(cθ\) = c\^3.00"),
        id="margin-overwritten-degree",
    ),
    pytest.param(
        lambda X, y: quiet_train(Run("NormalizedGD", 0.1, 3, model=lambda d: overwritten_degree()), (X, y)),
        raises(ValueError, r"declares degree 2"),
        id="train-factory-overwritten-degree",
    ),
    pytest.param(
        lambda X, y: quiet_train(
            Run("NormalizedGD", 0.1, 3, model={"kind": "two_layer", "width": 4, "activation": Tanh()}), (X, y)
        ),
        raises(ValueError, NOT_HOMOGENEOUS),
        id="train-tanh-subclass",
    ),
    pytest.param(
        lambda X, y: quiet_train(
            Run("NormalizedGD", 0.1, 3, model={"kind": "two_layer", "width": 0}), (X, y)
        ),
        raises(ValueError, r"width " + POSITIVE),
        id="train-width-0",
    ),
]


@pytest.mark.parametrize("build,outcome", MODEL_USE)
def test_models_in_use(build, outcome):
    X, y = points()
    expect(lambda: build(X, y), outcome)


def test_relu_power_1_trains_the_same_in_both_engines():
    # Its hand-written slope was 1 on z < 0 (0⁰ = 1): the batched engine trained another model.
    X, y = points(20)
    run = Run(
        "NormalizedGD", 0.1, 20, model={"kind": "two_layer", "width": 8, "activation": ("relu_power", 1.0)}
    )
    (batched,) = quiet_train(run, (X, y), engine="batched")
    (loop,) = quiet_train(run, (X, y), engine="loop")
    np.testing.assert_allclose(batched.log_loss, loop.log_loss, rtol=1e-10)


# --- certificates -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exact():
    """The ℓ2 max-margin direction of 20 points as a linear model, and the data."""
    X, y = data.gaussian(n=20, d=5, seed=0)
    model = models.Linear(5)
    with torch.no_grad():
        model.w.copy_(torch.as_tensor(max_margin(X, y, "l2").direction, dtype=F64))
    return model, X, y


ACTIVE_TOL = r"active_tol must be a number > 0.*1e-6 for an exact max-margin solution"
MAX_POINTS = r"max_points must be None or a positive integer"

CERTIFICATES = [
    pytest.param(dict(active_tol=0), raises(ValueError, ACTIVE_TOL), id="active_tol-0"),
    pytest.param(dict(active_tol=-1e-6), raises(ValueError, ACTIVE_TOL), id="active_tol-negative"),
    pytest.param(dict(active_tol=NAN), raises(ValueError, ACTIVE_TOL), id="active_tol-nan"),
    pytest.param(dict(active_tol=True), raises(ValueError, ACTIVE_TOL), id="active_tol-True"),
    pytest.param(dict(active_tol="0.1"), raises(ValueError, ACTIVE_TOL), id="active_tol-str"),
    pytest.param(dict(max_points=0), raises(ValueError, MAX_POINTS), id="max_points-0"),
    pytest.param(dict(max_points=2.5), raises(ValueError, MAX_POINTS), id="max_points-2.5"),
    pytest.param(dict(max_points=True), raises(ValueError, MAX_POINTS), id="max_points-True"),
    pytest.param(dict(method="lbfgs"), raises(ValueError, r"method must be 'auto'"), id="method-unknown"),
    pytest.param(dict(method="ipm"), raises(ValueError, r"'ipm' is the ℓ∞ route"), id="ipm-for-l2"),
    pytest.param(dict(active_tol=1e-6), ok(lambda c: c.epsilon < 1e-8), id="active_tol-1e-6-at-the-solution"),
    pytest.param(dict(active_tol=INF), ok(lambda c: len(c.active) == 20), id="active_tol-inf-every-point"),
]


@pytest.mark.parametrize("options,outcome", CERTIFICATES)
def test_certificate_arguments(exact, options, outcome):
    expect(lambda: kkt_certificate(*exact, "l2", **options), outcome)


# --- non-finite values and failures during training -------------------------------------------


class NaNGradient(torch.nn.Module):
    """``f(x) = ⟨w, x⟩`` whose gradient is NaN (through ``0·√0``) from step ``after`` on: the
    loss stays finite, so only a check of the gradient can see it."""

    degree = 1.0

    def __init__(self, d, after=1):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(-1.0, 1.0, d, dtype=F64))
        self.after, self.steps = after, 0

    def forward(self, X):
        out = X @ self.w
        if torch.is_grad_enabled():  # a training step, not a measurement
            self.steps += 1
            if self.steps >= self.after:
                out = out + 0.0 * torch.sqrt(self.w - self.w).sum()
        return out


@pytest.mark.parametrize("engine", ["auto", "loop"])
def test_a_nan_gradient_stops_the_run(engine):
    X, y = points()
    with pytest.raises(RunFailed, match=r"step 1\b.*gradient|gradient.*step 1\b"):
        quiet_train(Run("NormalizedGD", 0.1, 5, model=NaNGradient), (X, y), engine=engine)


@pytest.mark.parametrize("value", [NAN, INF], ids=["nan", "inf"])
@pytest.mark.parametrize(
    "name", ["NormalizedGD", "SignGD", "CoordinateDescent", "Signum", "Muon", "Adam", "AdaGrad"]
)
def test_a_non_finite_gradient_stops_an_optimizer_used_on_its_own(name, value):
    p = torch.nn.Parameter(torch.ones(3, 2, dtype=F64))
    opt = optim.make(name, [p], 0.1)
    p.grad = with_entry(torch.ones(3, 2, dtype=F64), (1, 0), value)
    with pytest.raises(FloatingPointError, match=r"gradient"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(3, 2, dtype=F64))


@pytest.mark.parametrize("engine", ["auto", "loop"])
def test_failures_return_keeps_the_other_runs(engine):
    X, y = points()
    good = Run("Adam", 0.1, 5, model=LINEAR)
    bad = Run("NormalizedGD", 0.1, 5, model=NaNGradient)
    out = quiet_train([good, bad], (X, y), engine=engine, failures="return")
    assert isinstance(out[0], history.History) and isinstance(out[1], RunFailed)
    assert out[1].run is bad


def test_a_failed_run_hands_back_its_history():
    X, y = points()
    run = Run("NormalizedGD", 0.1, 20, model=lambda d: NaNGradient(d, after=10))
    (err,) = quiet_train(run, (X, y), engine="loop", failures="return", log_points=20)
    assert isinstance(err, RunFailed) and "step 10" in str(err)
    assert len(err.history.steps) > 0 and err.history.steps[-1] < 10
    assert np.isfinite(err.history.log_loss).all()


@pytest.mark.parametrize("engine", ["auto", "loop"])
def test_an_observe_error_names_the_run_and_the_step(engine):
    X, y = points()

    def observe(model, optimizer, frame):
        raise KeyError("boom")

    with pytest.raises(Exception, match=r"run 'Adam'.*step 1\b.*boom"):
        quiet_train(Run("Adam", 0.1, 5, model=LINEAR), (X, y), engine=engine, observe=observe)


# --- runs refused at construction, before any training ----------------------------------------

RUNS = [
    pytest.param(lambda: Run("Adam", NAN, 5), raises(ValueError, r"Learning rate"), id="lr-nan"),
    pytest.param(lambda: Run("Adam", True, 5), raises(ValueError, r"Learning rate"), id="lr-True"),
    pytest.param(lambda: Run("Adam", -0.1, 5), raises(ValueError, r"Learning rate"), id="lr-negative"),
    pytest.param(
        lambda: Run("Adam", 0.1, 5, options={"betas": (1.2, 0.9)}),
        raises(ValueError, r"beta1 must lie in \[0, 1\)"),
        id="betas-1.2",
    ),
    pytest.param(
        lambda: Run("Adam", 0.1, 5, options={"eps": -1.0}),
        raises(ValueError, r"eps must be ≥ 0"),
        id="eps-negative",
    ),
    pytest.param(
        lambda: Run("Adam", 0.1, 5, options={"beta": (0.9, 0.99)}),
        raises((TypeError, ValueError), r"beta"),
        id="option-misspelt",
    ),
    pytest.param(
        lambda: Run("Muon", 0.1, 5, options={"polar": "newton_schulz", "ns_steps": -1}),
        raises(ValueError, r"ns_steps"),
        id="ns_steps--1",
    ),
    pytest.param(
        lambda: Run("Adam", 0.1, 5, schedule=NAN), raises(ValueError, r"schedule"), id="schedule-nan"
    ),
    pytest.param(
        lambda: Run("Adam", 0.1, 5, schedule=-1.0), raises(ValueError, r"schedule"), id="schedule-negative"
    ),
    pytest.param(lambda: Run("Adam", np.float32(0.1), 5), ok(), id="lr-numpy-float32"),
    pytest.param(
        lambda: Run("Adam", 0.1, True),
        raises(ValueError, r"steps must be a positive integer"),
        id="steps-True",
    ),
    pytest.param(
        lambda: Run("Adam", 0.1, 5, seed=1.5), raises(TypeError, r"seed must be an integer"), id="seed-1.5"
    ),
    pytest.param(
        lambda: Run("Adam", 0.1, 5, model={"kind": "conv"}),
        raises(ValueError, r"Unknown model kind 'conv'"),
        id="model-kind-unknown",
    ),
    pytest.param(
        lambda: Run("Adam", 0.1, 5, model={"kind": "two_layer", "width": 0}),
        raises(ValueError, r"width must be a positive integer"),
        id="model-width-0",
    ),
]


@pytest.mark.parametrize("build,outcome", RUNS)
def test_runs_are_validated_at_construction(build, outcome):
    expect(build, outcome)


def margins_logged(names):
    def check(hs):
        assert set(hs[0].margins) == set(names)

    return check


TRAIN_ARGUMENTS = [
    pytest.param(
        dict(log_points=0), raises(ValueError, r"log_points must be a positive integer"), id="log_points-0"
    ),
    pytest.param(dict(norms="l2"), ok(margins_logged(["l2"])), id="norms-one-name"),
    pytest.param(dict(norms=("l7",)), raises(ValueError, r"Unknown norm 'l7'"), id="norms-unknown"),
    pytest.param(dict(engine="fast"), raises(ValueError, r"engine must be one of"), id="engine-unknown"),
    pytest.param(
        dict(failures="ignore"), raises(ValueError, r"failures must be one of"), id="failures-unknown"
    ),
    pytest.param(
        dict(max_batch=0), raises(ValueError, r"max_batch must be a positive integer"), id="max_batch-0"
    ),
]


@pytest.mark.parametrize("arguments,outcome", TRAIN_ARGUMENTS)
def test_train_arguments(arguments, outcome):
    X, y = points()
    expect(lambda: quiet_train(Run("Adam", 0.1, 5, model=LINEAR), (X, y), **arguments), outcome)


@pytest.mark.parametrize("engine", ["auto", "loop"])
def test_a_numpy_float32_rate_trains_as_its_float(engine):
    X, y = points()
    rate = np.float32(0.1)
    (a,) = quiet_train(Run("Adam", rate, 10, model=LINEAR), (X, y), engine=engine)
    (b,) = quiet_train(Run("Adam", float(rate), 10, model=LINEAR), (X, y), engine=engine)
    np.testing.assert_array_equal(a.log_loss, b.log_loss)


# --- extreme scales: the frame never hangs, large parameters are logged -----------------------

EXTREME = [
    pytest.param("NormalizedGD", 1e10, LINEAR, 1.0, id="NormalizedGD-lr-1e10"),
    pytest.param("NormalizedGD", 1e10, None, 1.0, id="NormalizedGD-lr-1e10-two-layer"),
    pytest.param("SignGD", 1e300, LINEAR, 1.0, id="SignGD-lr-1e300"),
    pytest.param("NormalizedGD", 0.1, LINEAR, 1e150, id="X-times-1e150"),
    pytest.param("NormalizedGD", 0.1, None, 1e150, id="X-times-1e150-two-layer"),
]


@pytest.mark.parametrize("engine", ["auto", "loop"])
@pytest.mark.parametrize("optimizer,lr,model,scale", EXTREME)
def test_extreme_steps_finish_quickly_with_a_result_or_run_failed(optimizer, lr, model, scale, engine):
    X, y = points()
    run = Run(optimizer, lr, 10, **({"model": model} if model else {}))
    start = time.perf_counter()
    with deadline(60):
        try:
            (h,) = quiet_train(run, (X * scale, y), engine=engine)
        except RunFailed as err:
            h = err.history
    assert time.perf_counter() - start < 10
    if h is not None:  # whatever was logged is finite: never a silent inf or NaN
        assert np.isfinite(h.log_loss).all() and np.isfinite(h.param_norm).all()
        assert all(np.isfinite(v).all() for v in h.margins.values())


def test_the_history_logs_parameters_past_1e154():
    X, y = points()
    with deadline(60):  # a frame re-centred in bounded pieces would take 1e157 of them
        (h,) = quiet_train(Run("NormalizedGD", 1e160, 3, model=LINEAR), (X, y), norms=("l2", "linf"))
    assert np.isfinite(h.param_norm).all()
    # three unit steps of 1e160: ‖θ‖ is between 1e160 and 3e160, as the model itself says
    size = float(norms.L2()([p.detach() for p in h.model.parameters()]))
    assert 1e160 <= h.param_norm[-1] <= 3.0001e160
    np.testing.assert_allclose(h.param_norm[-1], size, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(h.directions, axis=1), 1.0, rtol=1e-12)


def test_record_at_a_norm_of_1e200():
    w = torch.tensor([3e200, -4e200], dtype=F64)
    rec = history.Recording(history.margin_norms(["l2"], [w]))
    q = torch.tensor([1e200], dtype=F64)
    rec.add([w], q, 1.0, "logistic")
    assert rec.param_norm == [pytest.approx(5e200)]
    np.testing.assert_allclose(rec.directions[0], [0.6, -0.8])
    assert rec.margins["l2"] == [pytest.approx(0.2)]


# --- solvers at scale: the answer scales with the data ----------------------------------------

SOLVER_SCALES = [
    *[
        pytest.param(norm, scale, id=f"{norm}-x{scale:g}")
        for norm in ("l2", "linf", "l1")
        for scale in (1e6, 1e-4, 1e-8, 1e8)
    ],
    *[
        pytest.param(norm, scale, id=f"{norm}-x{scale:g}")
        for norm in ("linf", "l1")
        for scale in (1e150, 1e-150)
    ],
    pytest.param(np.arange(1.0, 6.0), 1e6, id="mahalanobis-x1e6"),
    pytest.param(np.arange(1.0, 6.0), 1e-4, id="mahalanobis-x1e-4"),
]


@pytest.mark.parametrize("norm,scale", SOLVER_SCALES)
def test_max_margin_scales_with_the_data(norm, scale):
    X, y = data.gaussian(n=20, d=5, seed=0)
    base = max_margin(X, y, norm)
    scaled = max_margin(X * scale, y, norm)
    assert scaled.margin == pytest.approx(base.margin * scale, rel=1e-6)
    np.testing.assert_allclose(scaled.direction, base.direction, atol=1e-6)


def test_max_margin_of_a_single_tiny_point():
    solution = max_margin(torch.tensor([[-6.3e-6]], dtype=F64), torch.tensor([-1.0], dtype=F64))
    assert solution.margin == pytest.approx(6.3e-6, rel=1e-6)
    assert solution.direction.tolist() == [pytest.approx(1.0)]


def test_max_margin_of_integer_points_agrees_with_scipy():
    # 10 integer points in 3-D where OSQP was 1.2e-5 off; scipy's SLSQP and Clarabel agree.
    from scipy.optimize import minimize

    rng = np.random.default_rng(7)
    X = rng.integers(-5, 6, size=(10, 3)).astype(float)
    y = np.sign(X @ np.array([1.0, -2.0, 0.5]) + 0.25)
    Z = y[:, None] * X
    ref = minimize(
        lambda w: 0.5 * w @ w,
        np.ones(3),
        jac=lambda w: w,
        method="SLSQP",
        constraints={"type": "ineq", "fun": lambda w: Z @ w - 1, "jac": lambda w: Z},
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    assert max_margin(X, y, "l2").margin == pytest.approx(1 / np.linalg.norm(ref.x), rel=1e-8)
