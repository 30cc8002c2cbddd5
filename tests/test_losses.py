"""Log-domain losses: log ℓ(q) against direct formulas (and mpmath where available), its
behaviour far beyond float64's range, the framed loss's gradient, and ℓ⁻¹."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import F64
from implicit_bias import losses, models

KINDS = list(losses.LOSSES)


def direct_log_logistic(q: float) -> float:
    """``log ℓ(q) = log(log1p(exp(−q)))`` straight from the definition (python floats)."""
    return math.log(math.log1p(math.exp(-q)))


def test_log_terms_matches_the_definition_where_representable():
    q = np.r_[np.linspace(-50, 50, 2001), np.linspace(50, 700, 651), [-37.5, -20.01, -19.99, 29.99, 30.01]]
    got = losses.log_terms(torch.tensor(q, dtype=F64), "logistic").numpy()
    want = np.array([direct_log_logistic(v) for v in q])
    # log ℓ(q) crosses 0 near q = −0.54, where the relative error of any evaluation grows.
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(losses.log_terms(torch.tensor(q, dtype=F64), "exponential").numpy(), -q)


def test_log_terms_against_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    q = np.r_[np.linspace(-45, 45, 181), [29.999, 30.0, 30.001, 60.0, 200.0, 707.0]]
    got = losses.log_terms(torch.tensor(q, dtype=F64)).numpy()
    want = np.array([float(mpmath.log(mpmath.log1p(mpmath.exp(-mpmath.mpf(v))))) for v in q])
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


def test_log_terms_far_beyond_the_float_range():
    q = torch.tensor([700.0, 745.0, 800.0, 5e3, 1e4, 1e5], dtype=F64, requires_grad=True)
    for kind in KINDS:
        t = losses.log_terms(q, kind)
        assert torch.isfinite(t).all()
        # ℓ(q) = e^{−q}(1 − e^{−q}/2 + …): log ℓ(q) = −q to rounding.
        torch.testing.assert_close(t.detach(), -q.detach(), rtol=1e-15, atol=0)
        (grad,) = torch.autograd.grad(t.sum(), q)
        assert torch.isfinite(grad).all()
        torch.testing.assert_close(grad, -torch.ones_like(grad), rtol=1e-15, atol=0)
    # The plain loss underflows to exactly 0 there; its log stays exact.
    assert float(losses.loss(q.detach()[3:])) == 0.0
    assert float(losses.log_loss(q.detach()[3:])) == pytest.approx(-5e3, rel=1e-15)


def test_log_terms_gradient_matches_the_derivative():
    q = torch.tensor([-40.0, -10.0, -1.0, 0.0, 0.7, 5.0, 25.0, 29.9, 30.1, 35.0, 602.0],
                     dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(losses.log_terms(q, "logistic").sum(), q)
    # d/dq log ℓ(q) = ℓ'(q)/ℓ(q) = −σ(−q) / log(1 + e^{−q}).
    qs = q.detach().numpy()
    want = -(1 / (1 + np.exp(qs))) / np.log1p(np.exp(-qs))
    np.testing.assert_allclose(grad.numpy(), want, rtol=1e-12)


def test_log_loss_and_loss():
    q = torch.tensor([0.3, -1.2, 2.5, 8.0], dtype=F64)
    want = float(np.log1p(np.exp(-q.numpy())).sum())
    assert float(losses.loss(q, "logistic")) == pytest.approx(want, rel=1e-14)
    assert float(losses.log_loss(q, "logistic")) == pytest.approx(math.log(want), rel=1e-14)
    assert float(losses.loss(q, "exponential")) == pytest.approx(float(np.exp(-q.numpy()).sum()), rel=1e-14)
    batch = torch.stack([q, 2 * q])  # reduces over the last dimension
    assert losses.log_loss(batch).shape == (2,)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("frame", [0.0, 5.0, -3.0, 30.0])
def test_framed_loss_gradient_is_e_to_the_frame_times_the_plain_gradient(kind, frame):
    q = torch.tensor([-1.0, 0.2, 3.0, 12.0, 31.0], dtype=F64, requires_grad=True)
    framed = losses.framed_loss(q, frame, kind)
    (g_framed,) = torch.autograd.grad(framed, q)
    plain = losses.loss(q, kind)
    (g_plain,) = torch.autograd.grad(plain, q)
    assert float(framed.detach()) == pytest.approx(math.exp(frame) * float(plain.detach()), rel=1e-13)
    torch.testing.assert_close(g_framed, math.exp(frame) * g_plain, rtol=1e-13, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_framed_loss_gradient_through_a_model(kind):
    X = torch.randn(12, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    y = torch.sign(X[:, 0])
    model = models.TwoLayer(3, 4, seed=0)
    grads = []
    for frame in (0.0, 7.5):
        model.zero_grad()
        losses.framed_loss(y * model(X), frame, kind).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    torch.testing.assert_close(grads[1], math.exp(7.5) * grads[0], rtol=1e-13, atol=0)


def test_framed_loss_stays_representable_where_the_plain_loss_underflows():
    q = torch.tensor([800.0, 801.0, 900.0], dtype=F64, requires_grad=True)
    for kind in KINDS:
        assert float(losses.loss(q.detach(), kind)) == 0.0
        F = -float(losses.log_loss(q.detach(), kind))
        framed = losses.framed_loss(q, F, kind)
        assert float(framed.detach()) == pytest.approx(1.0, rel=1e-14)
        (g,) = torch.autograd.grad(framed, q)
        want = -np.exp(-np.array([0.0, 1.0, 100.0])) / (1 + math.exp(-1.0) + math.exp(-100.0))
        np.testing.assert_allclose(g.numpy(), want, rtol=1e-13)


@pytest.mark.parametrize("kind", KINDS)
def test_inverse_loss_from_log_inverts_the_loss(kind):
    q = torch.tensor([-20.0, -3.0, -0.5, 0.0, 0.5, 2.0, 10.0, 29.0, 31.0, 45.0, 100.0, 700.0, 1e4, 1e5,
                      1e200], dtype=F64)
    log_l = losses.log_terms(q, kind)  # one sample: L = ℓ(q)
    inv = losses.inverse_loss_from_log(log_l, kind)
    assert torch.isfinite(inv).all()
    torch.testing.assert_close(inv, q, rtol=1e-12, atol=1e-13)


def test_inverse_loss_from_log_direct_values():
    for log_l in (-1000.0, -50.0, -31.0, -29.0, -1.0, 0.0, 2.0):
        L = math.exp(log_l)
        t = torch.tensor(log_l, dtype=F64)
        assert float(losses.inverse_loss_from_log(t, "exponential")) == -log_l
        # Logistic: ℓ⁻¹(L) = −log(e^L − 1), with e^L − 1 = L(1 + L/2 + …) for tiny L.
        want = -log_l - math.log1p(L / 2 + L * L / 6) if log_l < -20 else -math.log(math.expm1(L))
        assert float(losses.inverse_loss_from_log(t, "logistic")) == pytest.approx(want, rel=1e-14, abs=1e-14)


def test_unknown_kind_raises():
    q = torch.zeros(3, dtype=F64)
    for fn in (losses.log_terms, losses.log_loss, losses.loss, losses.inverse_loss_from_log):
        with pytest.raises(ValueError, match="Unknown loss 'hinge'"):
            fn(q, "hinge")


@pytest.mark.parametrize("kind", ["exponential", "logistic"])
def test_framed_slopes_are_the_gradient_of_the_framed_loss(kind):
    small = torch.tensor([-30.0, -2.0, 0.0, 0.5, 3.0, 29.0, 31.0, 200.0, 800.0], dtype=torch.float64)
    large = torch.tensor([780.0, 800.0, 850.0], dtype=torch.float64)  # a loss near e^-780: F ≈ 780
    for q, frame in ((small, 0.0), (small, 5.0), (large, 790.0)):
        slopes = losses.framed_slopes(q, frame, kind)
        x = q.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(torch.exp(losses.log_terms(x, kind) + frame).sum(), x)
        assert torch.isfinite(slopes).all() and (slopes <= 0).all()
        torch.testing.assert_close(slopes, expected, rtol=1e-13, atol=0)
    # one frame per row broadcasts (a stack of runs)
    rows = losses.framed_slopes(small.expand(2, -1), torch.tensor([[0.0], [3.0]], dtype=torch.float64), kind)
    torch.testing.assert_close(rows[1], rows[0] * math.exp(3.0))


def test_logsumexp_is_torchs_to_the_bit():
    """The lean row-wise logsumexp equals ``torch.logsumexp`` bit for bit, infinite and
    NaN rows included."""
    gen = torch.Generator().manual_seed(0)
    terms = torch.randn(6, 50, dtype=torch.float64, generator=gen) * 300
    terms[1, 3] = math.inf
    terms[2] = -math.inf
    terms[3, 7] = math.nan
    terms[4, :10] = -math.inf
    expected = torch.logsumexp(terms, dim=-1)
    got = losses.logsumexp(terms)
    assert torch.equal(got.isnan(), expected.isnan())
    ok = ~expected.isnan()
    assert torch.equal(got[ok], expected[ok])
    assert torch.equal(losses.logsumexp(terms[0]), torch.logsumexp(terms[0], dim=-1))


@pytest.mark.parametrize("q", [[-3.0, 0.5, 20.0, 29.0], [31.0, 400.0, 900.0], [-3.0, 29.0, 31.0, 900.0]],
                         ids=["all small", "all large", "mixed"])
def test_log_terms_branches_agree_and_differentiate(q):
    """Whether every margin is on one side of the switch at q = 30 or not, the terms are
    the mixed formula's, their gradients are finite, and vmap (no data-dependent branch)
    gives the same."""
    q = torch.tensor(q, dtype=F64, requires_grad=True)
    terms = losses.log_terms(q)
    mixed = losses.log_terms(torch.cat([q.detach(), torch.tensor([1.0, 100.0], dtype=F64)]))[:len(q)]
    assert torch.equal(terms.detach(), mixed)
    (grad,) = torch.autograd.grad(terms.sum(), q)
    assert torch.isfinite(grad).all()
    assert torch.equal(torch.func.vmap(losses.log_terms)(q.detach()[:, None])[:, 0], mixed)
