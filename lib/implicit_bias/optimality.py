"""Is a KKT point of the margin problem a (local) optimum? A search for better points nearby.

The margin problem ``min ‖θ‖ s.t. q_i(θ) = y_i f(x_i; θ) ≥ 1`` of a homogeneous model has a
feasibility projection for free: any θ with ``min_i q_i(θ) > 0`` becomes feasible, with the
smallest margin exactly 1, when scaled by ``(min_i q_i)^{−1/L}``. So the value of a
direction is

    V(θ) = ‖θ‖ / (min_i q_i(θ))^{1/L}     (the norm of its feasible rescaling),

and θ* is a local optimum exactly when V(θ) ≥ V(θ*) for all θ near θ*. A KKT point
certifies only first-order stationarity (see :mod:`kkt`); :func:`search_nearby` looks for
second-order (or worse) failures by a stochastic hill climb on V inside a ball around θ*:
random Gaussian proposals at log-uniform radii, accepted when V falls by more than a
relative ``tol`` (so rounding noise along flat directions is never counted). Every point
it returns is exactly feasible. Finding nothing is evidence, not proof, of local
optimality; finding something is proof that θ* is not a local optimum (the returned point
is feasible and shorter).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from .margins import NotSeparatingError
from .norms import Norm, by_name


@dataclass(repr=False)
class NearbySearch:
    """The result of :func:`search_nearby`. Norms are of the feasible rescalings (min q = 1)."""

    improvement: float  # 1 − V(best)/V(θ*) ≥ 0; 0 when nothing better was found
    norm_start: float  # V(θ*)
    norm_best: float  # V(best)
    distance: float  # ‖best − θ*‖₂ / ‖θ*‖₂ after both are rescaled to min q = 1 (≈ ≤ radius)
    accepted: int  # how many proposals improved V
    trials: int
    model: torch.nn.Module  # the best point found, rescaled so that min q = 1

    def __repr__(self) -> str:
        return (f"NearbySearch(improvement={self.improvement:.3e}, norm {self.norm_start:.6g} → "
                f"{self.norm_best:.6g}, distance={self.distance:.2e}, accepted={self.accepted}/"
                f"{self.trials})")


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach()


@torch.no_grad()
def search_nearby(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, norm: str | Norm = "l2",
                  radius: float = 0.05, trials: int = 3000, tol: float = 1e-9, seed: int = 0) -> NearbySearch:
    """Search the ball ``‖θ − θ*‖ ≤ radius·‖θ*‖₂`` (θ* rescaled to min q = 1) for a feasible
    point of smaller ``norm`` than the model's own point θ*.

    ``model`` is a homogeneous model (``degree`` = L) that separates ``(X, y)``; ``norm`` a
    name or :class:`~norms.Norm` (ℓ2 for the margin problem of the gradient-descent
    theorems). ``trials`` proposals, each ``best + s·z`` with ``z`` a Gaussian direction and
    ``s`` log-uniform in ``[1e-4, 1]·radius·‖θ*‖``, projected back into the ball; a proposal
    is accepted when it lowers V by more than ``tol`` relative. Deterministic given ``seed``."""
    degree = getattr(model, "degree", None)
    if degree is None:
        raise TypeError(f"{type(model).__name__} has no `degree`: the search needs a homogeneous model.")
    if not (radius > 0 and math.isfinite(radius)):
        raise ValueError(f"radius must be a positive number, got {radius!r}.")
    if not (isinstance(trials, int) and trials >= 1):
        raise ValueError(f"trials must be a positive integer, got {trials!r}.")
    work = copy.deepcopy(model)
    params = list(work.parameters())
    norm_obj: Norm = by_name(norm, params) if isinstance(norm, str) else norm

    def value(vector: torch.Tensor) -> tuple[float, float]:
        torch.nn.utils.vector_to_parameters(vector, params)
        q_min = float((y * work(X)).min())
        if not q_min > 0:
            return math.inf, q_min
        return float(norm_obj([p.detach() for p in params])) / q_min ** (1.0 / float(degree)), q_min

    start = _flat(model)
    v0, q0 = value(start)
    if not math.isfinite(v0):
        raise NotSeparatingError(f"The model is not separating the data: margin ≤ 0 (min q = {q0:.3g}).")
    center = start / q0 ** (1.0 / float(degree))  # exactly feasible, min q = 1
    scale = float(center.norm()) * radius
    gen = torch.Generator().manual_seed(int(seed))
    best, v_best, accepted = center.clone(), v0, 0
    for _ in range(trials):
        z = torch.randn(center.shape, generator=gen, dtype=center.dtype)
        s = scale * 10.0 ** (-4.0 * float(torch.rand((), generator=gen, dtype=torch.float64)))
        proposal = best + s * z / z.norm()
        offset = proposal - center
        if offset.norm() > scale:  # stay in the ball
            proposal = center + offset * (scale / offset.norm())
        v, _ = value(proposal)
        if v < v_best * (1.0 - tol):
            best, v_best, accepted = proposal, v, accepted + 1
    _, q_best = value(best)
    best = best / q_best ** (1.0 / float(degree))
    torch.nn.utils.vector_to_parameters(best, params)
    return NearbySearch(
        improvement=1.0 - v_best / v0,
        norm_start=v0,
        norm_best=v_best,
        distance=float((best - center).norm() / center.norm()),
        accepted=accepted,
        trials=trials,
        model=work,
    )


__all__ = ["NearbySearch", "search_nearby"]
