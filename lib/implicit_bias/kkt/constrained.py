"""How far a model is from a KKT point of the norm-ball problem that weight decay solves.

Decoupled weight decay λ, ``θ ← θ − η_t (u_t + λθ)`` with ``u_t`` a unit step of a norm,
has its fixed points on the sphere of radius ``R = 1/λ`` of that norm: a limit point is a
KKT point of

    min L(θ)   s.t.   ‖θ‖ ≤ R

(AdamW and ℓ∞: Xie & Li 2024; Lion: Chen, Liu, Liang & Liu 2024; the steepest-descent
family in its own norm by the same argument). For this convex constraint the KKT
condition at θ is ``⟨∇L(θ), θ − s⟩ ≤ 0`` for every ``s`` in the ball, and the largest such
product is the Frank–Wolfe gap ``⟨g, θ⟩ + R‖g‖_*``. Relative to its scale ``R‖g‖_*`` it is

    gap = 1 + ⟨g, θ⟩ / (R ‖g‖_*)   ∈ [0, 2] inside the ball,

0 exactly at a KKT point (``θ`` on the sphere and ``−g`` in its normal cone, for a
non-zero ``g``), and unchanged by the loss's scale, so it is read in the log domain
(``g = ∇ log L``). On a linear model the problem is convex and a KKT point is its minimizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import losses
from ..margins import checked_margins
from ..norms import Norm, as_norm


@dataclass(frozen=True)
class ConstrainedCertificate:
    """``gap``: the relative Frank–Wolfe gap (0 at a KKT point of ``min L s.t. ‖θ‖ ≤ radius``);
    ``norm_ratio``: ``‖θ‖ / radius`` (1 on the sphere, where decay and steps balance);
    ``norm``: the norm's name."""

    gap: float
    norm_ratio: float
    radius: float
    norm: str

    def __repr__(self) -> str:
        return (f"ConstrainedCertificate(gap={self.gap:.3g}, ‖θ‖/R={self.norm_ratio:.4f}, "
                f"R={self.radius:g}, norm={self.norm!r})")


def constrained_certificate(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, norm: Norm | str,
                            radius: float, loss: str = "logistic") -> ConstrainedCertificate:
    """The relative Frank–Wolfe gap of ``model``'s parameters for ``min L(θ) s.t. ‖θ‖ ≤ radius``
    in ``norm`` (any :class:`norms.Norm` with a ``dual``, or a name), and ``‖θ‖ / radius``.
    ``radius`` is ``1/λ`` for decoupled weight decay λ; ``loss`` the run's loss."""
    if not (isinstance(radius, (int, float)) and not isinstance(radius, bool)
            and math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a finite number > 0 (1/λ for weight decay λ), got {radius!r}.")
    params = [p for p in model.parameters()]
    norm = as_norm(norm, [p.detach() for p in params])
    with torch.enable_grad():
        q, _ = checked_margins(model, X, y)
        grads = torch.autograd.grad(losses.log_loss(q, loss), params)
    theta = [p.detach() for p in params]
    dual = float(norm.dual(list(grads)))
    if dual == 0:
        raise ValueError("the loss's gradient is 0 here: no constraint is active, and the gap is undefined.")
    inner = float(sum((g * t).sum() for g, t in zip(grads, theta)))
    return ConstrainedCertificate(gap=1 + inner / (radius * dual), norm_ratio=float(norm(theta)) / radius,
                                  radius=float(radius), norm=norm.name)


__all__ = ["ConstrainedCertificate", "constrained_certificate"]
