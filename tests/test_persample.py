"""Per-sample and mini-batch training (Baek, Song & Yun 2025): the batch schemes, the
framed batch loss, AdamProxy and its per-sample gradients, and the data-adaptive
Mahalanobis fixed point that predicts AdamProxy's limit."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from helpers import F64, flat, rel_err
from implicit_bias import data, losses, maxmargin, models, optim, train
from implicit_bias.maxmargin import FixedPointError, NotSeparableError, adaptive_mahalanobis

LIN = {"kind": "linear"}
TWO = {"kind": "two_layer", "width": 5, "activation": "relu2"}


def cos(a, b) -> float:
    a, b = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# --- batch schemes ------------------------------------------------------------------------------


def take(gen, k):
    return [next(gen).tolist() for _ in range(k)]


def test_cyclic_batches_walk_through_the_data_in_order():
    assert take(train.batches("cyclic", 5, 1), 7) == [[0], [1], [2], [3], [4], [0], [1]]
    # size 2 does not divide 5: every epoch ends with a batch of 1.
    assert take(train.batches("cyclic", 5, 2), 4) == [[0, 1], [2, 3], [4], [0, 1]]


def test_reshuffled_batches_are_permutations_fixed_by_the_seed():
    epochs = np.array(take(train.batches("reshuffle", 6, 1, seed=3), 60)).reshape(10, 6)
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(6))
    assert len({tuple(e) for e in epochs}) > 1  # a fresh permutation per epoch
    def shuffled(size, seed):
        return take(train.batches("reshuffle", 6, size, seed=seed), 12)

    assert shuffled(4, 3) == shuffled(4, 3)
    assert shuffled(1, 3) != shuffled(1, 4)
    sizes = [len(b) for b in take(train.batches("reshuffle", 6, 4, seed=0), 4)]
    assert sizes == [4, 2, 4, 2]


def test_batches_with_replacement_are_uniform():
    draws = np.array(take(train.batches("replacement", 4, 2, seed=1), 4000)).reshape(-1)
    counts = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(counts, 0.25, atol=0.02)
    again = [take(train.batches("replacement", 4, 2, seed=1), 5) for _ in range(2)]
    assert again[0] == again[1]


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch="minibatch"), "batch must be one of"),
    (dict(batch="full", batch_size=2), "drop batch_size"),
    (dict(batch="cyclic", batch_size=0), "batch_size must be a positive integer"),
    (dict(batch="cyclic", batch_size=2.0), "batch_size must be a positive integer"),
])
def test_bad_batch_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train.Run("Adam", 0.1, 10, **kwargs)


def test_batch_larger_than_the_data(small_data):
    run = train.Run("Adam", 0.1, 10, model=LIN, batch="cyclic", batch_size=21)
    with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, n = 20\]"):
        train.train(run, small_data, progress=False, device="cpu")


def test_default_is_full_batch():
    run = train.Run("Adam", 0.1, 10)
    assert run.batch == "full" and run.batch_size is None
    assert train.Run("Adam", 0.1, 10, batch="cyclic").batch_size == 1


# --- training with batches ---------------------------------------------------------------------


def run1(small_data, frame=True, **kwargs):
    kwargs.setdefault("model", LIN)
    run = train.Run(**kwargs)
    return train.train(run, small_data, norms=("l2",), frame=frame, progress=False, device="cpu")[0]


def test_per_sample_adam_matches_torch_adam_on_one_sample_per_step(small_data):
    """Incremental Adam: a torch.optim.Adam step on the loss of sample t mod n. The batch
    loss is n·ℓ(q_j) under a moving frame; Adam with ε = 0 does not see either factor."""
    X, y = small_data
    h = run1(small_data, optimizer="Adam", lr=0.05, steps=100, batch="cyclic",
             options={"betas": (0.9, 0.99), "eps": 0.0})
    model = models.Linear(X.shape[1], seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=0.05, betas=(0.9, 0.99), eps=0.0)
    for t in range(100):
        j = t % len(y)
        opt.zero_grad()
        losses.loss(y[j:j + 1] * model(X[j:j + 1])).backward()
        opt.step()
    assert rel_err(h.model, model) < 1e-10


def test_one_batch_of_all_samples_is_full_batch(small_data):
    full = run1(small_data, optimizer="Adam", lr=0.05, steps=200, options={"betas": (0.9, 0.99)})
    whole = run1(small_data, optimizer="Adam", lr=0.05, steps=200, options={"betas": (0.9, 0.99)},
                 batch="reshuffle", batch_size=20)
    assert rel_err(whole.model, full.model) < 1e-10


def test_mini_batch_gradients_average_to_the_full_gradient(small_data):
    """The batch loss (n/b) Σ_B ℓ is unbiased: over one cyclic epoch of equal batches the
    batch gradients average to the full gradient, in any frame."""
    X, y = small_data
    model = models.TwoLayer(X.shape[1], 4, seed=1)
    F = 7.5
    grads = []
    for idx in take(train.batches("cyclic", 20, 5), 4):
        model.zero_grad()
        train._backward_batch(model, X[idx], y[idx], "logistic", F, 20 / 5, per_sample=False)
        grads.append(flat([p.grad for p in model.parameters()]))
    model.zero_grad()
    losses.framed_loss(y * model(X), F).backward()
    torch.testing.assert_close(torch.stack(grads).mean(0), flat([p.grad for p in model.parameters()]))


# A constant rate of 3.0 makes the reshuffled Adam run chaotic (rounding differences grow
# 1e-16 → 1e-9 over 400 steps); a slowly decaying rate keeps the comparison meaningful.
@pytest.mark.parametrize("name,model,lr,schedule,options,batch,size", [
    ("Adam", TWO, 0.05, 0.0, {"betas": (0.5, 0.5), "eps": 1e-20}, "cyclic", 1),
    ("Adam", LIN, 3.0, 0.2, {"betas": (0.5, 0.5), "eps": 0.0}, "reshuffle", 2),
    ("Signum", LIN, 1.0, 0.0, {"momentum": 0.9}, "replacement", 1),
    ("AdamProxy", LIN, 1.0, 0.0, {}, "full", None),  # its squares underflow below e^-372: stay above
])
def test_frame_does_not_change_a_batched_trajectory(name, model, lr, schedule, options, batch, size,
                                                    small_data):
    """The frame follows the full-data loss; batches of samples with much larger margins
    than the smallest give tiny framed losses, but the trajectory is that of the plain loss."""
    kwargs = dict(optimizer=name, lr=lr, schedule=schedule, steps=400, model=model, options=options,
                  batch=batch, batch_size=size, seed=2)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="A batch's framed loss")  # no batch underflows
        warnings.filterwarnings("ignore", message="eps = 0 and some coordinate")  # dead units
        framed, plain = (run1(small_data, frame=f, **kwargs) for f in (True, False))
    for h in (framed, plain):
        assert -600 < h.log_loss[-1] < -25  # the frame moved; the plain loss is still representable
    assert rel_err(framed.model, plain.model) < 1e-9
    np.testing.assert_allclose(framed.log_loss, plain.log_loss, rtol=1e-8)


@pytest.mark.parametrize("name,lr,options,below", [
    ("Adam", 1.0, {"betas": (0.5, 0.5), "eps": 0.0}, -230),  # 1e-100
    ("AdamProxy", 5.0, {}, -710),  # below float64's smallest normal number
    ("Signum", 1.0, {"momentum": 0.5}, -710),
])
def test_long_per_sample_runs_go_below_the_float_range(name, lr, options, below, small_data):
    h = run1(small_data, optimizer=name, lr=lr, steps=4000, batch="cyclic", options=options)
    assert h.log_loss[-1] < below
    assert np.isfinite(h.log_loss).all() and torch.isfinite(flat(h.model)).all()


def test_a_batch_that_underflows_the_frame_warns(small_data):
    """Stateless per-batch normalized steps on batches far from the smallest margin."""
    with pytest.warns(RuntimeWarning, match="framed loss is below float64's range"):  # noqa: PT031
        run1(small_data, optimizer="AdamProxy", lr=3.0, steps=400, batch="cyclic", batch_size=3, seed=2)


def test_same_seed_same_run_other_seed_other_order(small_data):
    kw = dict(optimizer="Adam", lr=0.1, steps=150, batch="replacement", options={"betas": (0.9, 0.99)})
    a, b, c = (run1(small_data, seed=s, **kw) for s in (0, 0, 1))
    assert torch.equal(flat(a.model), flat(b.model))
    assert rel_err(c.model, a.model) > 1e-3


# --- AdamProxy ------------------------------------------------------------------------------------


def test_per_sample_gradients_sum_to_the_gradient(small_data):
    X, y = small_data
    model = models.TwoLayer(X.shape[1], 4, seed=3)
    per = train.per_sample_gradients(model, X, y, frame=2.0, scale=3.0)
    model.zero_grad()
    (3.0 * losses.framed_loss(y * model(X), 2.0)).backward()
    for g, p in zip(per, model.parameters()):
        assert g.shape == (len(y), *p.shape)
        torch.testing.assert_close(g.sum(0), p.grad)
    # Sample 4 alone, by autograd.
    model.zero_grad()
    (3.0 * losses.framed_loss(y[4:5] * model(X[4:5]), 2.0)).backward()
    for g, p in zip(per, model.parameters()):
        torch.testing.assert_close(g[4], p.grad)


def test_per_sample_gradients_of_a_linear_model_take_the_shortcut(small_data):
    X, y = small_data
    model = models.Linear(X.shape[1], seed=2)
    (g,) = train.per_sample_gradients(model, X, y, loss="exponential", frame=1.0)
    q = (y * model(X)).detach()
    torch.testing.assert_close(g, (-torch.exp(-q + 1.0) * y)[:, None] * X)


def test_adam_proxy_step(small_data):
    """One step: θ ← θ − η ∇L / sqrt(Σ_i ∇L_i²), against the formula for a linear model."""
    X, y = small_data
    model = models.Linear(X.shape[1], seed=0)
    w0 = model.w.detach().clone()
    q = (y * model(X)).detach()
    G = (-torch.sigmoid(-q) * y)[:, None] * X  # per-sample gradients of the logistic loss
    opt = optim.AdamProxy(list(model.parameters()), lr=0.1)
    (model.w.grad_sample,) = train.per_sample_gradients(model, X, y)
    model.w.grad = model.w.grad_sample.sum(0)
    opt.step()
    torch.testing.assert_close(model.w.detach(), w0 - 0.1 * G.sum(0) / G.pow(2).sum(0).sqrt())


def test_adam_proxy_needs_per_sample_gradients():
    p = torch.nn.Parameter(torch.ones(3, dtype=F64))
    opt = optim.AdamProxy([p], lr=0.1)
    p.grad = torch.ones(3, dtype=F64)
    with pytest.raises(RuntimeError, match="per-sample gradients"):
        opt.step()
    p.grad_sample = torch.ones(4, 2, dtype=F64)  # wrong shape
    with pytest.raises(RuntimeError, match="grad_sample"):
        opt.step()


def test_adam_proxy_dead_coordinate_warns():
    p = torch.nn.Parameter(torch.ones(2, dtype=F64))
    opt = optim.AdamProxy([p], lr=0.1)
    p.grad_sample = torch.tensor([[1.0, 0.0], [2.0, 0.0]], dtype=F64)
    p.grad = p.grad_sample.sum(0)
    with pytest.warns(RuntimeWarning, match="zero gradient"):
        opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([1.0 - 0.1 * 3 / math.sqrt(5), 1.0], dtype=F64))


# --- the data-adaptive Mahalanobis fixed point -----------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fixed_point_on_generalized_rademacher_data_is_l2(seed):
    """Every |z_ik| = a_i, so M(α) is a multiple of I whatever α is: the answer is ℓ2."""
    X, y = data.generalized_rademacher(n=10, d=20, seed=seed)
    sol = adaptive_mahalanobis(X, y)
    assert np.ptp(sol.M) <= 1e-12 * sol.M.max()
    assert cos(sol.direction, maxmargin.max_margin(X, y, "l2").direction) > 1 - 1e-8
    l2, linf = (maxmargin.max_margin(X, y, n).direction for n in ("l2", "linf"))
    assert cos(l2, linf) < 0.99  # the data tell ℓ2 from ℓ∞


@pytest.mark.parametrize("seed", [0, 3])
def test_fixed_point_is_a_fixed_point(seed):
    X, y = data.small_gaussian(n=10, d=20, seed=seed)
    sol = adaptive_mahalanobis(X, y, tol=1e-10)
    assert sol.residuals[-1] <= 1e-10 and sol.iterations == len(sol.residuals)
    assert sol.multipliers.min() >= 0 and sol.multipliers.sum() == pytest.approx(1.0)
    Z = (y[:, None] * X).numpy()
    np.testing.assert_allclose(sol.M, maxmargin.adaptive_matrix(Z, sol.multipliers))
    # α reproduces itself: the M-norm SVM's normalized multipliers are α again, and the
    # direction is that SVM's solution.
    svm = maxmargin.max_margin(X, y, sol.M)
    np.testing.assert_allclose(svm.dual / svm.dual.sum(), sol.multipliers, atol=1e-6)
    assert cos(svm.direction, sol.direction) > 1 - 1e-9
    assert sol.margin == pytest.approx(svm.margin, rel=1e-6)
    assert set(sol.support) == set(svm.support)
    # On Gaussian data it is neither ℓ2 nor ℓ∞.
    for norm in ("l2", "linf"):
        assert cos(sol.direction, maxmargin.max_margin(X, y, norm).direction) < 0.995


def test_adam_proxy_converges_to_the_fixed_point():
    """An independent numpy AdamProxy (exponential loss, in a moving frame) ends up at the
    fixed point's direction, and the library's AdamProxy does too."""
    X, y = data.small_gaussian(n=10, d=20, seed=0)
    sol = adaptive_mahalanobis(X, y)
    Z = (y[:, None] * X).numpy()
    w = np.zeros(Z.shape[1])
    for t in range(1, 20001):
        q = Z @ w
        s = np.exp(-(q - q.min()))  # the frame: only ratios matter to AdamProxy
        G = -s[:, None] * Z
        w -= 0.1 * t**-0.5 * G.sum(0) / np.sqrt((G**2).sum(0))
    assert cos(w, sol.direction) > 0.999
    (h,) = train.train(train.Run("AdamProxy", 0.1, 4000, schedule=0.5, model=LIN), (X, y),
                       norms=("l2",), progress=False, device="cpu")
    assert cos(h.direction(), sol.direction) > 0.99


def test_fixed_point_errors():
    X, y = data.small_gaussian(n=10, d=20, seed=0)
    with pytest.raises(FixedPointError, match="did not converge in 2 iterations"):
        adaptive_mahalanobis(X, y, max_iter=2)
    for kwargs in (dict(damping=0.0), dict(damping=1.5), dict(tol=0.0), dict(max_iter=0)):
        with pytest.raises(ValueError):
            adaptive_mahalanobis(X, y, **kwargs)
    Xz = torch.cat([X, torch.zeros(10, 1, dtype=F64)], dim=1)
    with pytest.raises(FixedPointError, match="zero diagonal entry"):
        adaptive_mahalanobis(Xz, y)
    with pytest.raises(NotSeparableError):
        adaptive_mahalanobis(torch.tensor([[1.0, 2.0], [1.0, 2.0]]), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="Labels"):
        adaptive_mahalanobis(X, torch.zeros(10))
    assert "AdaptiveNormSolution(margin=" in repr(adaptive_mahalanobis(X, y))
