"""Verdicts of chapter 11, "Where the theorems stop": only where a theorem exists.

* :func:`smoothed_margin_rises` — Lyu & Li 2020 (Thm 4.1 for gradient descent, multiclass
  included): for a smooth homogeneous model trained by gradient descent with a small enough
  rate, once the loss is below its threshold (``L < ℓ(0)``: ``1`` for the exponential loss,
  so every margin is positive) the smoothed margin ``γ̃ = ℓ^{-1}(L) / ‖θ‖₂^L`` never
  decreases.
* :func:`rmsprop_regime` — Wang et al. 2021: RMSProp with ε > 0 turns into gradient descent
  once its second moment falls far below ε (then it inherits GD's ℓ2 bias); AdaGrad's
  accumulated conditioner does not become uniform. The finite-time statement asserted is
  the mechanism: the conditioner spread ``(max √v + ε) / (min √v + ε)`` of RMSProp ends
  near 1 and AdaGrad's does not; the limit itself (an ℓ2 KKT direction) is a ``t → ∞``
  statement that a run of a few thousand steps cannot show, so the chapter reports its
  margins as measured.

Everything else in the chapter (own-norm rankings on multiclass nets and convolutional
nets, the ReLU case) is measured, not proved, and has no predicate here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from .. import losses
from . import Row, Verdict

if TYPE_CHECKING:
    from ..history import History

#: A run's curves for :func:`smoothed_margin_rises`: steps, log-loss, smoothed margins and the
#: loss's name.
Curve = tuple[np.ndarray, np.ndarray, np.ndarray, str]

#: A logged smoothed margin may fall by this much (relative to its size) and still count as
#: non-decreasing: rounding of ``log L`` and ``‖θ‖`` in float64.
MONOTONE_RTOL = 1e-9


def loss_threshold(loss: str) -> float:
    """``log ℓ(0)``: below it the smoothed margin ``ℓ^{-1}(L)/‖θ‖^L`` is positive."""
    return 0.0 if loss == "exponential" else math.log(math.log(2.0))


def smoothed_margins(history: History, degree: float | None = None) -> np.ndarray:
    """Lyu & Li's smoothed margin ``ℓ^{-1}(L) / ‖θ‖₂^L`` at every logged step of a history."""
    degree = cast(float, history.model.degree) if degree is None else degree  # a module attribute
    log_l = torch.as_tensor(history.log_loss, dtype=torch.float64)
    inverse = losses.inverse_loss_from_log(log_l, history.run.loss)
    smoothed: np.ndarray = inverse.numpy() / np.asarray(history.param_norm, dtype=float) ** degree
    return smoothed


def smoothed_margin_rises(curves: Mapping[str, Curve], rtol: float = MONOTONE_RTOL,
                          min_points: int = 5) -> Verdict:
    """For every run, the smoothed margin never decreases (beyond ``rtol``) on the logged
    steps after the first one whose loss is below the threshold, which at least
    ``min_points`` logged steps must follow, and it ends strictly above where it started.

    ``curves`` maps a run's label to ``(steps, log_loss, smoothed, loss)`` (arrays over the
    logged steps and the loss's name; see :func:`curves_of`)."""
    v = Verdict("after the loss falls below ℓ(0), the smoothed margin never decreases "
                "(Lyu & Li, for plain GD)")
    for label, (steps, log_loss, smoothed, loss) in curves.items():
        below = np.flatnonzero(np.asarray(log_loss) < loss_threshold(loss))
        if not v.require(len(below) > 0, f"{label}: the loss never fell below ℓ(0) (final log L "
                                         f"{float(log_loss[-1]):.3g}); train longer"):
            continue
        start = int(below[0])
        tail = np.asarray(smoothed[start:], dtype=float)
        if not v.require(len(tail) >= min_points, f"{label}: only {len(tail)} logged steps after the "
                                                  f"threshold (step {int(steps[start])}); need {min_points}"):
            continue
        drops = np.diff(tail)
        worst = int(np.argmin(drops))
        tol = rtol * np.abs(tail).max()
        v.note(f"{label}: threshold at step {int(steps[start])}, γ̃ {tail[0]:.4g} → {tail[-1]:.4g}, "
               f"largest fall {max(-drops.min(), 0.0):.2e} over {len(tail)} logged steps "
               f"(need ≤ {tol:.1e}, rounding)")
        v.require(drops.min() >= -tol, f"{label}: γ̃ falls by {-drops[worst]:.3g} between steps "
                                       f"{int(steps[start + worst])} and {int(steps[start + worst + 1])}")
        v.require(tail[-1] > tail[0], f"{label}: γ̃ does not rise ({tail[0]:.4g} → {tail[-1]:.4g})")
    return v


def curves_of(histories: Iterable[History]) -> dict[str, Curve]:
    """``{label (seed): (steps, log_loss, smoothed margins, loss)}`` for
    :func:`smoothed_margin_rises`."""
    return {f"{h.run.label} (seed {h.run.seed})": (h.steps, h.log_loss, smoothed_margins(h), h.run.loss)
            for h in histories}


def conditioner_spread(log10_root_v_max: float, log10_root_v_min: float, eps: float) -> float:
    """``(max √v + ε) / (min √v + ε)``: 1 when the adaptive step is plain gradient descent
    (scaled by 1/ε), large while the conditioner is far from uniform."""
    top: float = 10.0 ** log10_root_v_max  # float ** float is Any to mypy (it may be complex)
    low: float = 10.0 ** log10_root_v_min
    low = 0.0 if not math.isfinite(low) else low
    return (top + eps) / (low + eps)


def rmsprop_regime(rows: Sequence[Row], uniform: float = 1.5, far: float = 10.0) -> Verdict:
    """Wang et al.'s mechanism at the end of training, on every seed: RMSProp's conditioner
    spread is below ``uniform`` (its step is GD's to within that factor per coordinate)
    and AdaGrad's is above ``far``.

    ``rows`` are dicts with ``label`` (``'RMSProp'`` or ``'AdaGrad'``), ``seed`` and
    ``spread`` (:func:`conditioner_spread` at the last logged step)."""
    v = Verdict(f"RMSProp's conditioner ends uniform (spread < {uniform:g}), AdaGrad's does not (> {far:g})")
    seeds = sorted({r["seed"] for r in rows})
    for seed in seeds:
        by = {r["label"]: r for r in rows if r["seed"] == seed}
        if not v.require({"RMSProp", "AdaGrad"} <= set(by),
                         f"seed {seed}: need an RMSProp and an AdaGrad run"):
            continue
        rms, ada = by["RMSProp"]["spread"], by["AdaGrad"]["spread"]
        v.note(f"seed {seed}: spread RMSProp {rms:.3g} (need < {uniform:g}), "
               f"AdaGrad {ada:.3g} (need > {far:g})")
        v.require(rms < uniform, f"seed {seed}: RMSProp's conditioner spread {rms:.3g} ≥ {uniform:g} "
                                 "(not yet gradient descent: ε too small for the gradient scale, "
                                 "or too few steps)")
        v.require(ada > far, f"seed {seed}: AdaGrad's conditioner spread {ada:.3g} ≤ {far:g}")
    return v


__all__ = ["smoothed_margin_rises", "smoothed_margins", "curves_of", "loss_threshold", "conditioner_spread",
           "rmsprop_regime", "MONOTONE_RTOL"]
