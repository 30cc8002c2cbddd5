"""Chapter 6's verdicts: per-sample Adam departs from full-batch Adam, Signum does not
(Baek, Song & Yun 2025), on linear models.

* :func:`generalized_rademacher` — on generalized Rademacher data per-sample Adam ends at the
  ℓ2 max-margin direction, full-batch Adam at the ℓ∞ max margin, and the two end apart.
* :func:`gaussian` — on Gaussian data per-sample Adam and AdamProxy end at the dual fixed
  point's adaptive max-margin direction, full-batch Adam at the ℓ∞ one.
* :func:`batch_schemes` — the per-sample schemes agree; growing the batch moves the limit
  from the fixed point to ℓ∞.
* :func:`signum` — Signum with a long momentum ends at ℓ∞ at every batch size, a short
  momentum does not.
* :func:`beta2_cost` — a longer second-moment memory reaches the fixed point later.
* :func:`on_every_seed` — one verdict from a predicate's verdicts on several training seeds
  (it holds only where every seed's does; the one of :mod:`implicit_bias.verdicts`).
* :func:`regime` — every Adam run the theorems are asserted on stays where its step ratio
  ``|m̂|/√v̂`` is alive (:mod:`implicit_bias.regime`); needs the
  :func:`implicit_bias.regime.step_ratio` observer.

The cosines are of final directions with unit reference directions (``dirs``: name → unit
vector, e.g. ``{'ℓ2': …, 'ℓ∞': …, 'fixed point': …}``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt

from .. import regime as regimes
from . import Verdict, on_every_seed  # noqa: F401 (re-exported: the chapter calls per_sample.on_every_seed)

if TYPE_CHECKING:
    from ..history import History

#: Unit reference directions by name (``'ℓ2'``, ``'ℓ∞'``, ``'fixed point'``).
Directions = Mapping[str, npt.ArrayLike]

L2, LINF, FIXED = "ℓ2", "ℓ∞", "fixed point"


def cosines(h: History, dirs: Directions) -> dict[str, float]:
    """``{name: cos(final direction of h, dirs[name])}``."""
    w = np.asarray(h.directions[-1], dtype=float)
    return {k: float(w @ np.asarray(v, dtype=float)) for k, v in dirs.items()}


def _nearest(cos: Mapping[str, float]) -> str:
    return max(cos, key=lambda k: cos[k])


def generalized_rademacher(inc: History, full: History, l2_direction: np.ndarray, linf_margin: float,
                           cos_min: float = 0.99,
                           margin_min: float = 0.95, apart_cos: float = 0.95,
                           apart_margin: float = 0.8) -> Verdict:
    """Per-sample Adam (``inc``) ends with cosine ``≥ cos_min`` with the unit ℓ2 max-margin
    direction; full-batch Adam (``full``) ends with an ℓ∞ margin ``≥ margin_min`` of the
    maximum ``linf_margin`` and still rising over the second half of the run (the ℓ∞
    solution is not unique on these data, so a margin, not a cosine); and they end apart:
    ``full``'s cosine with ℓ2 is below ``apart_cos`` and ``inc``'s ℓ∞ margin below
    ``apart_margin`` of the maximum."""
    v = Verdict("on generalized Rademacher data per-sample Adam → ℓ2 max margin, full-batch Adam → ℓ∞")
    cos_inc = float(inc.directions[-1] @ l2_direction)
    cos_full = float(full.directions[-1] @ l2_direction)
    ratio = np.asarray(full.margins["linf"]) / linf_margin
    half = int(np.searchsorted(full.steps, full.steps[-1] / 2))
    inc_linf = inc.final("linf") / linf_margin
    v.note(f"{inc.run.label}: cos with the ℓ2 solution {cos_inc:.4f} (need ≥ {cos_min}); "
           f"ℓ∞ margin / max {inc_linf:.4f} (need < {apart_margin})")
    v.note(f"{full.run.label}: ℓ∞ margin / max {ratio[half]:.4f} at step {full.steps[half]}, {ratio[-1]:.4f} "
           f"at the end (need ≥ {margin_min}, rising); cos with the ℓ2 solution {cos_full:.4f} "
           f"(need < {apart_cos})")
    v.require(cos_inc >= cos_min, f"{inc.run.label}: cosine {cos_inc:.4f} with the ℓ2 solution < {cos_min}")
    v.require(ratio[-1] >= margin_min,
              f"{full.run.label}: ℓ∞ margin {ratio[-1]:.4f} of the maximum < {margin_min}")
    v.require(ratio[-1] > ratio[half], f"{full.run.label}: ℓ∞ margin not rising over the second half "
                                       f"({ratio[half]:.4f} → {ratio[-1]:.4f})")
    v.require(cos_full < apart_cos,
              f"{full.run.label}: cosine {cos_full:.4f} with the ℓ2 solution ≥ {apart_cos}")
    v.require(inc_linf < apart_margin,
              f"{inc.run.label}: ℓ∞ margin {inc_linf:.4f} of the maximum ≥ {apart_margin}")
    return v


def gaussian(inc: History, proxy: History, full: History, dirs: Directions, cos_min: float = 0.99,
             proxy_min: float = 0.999) -> Verdict:
    """Per-sample Adam (``inc``) ends nearer the fixed-point direction than the ℓ2 and ℓ∞
    ones with cosine ``≥ cos_min``; AdamProxy (``proxy``) nearer the fixed point with cosine
    ``≥ proxy_min``; full-batch Adam (``full``) nearer the ℓ∞ solution than the others.
    ``dirs`` has the three unit references under ``'ℓ2'``, ``'ℓ∞'``, ``'fixed point'``."""
    v = Verdict("on Gaussian data per-sample Adam and AdamProxy → the adaptive (fixed-point) max margin, "
                "full-batch Adam → ℓ∞")
    for h, own, level in ((inc, FIXED, cos_min), (proxy, FIXED, proxy_min), (full, LINF, None)):
        cos = cosines(h, dirs)
        near = _nearest(cos)
        need = f" (need ≥ {level})" if level is not None else ""
        v.note(f"{h.run.label}: cos with the {own} solution {cos[own]:.4f}{need}; nearest {near}")
        v.require(near == own, f"{h.run.label}: nearer the {near} solution than the {own} one")
        if level is not None:
            v.require(cos[own] >= level,
                      f"{h.run.label}: cosine {cos[own]:.4f} with the {own} solution < {level}")
    return v


def batch_schemes(per_sample: list[History], by_b: Mapping[int, History], dirs: Directions, cos_min: float,
                  b_tol: float,
                  agree: float = 0.01, drop: float = 0.03) -> Verdict:
    """The per-sample runs (``per_sample``: one sample per step, in different orders) each
    end with cosine ``≥ cos_min`` with the fixed point, within ``agree`` of each other; along
    the batch sizes of ``by_b`` (batch size → history, ascending, the last the full batch)
    the cosine with the ℓ∞ solution rises at every step, the cosine with the fixed point
    never rises by ``b_tol`` or more, and it falls by more than ``drop`` from the smallest
    batch to the full one (measured: 0.066 at the chapter's smoke size, 0.124 at the book
    size; Signum in Adam's place: 0.002)."""
    v = Verdict("the per-sample schemes agree; a larger batch moves the limit from the fixed point to ℓ∞")
    fixed = [cosines(h, dirs)[FIXED] for h in per_sample]
    v.note("per-sample cos with the fixed point: " + ", ".join(f"{h.run.label} {c:.4f}"
                                                               for h, c in zip(per_sample, fixed))
           + f" (need ≥ {cos_min}, within {agree} of each other)")
    v.require(min(fixed) >= cos_min, f"a per-sample run ends at cosine {min(fixed):.4f} < {cos_min} with the "
                                     "fixed point")
    spread = max(fixed) - min(fixed)
    v.require(spread < agree, f"the per-sample schemes differ by {spread:.4f} ≥ {agree} in cosine with the "
                              "fixed point")
    sizes = sorted(by_b)
    curve = {k: np.array([cosines(by_b[b], dirs)[k] for b in sizes]) for k in (FIXED, LINF)}
    v.note("b: " + ", ".join(f"{b} (cos fixed point {f:.4f}, cos ℓ∞ {i:.4f})"
                             for b, f, i in zip(sizes, curve[FIXED], curve[LINF]))
           + f" (need: cos ℓ∞ rising; cos fixed point never rising by ≥ {b_tol}, "
             f"falling by > {drop} overall)")
    v.require((np.diff(curve[LINF]) > 0).all(), "the cosine with the ℓ∞ solution does not rise with every "
                                                "larger batch")
    v.require((np.diff(curve[FIXED]) < b_tol).all(), f"the cosine with the fixed point rises by ≥ {b_tol} "
                                                     "between batch sizes")
    fall = curve[FIXED][0] - curve[FIXED][-1]
    v.require(fall > drop, f"the cosine with the fixed point falls by only {fall:.4f} ≤ {drop} from the "
                           "smallest batch to the full one")
    return v


def signum(long: list[History], short: list[History], dirs: Directions, cos_min: float,
           gap: float = 0.03) -> Verdict:
    """Every run in ``long`` (Signum with a long momentum, at several batch sizes) ends nearer
    the ℓ∞ solution than the ℓ2 and fixed-point ones, with cosine ``≥ cos_min``; every run
    in ``short`` (a short momentum, one sample per step) ends with a cosine with ℓ∞ at least
    ``gap`` below that of ``long[0]`` (the long momentum at one sample per step)."""
    v = Verdict("Signum with a long momentum → ℓ∞ at every batch size; a short momentum does not get there")
    for h in long:
        cos = cosines(h, dirs)
        near = _nearest(cos)
        v.note(f"{h.run.label}: cos with the ℓ∞ solution {cos[LINF]:.4f} (need ≥ {cos_min}); nearest {near}")
        v.require(cos[LINF] >= cos_min,
                  f"{h.run.label}: cosine {cos[LINF]:.4f} with the ℓ∞ solution < {cos_min}")
        v.require(near == LINF, f"{h.run.label}: nearer the {near} solution than the ℓ∞ one")
    base = cosines(long[0], dirs)[LINF]
    for h in short:
        c = cosines(h, dirs)[LINF]
        v.note(f"{h.run.label}: cos with the ℓ∞ solution {c:.4f} (need < {base - gap:.4f})")
        v.require(c < base - gap,
                  f"{h.run.label}: cosine {c:.4f} with ℓ∞ is not {gap} below {long[0].run.label}'s")
    return v


def first_reach(h: History, direction: npt.ArrayLike, level: float) -> int | None:
    """The first step with a logged direction whose cosine with ``direction`` is ``≥ level``,
    or None."""
    hit = np.flatnonzero(np.asarray(h.directions) @ np.asarray(direction) >= level)
    return int(h.direction_grid[hit[0]]) if len(hit) else None


def beta2_cost(histories: Sequence[History], beta2s: Sequence[float], fixed_direction: np.ndarray,
               level: float, final_gap: float = 0.005) -> Verdict:
    """Runs of per-sample Adam that differ only in β2 (``beta2s``, ascending, one per
    history): the shortest memory reaches cosine ``level`` with the fixed point within the
    run; the first step at which each run reaches it does not decrease as β2 grows (a run
    that never reaches it counts as ∞); and the longest memory ends at least ``final_gap``
    lower in cosine than the shortest."""
    v = Verdict("a longer second-moment memory reaches the fixed point later")
    if not v.require(list(beta2s) == sorted(beta2s) and len(set(beta2s)) == len(beta2s) >= 2,
                     f"β2 values must be distinct and ascending, got {list(beta2s)}"):
        return v
    reached = [first_reach(h, fixed_direction, level) for h in histories]
    final = [float(h.directions[-1] @ fixed_direction) for h in histories]
    for b2, r, f in zip(beta2s, reached, final):
        v.note(f"β2 = {b2}: first step with cos ≥ {level}: {r if r is not None else 'not reached'}; "
               f"final cos {f:.4f}")
    v.note(f"need: the first reached by β2 = {beta2s[0]}, no sooner with a larger β2, and the last ending "
           f"≥ {final_gap} lower")
    v.require(reached[0] is not None, f"β2 = {beta2s[0]} never reaches cosine {level} with the fixed point")
    steps = [r if r is not None else math.inf for r in reached]
    v.require(all(a <= b for a, b in zip(steps, steps[1:])),
              f"a larger β2 reaches cosine {level} sooner: {reached}")
    v.require(final[-1] <= final[0] - final_gap, f"β2 = {beta2s[-1]} ends at cosine {final[-1]:.4f}, not "
                                                 f"{final_gap} below β2 = {beta2s[0]} ({final[0]:.4f})")
    return v


def ratio_floor(h: History, n: int, floor: float = 0.1) -> float:
    """The step ratio below which a run counts as collapsed: ``floor·√(b/n)`` for batches of
    ``b`` out of ``n`` samples (``floor`` for the full batch). With one sample per step m̂
    averages the gradients of different samples, whose signs disagree, and √v̂ their root
    mean square: |m̂|/√v̂ is then of order ``√(b/n)`` even while Adam moves normally."""
    b = n if h.run.batch == "full" else cast(int, h.run.batch_size)  # Run sets it for every batch scheme
    return floor * math.sqrt(b / n)


def regime(histories: Iterable[History], n: int, floor: float = 0.1) -> Verdict:
    """Every history (an Adam run with the :func:`implicit_bias.regime.step_ratio` observer)
    stays in Adam's regime: :func:`implicit_bias.regime.check` finds no collapse predicted
    from its loss (``log L`` never fell faster than ``½ log(1/β2)`` per step for long enough
    to shrink the step ratio below 0.1), and the measured median step ratio over the second
    half of the run stays above :func:`ratio_floor`."""
    v = Verdict("every Adam run stays in Adam's regime (its step ratio |m̂|/√v̂ stays alive)")
    for h in histories:
        label = h.run.label
        beta2 = regimes.adam_beta2(h.run)
        key = "step ratio median" if "step ratio median" in h.observed else None
        if not v.require(beta2 is not None and key is not None,
                         f"{label}: not an Adam run, or trained without the step-ratio observer"):
            continue
        assert beta2 is not None  # required above
        ratio = np.asarray(h.observed[key], dtype=float)
        late = ratio[np.asarray(h.steps) >= h.steps[-1] / 2]
        low = float(np.nanmin(late)) if np.isfinite(late).any() else math.nan
        _, deficit = regimes.ratio_deficit(h, beta2)
        lowest = ratio_floor(h, n, floor)
        v.note(f"{label}: ½ log(1/β2) = {regimes.forget_rate(beta2):.3g}; predicted ratio deficit at the "
               f"end e^-{deficit[-1]:.2f}; measured step ratio ≥ {low:.3g} over the second half "
               f"(need ≥ {lowest:.3g})")
        message = regimes.check(h)
        v.require(message is None, f"{label}: {message}")
        v.require(low >= lowest, f"{label}: step ratio fell to {low:.3g} < {lowest:.3g} in the second half")
    return v


__all__ = ["cosines", "generalized_rademacher", "gaussian", "batch_schemes", "signum", "first_reach",
           "beta2_cost", "ratio_floor", "regime"]
