"""The update maths of every optimizer, as small pure functions on tensors.

The ``torch.optim.Optimizer`` classes in :mod:`implicit_bias.optim` only loop over
parameters and state and call these. Each function returns new tensors and never
touches its inputs.
"""

from __future__ import annotations

import torch

#: Newton–Schulz quintic coefficients of Keller Jordan's Muon (and ``torch.optim.Muon``).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def ema(avg: torch.Tensor, x: torch.Tensor, beta: float) -> torch.Tensor:
    """Exponential moving average ``β·avg + (1 − β)·x`` (momentum, Adam's moments)."""
    return avg * beta + x * (1.0 - beta)


def steepest_step(norm, direction: list[torch.Tensor], normalized: bool, grad_scale: float = 1.0):
    """Steepest-descent step for ``norm`` along ``direction`` (a gradient or a momentum).

    Normalized: the unit-norm ``u`` with ``<u, d> = ‖d‖_*``. Unnormalized: ``‖d‖_* · u``,
    which for ℓ2 is plain gradient descent. ``grad_scale`` is the factor by which the
    incoming gradients are inflated by a rescaled (framed) loss; the normalized step
    ignores it, the unnormalized one divides it out.
    """
    u = norm.steepest(direction)
    if normalized:
        return u
    scale = norm.dual(direction) / grad_scale
    return [ui * scale for ui in u]


def adam_direction(m, v, step: int, betas, eps: float, bias_correction: bool = True):
    """Adam's ``m̂ / (√v̂ + ε)`` (Kingma & Ba 2015). With ``ε = 0`` a coordinate whose
    gradient has always been zero has ``m = v = 0``; its step is defined as 0, and the
    second return value says whether that happened so the caller can warn."""
    b1, b2 = betas
    if bias_correction:
        m = m / (1.0 - b1**step)
        v = v / (1.0 - b2**step)
    return scaled_by_root(m, v, eps)


def adam_proxy_direction(grad: torch.Tensor, grad_samples: torch.Tensor):
    """AdamProxy's ``∇L / sqrt(Σ_i ∇L_i²)`` coordinate-wise (Baek, Song & Yun 2025, the
    β2 → 1 limit of per-sample Adam): ``grad_samples`` holds the per-sample gradients
    along its first dimension. Returns the direction and the 0/0 flag of
    :func:`scaled_by_root`."""
    return scaled_by_root(grad, (grad_samples * grad_samples).sum(dim=0), 0.0)


def scaled_by_root(x: torch.Tensor, acc: torch.Tensor, eps: float):
    """``x / (√acc + ε)`` with 0/0 := 0 (RMSProp, AdaGrad and Adam's shared shape).

    Returns the direction and a flag telling whether any 0/0 occurred."""
    denom = acc.sqrt() + eps
    if eps > 0:
        return x / denom, False
    dead = denom == 0
    if not bool(dead.any()):
        return x / denom, False
    return torch.where(dead, torch.zeros_like(x), x / torch.where(dead, 1.0, denom)), True


def newton_schulz(g: torch.Tensor, steps: int = 5, coefficients=NS_COEFFICIENTS,
                  eps: float = 1e-7, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Approximate polar factor by the quintic Newton–Schulz iteration of Muon.

    Returns roughly ``U S' Vᵀ`` with ``S'`` in about [0.5, 1.5], *not* ``U Vᵀ``: fine for
    training speed, not for theory (use the exact :func:`norms.polar_factor`). ``dtype``
    lets it run in bfloat16 like ``torch.optim.Muon``.
    """
    if g.dim() != 2:
        raise ValueError(f"newton_schulz takes a matrix, got shape {tuple(g.shape)}.")
    a, b, c = coefficients
    x = g.to(dtype or g.dtype)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    if tall:
        x = x.T
    return x.to(g.dtype)
