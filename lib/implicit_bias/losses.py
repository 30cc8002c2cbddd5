"""Exponential and logistic losses of the margins ``q_i``, in the log domain.

``log_terms`` returns ``log ℓ(q_i)`` exactly even when ``ℓ(q_i)`` underflows (q ≫ 700),
so the total loss ``L = Σ ℓ(q_i)`` can be carried as ``log L`` and a rescaled ("framed")
loss ``e^F L`` can be differentiated without underflow (Lyu & Li 2019).
"""

from __future__ import annotations

import torch

LOSSES = ("exponential", "logistic")


def _check(kind: str) -> None:
    if kind not in LOSSES:
        raise ValueError(f"Unknown loss {kind!r}; choose one of {LOSSES}.")


def log_terms(q: torch.Tensor, kind: str = "logistic") -> torch.Tensor:
    """``log ℓ(q_i)`` per sample. Logistic: ``log log(1 + e^{−q})``, which is
    ``−q + log1p(−e^{−q}/2 + …)`` for large q — computed without underflow."""
    _check(kind)
    if kind == "exponential":
        return -q
    # For q > 30, log(softplus(-q)) = -q + log(log1p(e^-q)/e^-q) and the ratio is
    # 1 - e^-q/2 + O(e^-2q): use -q + log1p(-e^-q/2), exact to rounding. Below, use
    # log(1 + e^{-q}) as logaddexp(0, -q): exact to rounding for every q (torch's softplus
    # returns -q unchanged for -q > 20, a relative error up to 3e-11).
    big = q > 30
    # This runs at every training step, and a long run soon has every margin above 30:
    # when no margin needs a branch, skip it.
    try:
        some_big = bool(big.any())
        all_big = some_big and bool(big.all())
    except RuntimeError:  # under torch.func.vmap, which allows no data-dependent branch
        some_big, all_big = True, False
    if not some_big:
        return torch.log(torch.logaddexp(torch.zeros_like(q), -q))
    if all_big:
        return -q + torch.log1p(-0.5 * torch.exp(-q))
    qs = torch.where(big, 0.0, q)  # no log(0) in the branch not taken (its gradient would be NaN)
    small_q = torch.log(torch.logaddexp(torch.zeros_like(qs), -qs))
    large_q = -q + torch.log1p(-0.5 * torch.exp(-torch.where(big, q, 30.0)))
    return torch.where(big, large_q, small_q)


def logsumexp(terms: torch.Tensor) -> torch.Tensor:
    """``torch.logsumexp`` over the last dimension, the same arithmetic in fewer kernels
    (it runs at every training step): shift by the largest term (by 0 where that is
    infinite), sum the exponentials, take the log."""
    top = terms.amax(dim=-1, keepdim=True).nan_to_num(0.0, posinf=0.0, neginf=0.0)
    return torch.log(torch.exp(terms - top).sum(dim=-1)) + top.squeeze(-1)


def log_loss(q: torch.Tensor, kind: str = "logistic") -> torch.Tensor:
    """``log Σ_i ℓ(q_i)``."""
    return logsumexp(log_terms(q, kind))


def loss(q: torch.Tensor, kind: str = "logistic") -> torch.Tensor:
    """``Σ_i ℓ(q_i)`` (underflows to 0 for large margins; prefer :func:`log_loss`)."""
    return log_loss(q, kind).exp()


def framed_loss(q: torch.Tensor, frame: float, kind: str = "logistic") -> torch.Tensor:
    """``e^F Σ_i ℓ(q_i)``: the loss rescaled by a frame F chosen near ``−log L`` so that
    it stays near 1; its gradient is ``e^F ∇L``."""
    return torch.exp(log_terms(q, kind) + frame).sum()


def framed_slopes(q: torch.Tensor, frame: float | torch.Tensor, kind: str = "logistic") -> torch.Tensor:
    """``d/dq_i [e^F ℓ(q_i)]`` per sample, in the log domain (never ``0 · inf``): the
    gradient of the framed loss with respect to the margins, without autograd.
    Exponential: ``−e^{F−q}``. Logistic: ``−e^{F + log σ(−q)}``. ``frame`` broadcasts
    against ``q`` (one F per run for a stack of runs)."""
    _check(kind)
    if kind == "exponential":
        return -torch.exp(frame - q)
    return -torch.exp(frame + torch.nn.functional.logsigmoid(-q))


def inverse_loss_from_log(log_l: torch.Tensor, kind: str = "logistic") -> torch.Tensor:
    """``ℓ^{-1}(L)`` from ``log L``: the smoothed margin's numerator (Lyu & Li 2019).
    Exponential: ``−log L``. Logistic: ``−log(e^L − 1)``."""
    _check(kind)
    if kind == "exponential":
        return -log_l
    # e^L - 1 = L (1 + L/2 + ...): for tiny L use -log L - L/2, which never underflows.
    tiny = log_l < -30
    safe = torch.where(tiny, torch.zeros_like(log_l), log_l)
    return torch.where(tiny, -log_l - 0.5 * torch.exp(log_l), -torch.log(torch.expm1(safe.exp())))
