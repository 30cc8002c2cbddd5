"""Chapter 12's verdict: decoupled weight decay λ drives each optimizer to the minimizer of
the loss over its own norm's ball of radius 1/λ.

* :func:`rows` — per run of a linear model: in every ball, the relative Frank–Wolfe gap
  and ``‖θ‖/R`` (:func:`kkt.constrained_certificate`) and the cosine with the exact ball
  minimizer (:func:`maxmargin.ball_minimizer`);
* :func:`in_own_ball` — the predicate on those rows.

On a linear model the ball problem is convex, so its KKT point is its unique minimizer (for
a strictly convex loss on data that span the space): the cosine with the exact minimizer
is the sharp test, the gap the certificate that also works where no solver does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import Row, Verdict

if TYPE_CHECKING:
    from ..history import History
    from ..norms import Norm


def rows(histories: Iterable[History], X: torch.Tensor, y: torch.Tensor, radius: float,
         minimizers: Mapping[str, np.ndarray], balls: Mapping[str, Norm] | None = None,
         loss: str = "logistic") -> list[dict[str, object]]:
    """One row per history: ``gap <ball>``, ``‖θ‖/R <ball>`` and ``cos <ball>`` for every ball
    of ``minimizers`` (its name → the exact minimizer over it, flat); ``balls`` gives the norm
    of a name that is not a registered norm's (a block model's hybrid)."""
    from ..kkt import constrained_certificate

    out: list[dict[str, object]] = []
    for h in histories:
        row: dict[str, object] = {"optimizer": h.run.label}
        direction = h.directions[-1]
        for name, w in minimizers.items():
            norm = (balls or {}).get(name, name)
            c = constrained_certificate(h.model, X, y, norm, radius, loss)
            row[f"gap {name}"], row[f"‖θ‖/R {name}"] = c.gap, c.norm_ratio
            row[f"cos {name}"] = float(direction @ np.reshape(w, -1) / np.linalg.norm(w))
        out.append(row)
    return out


def in_own_ball(rows: Sequence[Row], own: Mapping[str, str], gap_max: float = 0.05, cos_min: float = 0.999,
                ratio_tol: float = 0.01) -> Verdict:
    """Each optimizer named in ``own`` (label → norm name) ends at the minimizer of the loss
    over its own norm's ball: cosine ≥ ``cos_min`` with the exact minimizer and nearer to it
    than to every other ball's, a relative Frank–Wolfe gap in ``[0, gap_max]`` there, and
    ``‖θ‖`` within ``ratio_tol`` of the radius 1/λ (on the sphere: the constraint is active).
    Measured (20 Gaussian points in 10 dimensions, λ = 0.5, ``η_0 t^{-1/2}``, 3 draws): at
    20,000 steps cosines 1 − 1e-6 or closer and gaps from 1e-14 (ℓ2) to 7e-3 (Signum: a sign
    step moves every coordinate by η_t, so the gradient's interior coordinates never settle
    at 0), ‖θ‖/R 1.0000; at 8,000 steps gaps ≤ 1.5e-2 and ‖θ‖/R ≥ 0.999. Another ball's
    minimizer is at cosine ≤ 0.95 and gap ≥ 0.5 in absolute value."""
    v = Verdict(f"with decoupled weight decay λ each optimizer ends at the loss's minimizer over its own "
                f"norm's ball of radius 1/λ (cos ≥ {cos_min}, relative Frank–Wolfe gap ≤ {gap_max}, "
                f"‖θ‖ within {ratio_tol:.0%} of 1/λ)")
    by_label = {r["optimizer"]: r for r in rows}
    for opt, norm in own.items():
        if not v.require(opt in by_label, f"no run labelled {opt}"):
            continue
        r = by_label[opt]
        cosines = {k[len("cos "):]: float(c) for k, c in r.items() if k.startswith("cos ")}
        nearest = max(cosines, key=lambda k: cosines[k])
        gap, ratio = float(r[f"gap {norm}"]), float(r[f"‖θ‖/R {norm}"])
        v.note(f"{opt} → {norm} ball: cos {cosines[norm]:.6f}, gap {gap:.1e}, ‖θ‖/R {ratio:.4f}; "
               f"nearest minimizer: {nearest}")
        v.require(cosines[norm] >= cos_min, f"{opt}: cos {cosines[norm]:.4f} with the {norm}-ball minimizer "
                                            f"< {cos_min}")
        v.require(nearest == norm, f"{opt}: nearer to the {nearest}-ball minimizer than to its own ({norm})")
        v.require(0 <= gap <= gap_max, f"{opt}: relative Frank–Wolfe gap {gap:.2g} in the {norm} ball "
                                       f"outside [0, {gap_max}]")
        v.require(abs(ratio - 1) <= ratio_tol, f"{opt}: ‖θ‖/R = {ratio:.4f} in {norm}, not within "
                                               f"{ratio_tol:.0%} of 1 (the ball's sphere)")
    return v


def toward_max_margin(X: torch.Tensor, y: torch.Tensor, norms: Iterable[str], radii: Sequence[float],
                      compare: Mapping[str, str] | None = None) -> dict[str, dict[str, list[float]]]:
    """Per norm, along ``radii``: the exact ball minimizer's cosine with the max-margin
    direction of the same norm (or of ``compare[norm]``) and its normalized margin as a
    fraction of the maximum. The minimizers are the exponential loss's
    (:func:`maxmargin.ball_minimizer`, ``loss='exponential'``: accurate at any radius)."""
    from ..maxmargin import ball_minimizer, max_margin, norm_value

    Z = (np.asarray(y, dtype=float)[:, None] * np.asarray(X, dtype=float))
    out: dict[str, dict[str, list[float]]] = {}
    for norm in norms:
        best = max_margin(X, y, norm)
        target = np.asarray(max_margin(X, y, (compare or {}).get(norm, norm)).direction).reshape(-1)
        ws = [ball_minimizer(X, y, norm, R, loss="exponential") for R in radii]
        out[norm] = {"cos": [float(w @ target / np.linalg.norm(w) / np.linalg.norm(target)) for w in ws],
                     "margin": [float((Z @ w).min() / norm_value(w, norm)) / best.margin for w in ws]}
    return out


def approaches_max_margin(curves: Mapping[str, Mapping[str, Sequence[float]]], cos_min: float = 0.999,
                          margin_min: float = 0.99) -> Verdict:
    """As the radius 1/λ grows the ball minimizer tends to the max-margin solution: at the
    largest radius of :func:`toward_max_margin`'s curves the cosine is ≥ ``cos_min`` and the
    margin ≥ ``margin_min`` of the maximum, and the cosine rose from the smallest radius.
    Measured (20 points, 10 dimensions, R from 0.5 to 20,000): cosines 1.00000 and margins
    ≥ 0.9999 at R = 20,000 for ℓ2, ℓ∞ and ℓ1; against another norm's max-margin direction
    the cosine stays ≤ 0.97."""
    v = Verdict(f"as R = 1/λ grows the ball minimizer's direction tends to the same norm's max-margin "
                f"direction (cos ≥ {cos_min} and margin ≥ {margin_min} of the maximum at the largest R)")
    for name, c in curves.items():
        v.note(f"{name}: cos {c['cos'][0]:.3f} → {c['cos'][-1]:.5f}, margin {c['margin'][0]:.3f} → "
               f"{c['margin'][-1]:.4f}")
        v.require(c["cos"][-1] >= cos_min,
                  f"{name}: cos {c['cos'][-1]:.4f} < {cos_min} at the largest radius")
        v.require(c["margin"][-1] >= margin_min,
                  f"{name}: margin {c['margin'][-1]:.4f} < {margin_min} of the maximum at the largest radius")
        v.require(c["cos"][-1] > c["cos"][0], f"{name}: the cosine did not rise with the radius")
    return v


__all__ = ["rows", "in_own_ball", "toward_max_margin", "approaches_max_margin"]
