"""Chapter 1 (the setting): the two properties every later margin rests on.

* :func:`homogeneity` — each model is ``L``-homogeneous with the degree it declares:
  ``f(X; cθ) = c^L f(X; θ)`` pointwise, and ``log(‖f(X; cθ)‖ / ‖f(X; θ)‖) / log c``
  recovers ``model.degree``.
* :func:`margin_invariance` — the normalized margin ``min_i q_i / ‖θ‖^L`` does not change
  under ``θ → cθ``, for every model and norm (it is a function of the direction only).

Mutants (``tests/test_verdicts_setting.py``): a model whose declared degree is wrong
fails the first; a margin that divides by the norm raised to the wrong power fails the
second.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import torch

from ..margins import normalized_margin
from ..models import HomogeneousModel
from . import Verdict

_Model = TypeVar("_Model", bound=torch.nn.Module)
#: ``margin(model, X, y, norm)``, as :func:`~implicit_bias.normalized_margin`.
Margin = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, str], float]

#: The scale factors c at which homogeneity and invariance are checked.
SCALES = (0.5, 2.0, 10.0)
MARGIN_SCALES = (0.1, 3.0, 50.0)
NORMS = ("l2", "linf", "l1", "spectral", "hybrid")


def scaled(model: _Model, c: float) -> _Model:
    """A copy of ``model`` with every parameter multiplied by ``c``."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(c)
    return model


@torch.no_grad()
def measured_degree(model: torch.nn.Module, X: torch.Tensor, c: float) -> float:
    """``log(‖f(X; cθ)‖ / ‖f(X; θ)‖) / log c``: the degree the model shows at scale ``c``."""
    f, fc = model(X), scaled(model, c)(X)
    return math.log(float(fc.norm() / f.norm())) / math.log(c)


@torch.no_grad()
def homogeneity(zoo: Mapping[str, HomogeneousModel], X: torch.Tensor, scales: Sequence[float] = SCALES,
                rtol: float = 1e-10, tol: float = 1e-8) -> Verdict:
    """Every model of ``zoo`` (name → model with a ``degree``) satisfies
    ``f(X; cθ) = c^L f(X; θ)`` at every ``c`` in ``scales`` (relative ``rtol``), and the
    measured degree agrees with ``model.degree`` to ``tol``."""
    v = Verdict("every model is homogeneous of the degree it declares")
    for name, model in zoo.items():
        L = float(model.degree)
        f = model(X)
        measured = []
        for c in scales:
            fc, target = scaled(model, c)(X), c**L * f
            v.require(torch.allclose(fc, target, rtol=rtol, atol=rtol * float(target.abs().max())),
                      f"{name}: f(cθ) ≠ c^L f(θ) at c = {c:g} (L = {L:g})")
            measured.append(measured_degree(model, X, c))
        worst = max(abs(m - L) for m in measured)
        v.note(f"{name}: L declared {L:g}, measured " + ", ".join(f"{m:.12f}" for m in measured)
               + f" (need within {tol:g}; f(cθ) = c^L f(θ) to {rtol:g})")
        v.require(worst < tol, f"{name}: measured degree differs from the declared {L:g} by {worst:.2e}")
    return v


def margin_invariance(zoo: Mapping[str, torch.nn.Module], X: torch.Tensor, y: torch.Tensor,
                      norms: Sequence[str] = NORMS, scales: Sequence[float] = MARGIN_SCALES,
                      margin: Margin = normalized_margin,
                      tol: float = 1e-10) -> Verdict:
    """``margin(model, X, y, norm)`` (default: :func:`~implicit_bias.normalized_margin`) is
    the same at θ and at cθ for every model of ``zoo``, every norm name in ``norms`` and
    every ``c`` in ``scales``: largest relative change ≤ ``tol``."""
    v = Verdict("the normalized margin depends on the direction of θ only")
    where: str | None
    worst, where = 0.0, None
    for name, model in zoo.items():
        for norm in norms:
            g0 = margin(model, X, y, norm)
            for c in scales:
                change = abs(margin(scaled(model, c), X, y, norm) - g0) / abs(g0)
                if not change <= worst:  # NaN counts as the worst
                    worst, where = change, f"{name}, {norm}, c = {c:g}"
    v.note(f"largest relative change of γ(cθ) over {len(zoo)} models × {len(norms)} norms × "
           f"{len(scales)} scales: {worst:.1e}" + (f" ({where})" if where else "") + f" (need ≤ {tol:g})")
    v.require(worst <= tol, f"γ(cθ) ≠ γ(θ): relative change {worst:.2e} at {where}")
    return v


__all__ = ["homogeneity", "margin_invariance", "measured_degree", "scaled", "SCALES", "MARGIN_SCALES",
           "NORMS"]
