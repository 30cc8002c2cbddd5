"""Verdicts of the chapter on hybrid optimizers and the main table (Gronich & Vardi 2026,
Cor 3.4, 3.5, Thm 3.7): the exact test on a convex block model, certificates in the hybrid
norm on a network, who wins each norm's column at the function level, whether Adam blocks
stay in their regime, and whether the Muon-Adam rate ratio sets the norm of the limit."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..stats import by_label
from . import Row, Verdict

if TYPE_CHECKING:
    from ..history import History


def exact_solutions(rows: Sequence[Row], own: Mapping[str, str], cos_min: float = 0.99,
                    margin_min: float = 0.99, min_draws: int = 3) -> Verdict:
    """The hybrid theorem tested exactly, on a model whose margin problem is convex (the block
    linear model ``⟨W, X_W⟩ + ⟨u, x_u⟩``), so that its KKT point *is* the exact max-margin
    solution of each geometry. ``rows``: one per run and data draw with ``label``, ``draw``,
    ``cos`` (``{geometry: cosine of the final θ with that geometry's exact solution}``) and
    ``margin`` (``{geometry: normalized margin in that geometry ÷ its maximum}``); ``own``:
    ``{label: geometry}``. On each of ≥ ``min_draws`` draws, every labelled run ends nearest
    its own geometry's solution (largest cosine among all the solutions compared), with
    cosine ≥ ``cos_min`` and margin ≥ ``margin_min`` of the maximum."""
    v = Verdict(f"on every data draw each run ends nearest the exact max-margin solution of its own norm "
                f"(cos ≥ {cos_min}, margin ≥ {margin_min} of the maximum)")
    draws = sorted({r["draw"] for r in rows})
    v.require(len(draws) >= min_draws, f"{len(draws)} data draws, fewer than {min_draws}")
    for label, geometry in own.items():
        found = [r for r in rows if r["label"] == label]
        if not v.require({r["draw"] for r in found} == set(draws), f"{label}: not run on every draw"):
            continue
        cos, margin = (np.array([r[key][geometry] for r in found]) for key in ("cos", "margin"))
        nearest = [max(r["cos"], key=r["cos"].get) for r in found]
        v.note(f"{label} → {geometry}: cos {cos.min():.4f}–{cos.max():.4f} (≥ {cos_min}), margin "
               f"{margin.min():.4f}–{margin.max():.4f} of the maximum (≥ {margin_min})")
        for r, near in zip(found, nearest):
            v.require(near == geometry, f"{label}, draw {r['draw']}: nearest the {near} solution (cos "
                                        f"{r['cos'][near]:.4f}), not {geometry} ({r['cos'][geometry]:.4f})")
        v.require(cos.min() >= cos_min,
                  f"{label}: cos with the {geometry} solution {cos.min():.4f} < {cos_min}")
        v.require(margin.min() >= margin_min,
                  f"{label}: {geometry} margin {margin.min():.4f} of the maximum < {margin_min}")
    return v


def slope(steps: npt.ArrayLike, eps: npt.ArrayLike) -> float:
    """The fitted slope of log ε against log step (negative: the certificate falls)."""
    return float(np.polyfit(np.log(steps), np.log(np.maximum(eps, 1e-12)), 1)[0])


def certified_in_norm(rows: Sequence[Row], norm: str, named: Collection[str], factor: float = 2.0,
                      min_seeds: int = 3) -> Verdict:
    """KKT certificates on a network, in one norm: the runs whose theorem names ``norm`` are
    the ones heading for its KKT points. ``rows``: one per run, seed and checkpoint with
    ``label``, ``seed``, ``checkpoint`` (its index: the same index at every seed), ``step``
    and ``norm`` (the certificate ε in that norm). Over ≥
    ``min_seeds`` seeds, on the median over seeds at each checkpoint: every ``named`` run's ε
    falls (negative fitted slope of log ε against log step, and lower at the end than at the
    first checkpoint), and at the end every other run's is more than ``factor`` times it."""
    below = "below" if factor == 1 else f"at least {factor:g}× below"
    v = Verdict(f"in the {norm} norm, the certificates of {', '.join(named)} fall and end {below} every "
                "other optimizer's (median over seeds)")
    seeds = {r["seed"] for r in rows}
    v.require(len(seeds) >= min_seeds, f"{len(seeds)} seeds, fewer than {min_seeds}")
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # label: (median step, median ε) at each checkpoint
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        points = [[r for r in mine if r["checkpoint"] == k] for k in sorted({r["checkpoint"] for r in mine})]
        curves[label] = (np.array([np.median([r["step"] for r in at]) for at in points]),
                         np.array([np.median([r[norm] for r in at]) for at in points]))
    for label in named:
        if not v.require(label in curves, f"{label}: no certificates"):
            continue
        steps, eps = curves[label]
        fit = slope(steps, eps)
        v.note(f"{label}: ε {eps[0]:.3f} → {eps[-1]:.3f} over steps {steps[0]:.0f}–{steps[-1]:.0f}, "
               f"slope {fit:.2f} (< 0)")
        v.require(fit < 0 and eps[-1] < eps[0], f"{label}: ε does not fall ({eps[0]:.3f} → {eps[-1]:.3f}, "
                                                f"slope {fit:.2f})")
    others = {k: c[1][-1] for k, c in curves.items() if k not in named}
    if named and others and all(k in curves for k in named):
        worst = max(named, key=lambda k: curves[k][1][-1])
        best = min(others, key=lambda k: others[k])
        ratio = others[best] / curves[worst][1][-1]
        v.note(f"at the end: largest of them {worst} {curves[worst][1][-1]:.3f}; smallest of the others "
               f"{best} {others[best]:.3f} (ratio {ratio:.2f}, required > {factor:g})")
        v.require(ratio > factor, f"{best} ends at ε {others[best]:.3f}, not above {factor:g}× "
                                   f"{worst}'s {curves[worst][1][-1]:.3f}")
    return v


def column_winners(rows: Sequence[Row], named: Mapping[str, Collection[str]],
                   columns: Iterable[str]) -> Verdict:
    """In every column, the optimizer with the largest mean (over seeds) is one that
    ``named[column]`` names, or ties the best named one within the 95% intervals (the two
    intervals overlap). ``rows``: one per run with ``label``, ``seed`` and one value per
    column (function-level margins from :func:`implicit_bias.symmetry.summary`)."""
    v = Verdict("each norm's column is won by an optimizer whose theorem names that norm")
    for col in columns:
        stats = by_label(rows, col)
        winner = max(stats, key=lambda k: stats[k][0])
        best_named = max((k for k in stats if k in named[col]), key=lambda k: stats[k][0], default=None)
        if not v.require(best_named is not None, f"{col}: no run of {sorted(named[col])}"):
            continue
        (m, h), (m2, h2) = stats[winner], stats[best_named]
        v.note(f"{col}: winner {winner} {m:.4g} ± {h:.2g}; best named {best_named} {m2:.4g} ± {h2:.2g}")
        tie = math.isfinite(h) and math.isfinite(h2) and m - h <= m2 + h2
        v.require(winner in named[col] or tie,
                  f"{col}: {winner} ({m:.4g} ± {h:.2g}) beats every named optimizer "
                  f"(best {best_named} {m2:.4g} ± {h2:.2g}) beyond the intervals")
    return v


def ratio_certified(rows: Sequence[Row], ratios: Iterable[float], min_seeds: int = 5) -> Verdict:
    """The Muon-Adam ratio, on its KKT side (Thm 3.7): among runs at the rate ratios ``ratios``
    (labelled ``'r=<r>'``), the run with ratio r has the smallest certificate ε in the
    r-weighted hybrid norm ``max{r‖W‖_msp, ‖u‖_∞}``, on the median over ≥ ``min_seeds`` seeds.
    ``rows``: one per run and seed with ``run``, ``seed`` and ``'ε in r=<r>'`` for every r."""
    v = Verdict("the run with ratio r has the smallest KKT certificate in the r-weighted hybrid norm "
                "(median over seeds)")
    seeds = {row["seed"] for row in rows}
    v.require(len(seeds) >= min_seeds, f"{len(seeds)} seeds, fewer than {min_seeds}")
    for r in ratios:
        col, own = f"ε in r={r:g}", f"r={r:g}"
        medians = {run: float(np.median([row[col] for row in rows if row["run"] == run]))
                   for run in dict.fromkeys(row["run"] for row in rows)}
        best = min(medians, key=lambda k: medians[k])
        wins = sum(min((row for row in rows if row["seed"] == s), key=lambda row: row[col])["run"] == own
                   for s in seeds)
        v.note(f"{col}: " + ", ".join(f"{k} {m:.3f}" for k, m in medians.items())
               + f"; {own} smallest on {wins} of {len(seeds)} seeds")
        v.require(best == own, f"{col}: smallest for {best} ({medians[best]:.3f}), not {own} "
                               f"({medians.get(own, float('nan')):.3f})")
    return v


__all__ = ["exact_solutions", "certified_in_norm", "slope", "column_winners", "ratio_certified",
           "adam_in_regime"]


def adam_in_regime(histories: Iterable[History], q90_floor: float = 0.1) -> Verdict:
    """Every Adam-family run stayed inside the ε = 0 theorem's regime: the loss never fell
    faster than √v̂ forgets (:func:`implicit_bias.regime.check`), and at the end the 90th
    percentile of the measured step ratio ``|m̂|/√v̂`` of every Adam block is at least
    ``q90_floor`` (observer :func:`implicit_bias.regime.step_ratio`)."""
    from .. import regime

    v = Verdict("every Adam block steps like sign descent to the end (its step ratio stayed alive)")
    for h in histories:
        if regime.adam_beta2(h.run) is None:
            continue
        label = f"{h.run.label} (seed {h.run.seed})"
        message = regime.check(h)
        v.require(message is None, f"{label}: {message}")
        q90 = {k: float(vals[-1]) for k, vals in h.observed.items() if k.endswith("q90")}
        v.require(q90, f"{label}: no step ratio observed (train with observe=regime.step_ratio)")
        for k, value in q90.items():
            v.note(f"{label}: {k} at the end {value:.3g}")
            v.require(value >= q90_floor, f"{label}: {k} = {value:.3g} < {q90_floor:g} (the block froze)")
    return v
