"""Chapter 5's verdicts: Adam's geometry is decided by ε (and by staying in its regime).

* :func:`regime` — a run is where the ε = 0 theorem (Gronich & Vardi 2026, Thm 3.6)
  describes it: ``log L`` falls per step slower than ``√v̂`` can forget
  (``½ log(1/β2)``, :func:`implicit_bias.regime.forget_rate`), and the step ratio
  ``|m̂|/√v̂`` on the coordinates that still get a gradient is of order one at the end.
  Every ε = 0 verdict below includes it.
* :func:`linear` — ε = 0 Adam ends at the exact ℓ∞ max-margin direction, normalized GD at
  the ℓ2 one.
* :func:`network` — on the digits network Adam ranks with Signum on the ℓ∞ margin and
  below normalized GD on ℓ2.
* :func:`eps_sweep_linear`, :func:`eps_sweep_network` — a larger ε hands over from sign
  descent to gradient descent, where the largest gradient entry meets ε.
* :func:`preconditioned` — RMSProp with ε goes to ℓ2, AdaGrad to the max-margin direction of
  its own accumulated conditioner (Wang et al. 2021).
* :func:`beta_cases` — β1² > β2 makes Adam's steps unbounded; β1 ≤ β2 keeps them bounded.
* :func:`dead_coordinates` — with ε = 0 a coordinate that never gets a gradient takes the
  step 0 (the ε → 0 limit), with one warning, never a NaN.

The observers :func:`implicit_bias.regime.step_ratio` (Adam's step ratio, per parameter
and pooled) and :func:`scales` (it and :func:`implicit_bias.train.adaptive_scales`) go to
``train(observe=...)``. The step ratio leaves out the coordinates whose gradient is zero at
the logged step: on the digits network half the hidden units die during training, and their
ratios (which decay like ``(β1/√β2)^t`` in any
regime) would drag the median to 1e-18 in a run whose live coordinates step at ratio 0.95.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt
import torch

from .. import regime as _regime
from ..maxmargin import max_margin
from ..train import adaptive_scales
from . import Row, Verdict

if TYPE_CHECKING:
    from ..history import History
    from ..maxmargin import MaxMarginSolution

#: The step ratio that counts as "of order one": a median over the live coordinates, then
#: over the logged steps of the run's second half (:func:`regime`). Measured on chapter 5's
#: runs: 0.22–0.28 on the linear data, 0.88–0.95 on the network; the out-of-regime mutants
#: of its test (β2 = 0.999, ten times the rate): 0.019 and 0.052.
RATIO_MIN = 0.1


# --- observers -------------------------------------------------------------------


def scales(model: torch.nn.Module, optimizer: torch.optim.Optimizer, frame: float) -> dict[str, float]:
    """:func:`implicit_bias.train.adaptive_scales` and :func:`implicit_bias.regime.step_ratio`
    in one observer."""
    return {**adaptive_scales(model, optimizer, frame), **_regime.step_ratio(model, optimizer, frame)}


def conditioner(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                frame: float) -> dict[str, float | np.ndarray]:
    """:func:`scales` and ``√G`` (AdaGrad), ``√v`` (RMSProp) or ``√v̂`` (Adam) of every
    coordinate in the plain loss's units, under ``'root'``."""
    # an adaptive optim.RuleOptimizer's method (the optimizers this observer is for)
    root = torch.cat([r.reshape(-1) for r in optimizer.root_second_moments()])  # type: ignore[attr-defined]
    return {"root": (root.log() - frame).exp().cpu().numpy(), **scales(model, optimizer, frame)}


# --- helpers ---------------------------------------------------------------------


def _merge(v: Verdict, other: Verdict) -> Verdict:
    v.lines += other.lines
    v.failures += other.failures
    return v


def _betas(h: History) -> tuple[float, float]:
    opts = h.run.options
    return tuple(opts.get("betas", (opts.get("momentum", 0.9), opts.get("beta2", 0.99))))


def handover(h: History, eps: float) -> int | None:
    """Index of the first logged step with ``max √v̂ < ε`` (None if it never happens)."""
    below = np.flatnonzero(h.observed["log10_root_v_max"] < np.log10(eps)) if eps > 0 else np.array([], int)
    return int(below[0]) if len(below) else None


def _cosines_where_both_kept(h: History, ref: History, steps: np.ndarray) -> np.ndarray:
    """``cos(θ_t of h, θ_t of ref)`` at those of ``steps`` where both kept a direction."""
    shared = np.intersect1d(steps, np.intersect1d(h.direction_grid, ref.direction_grid))
    return np.array([h.directions[h.direction_row(s)] @ ref.directions[ref.direction_row(s)]
                     for s in shared])


def _unit(w: npt.ArrayLike) -> np.ndarray:
    w = np.asarray(w, dtype=float).reshape(-1)
    unit: np.ndarray = w / np.linalg.norm(w)  # numpy's arithmetic is Any to mypy
    return unit


# --- verdicts --------------------------------------------------------------------


def regime(h: History, tail: float = 0.1, ratio_min: float = RATIO_MIN, window: float = 0.5) -> Verdict:
    """The run stays in the regime the ε = 0 theorem describes.

    Three checks. Over the last ``1 − tail`` of the run (intervals starting at step
    ≥ ``tail·T``; the first steps are a transient that the bias correction absorbs),
    ``log L`` falls per step slower than ``½ log(1/β2)``, the rate at which ``√v̂`` forgets.
    The step ratio predicted from the loss alone (:func:`implicit_bias.regime.ratio_deficit`,
    the criterion behind ``train``'s warning) ends above 0.1. And the measured median step
    ratio ``|m̂|/√v̂`` over the live coordinates (:func:`implicit_bias.regime.step_ratio`), itself taken as a
    median over the logged steps of the last ``window`` of the run, is at least
    ``ratio_min``: one logged point of a chaotic network run can sit anywhere between 0.1
    and 1. When the loss falls faster than ``√v̂`` forgets, ``√v̂`` remembers larger
    gradients than ``m̂`` does, the ratio collapses and Adam stops being sign-like; the drop
    then settles at the forget rate while the ratio stays far below one, which only the
    measured ratio sees."""
    label = h.run.label
    v = Verdict(f"{label} stays in Adam's regime (loss drop per step < ½ log(1/β2), step ratio of order one)")
    ratio = h.observed.get("step ratio median")
    if not v.require(ratio is not None and np.isfinite(ratio[-1]),
                     f"{label}: no Adam step ratio observed (not an Adam run, or no step_ratio observer)"):
        return v
    beta2 = _betas(h)[1]
    rate = _regime.forget_rate(beta2)
    _, drops = _regime.loss_drop_per_step(h)
    late = h.steps[:-1] >= tail * h.steps[-1]
    drop = float(drops[late].max())
    deficit = float(_regime.ratio_deficit(h, beta2)[1][-1])
    last = np.asarray(ratio)[h.steps >= (1 - window) * h.steps[-1]]
    median = float(np.nanmedian(last))
    v.note(f"{label}: max loss drop per step {drop:.4f} (steps ≥ {tail * h.steps[-1]:.0f}; need < "
           f"½ log(1/β2) = {rate:.4f}); predicted step ratio e^-{deficit:.2f} "
           f"(need ≥ e^-{_regime.DEFICIT_LIMIT:.2f}); "
           f"median step ratio over the {len(last)} logged steps ≥ {(1 - window) * h.steps[-1]:.0f}: "
           f"{median:.3g} (need ≥ {ratio_min})")
    v.require(drop < rate, f"{label}: log L falls {drop:.4f} per step, faster than √v̂ forgets ({rate:.4f})")
    v.require(deficit <= _regime.DEFICIT_LIMIT,
              f"{label}: the loss predicts a step ratio e^-{deficit:.1f} < 0.1 (regime.ratio_deficit)")
    v.require(median >= ratio_min, f"{label}: median step ratio {median:.3g} < {ratio_min} over the last "
                                   f"{window:g} of the run")
    return v


def linear(adam: History | list[History] | tuple[History, ...],
           ngd: History | list[History] | tuple[History, ...], unit: dict[str, np.ndarray], spread: float,
           cos_min: float = 0.98) -> Verdict:
    """Adam (ε = 0) ends with cosine ≥ ``cos_min`` with the ℓ∞ max-margin direction and
    closer to it than to the ℓ2 one; normalized GD the other way round; the ℓ∞ solution is
    unique (``spread < 1e-2``), so a cosine is a fair test; and Adam's run is in its
    :func:`regime`. ``unit`` holds the unit ℓ2 and ℓ∞ solutions (``'l2'``, ``'linf'``).
    (Measured at the chapter's smoke size: Adam 0.9944, normalized GD 0.9991; the ℓ2
    mutants, normalized GD and Adam with ε = 1e-2, reach 0.927 and 0.954 with ℓ∞.)

    ``adam`` and ``ngd`` may also be lists of histories, one per training seed: every check
    must then hold on every seed (the failures are the union, each naming its seed)."""
    adams = list(adam) if isinstance(adam, (list, tuple)) else [adam]
    ngds = list(ngd) if isinstance(ngd, (list, tuple)) else [ngd]
    many = len(adams) > 1 or len(ngds) > 1
    v = Verdict("Adam with ε = 0 converges to the ℓ∞ max-margin direction, normalized GD to the ℓ2 one"
                + (f" (on every seed: {len(adams)} of Adam, {len(ngds)} of normalized GD)" if many else ""))
    v.require(spread < 1e-2, f"the ℓ∞ solution is not unique (spread {spread:.2g}): a cosine tests nothing")
    for h, own, other in [*((h, "linf", "l2") for h in adams), *((h, "l2", "linf") for h in ngds)]:
        name = f"{h.run.label} seed {h.run.seed}" if many else h.run.label
        w = _unit(h.directions[-1])
        c_own, c_other = float(w @ unit[own]), float(w @ unit[other])
        v.note(f"{name}: cos with the {own} solution {c_own:.4f} (need ≥ {cos_min}), with the "
               f"{other} one {c_other:.4f}")
        v.require(c_own >= cos_min, f"{name}: cosine {c_own:.4f} with the {own} solution < {cos_min}")
        v.require(c_own > c_other, f"{name}: closer to the {other} solution than to the {own} one")
    for h in adams:
        r = regime(h)
        if many:  # name the seed on the regime's lines too
            r.lines = [f"seed {h.run.seed}: {line}" for line in r.lines]
            r.failures = [f"seed {h.run.seed}: {f}" for f in r.failures]
        _merge(v, r)
    return v


def network(rows: Sequence[Row], adam_runs: Iterable[History] = (), key: Callable[[str], str] | None = None,
            ratio_range: tuple[float, float] = (0.25, 4.0)) -> Verdict:
    """On every seed: every run separated the data; Adam's ℓ∞ margin is within
    ``ratio_range`` of Signum's and above NormalizedGD's and Muon's; Adam's ℓ2 margin is
    below NormalizedGD's; and every Adam run in ``adam_runs`` is in its :func:`regime`.
    (Adam/Signum measured: 0.80–1.31 at the book size, 1.30 and 1.51 at the smoke size; the
    range leaves a factor of two on either side, and the rankings carry the contrast.)

    ``rows`` are :func:`implicit_bias.train.summary` rows (or
    :func:`implicit_bias.symmetry.summary` rows; ``key(norm)`` names the column, default the
    norm itself) with labels ``Adam``, ``Signum``, ``NormalizedGD`` and ``Muon``."""
    key = key or (lambda n: n)
    linf, l2 = key("linf"), key("l2")
    v = Verdict(f"Adam (ε = 0) ranks with Signum on the ℓ∞ margin ({linf}) "
                f"and below normalized GD on ℓ2 ({l2})")
    lo, hi = ratio_range
    for seed in sorted({r["seed"] for r in rows}):
        r = {row["label"]: row for row in rows if row["seed"] == seed}
        missing = {"Adam", "Signum", "NormalizedGD", "Muon"} - set(r)
        if not v.require(not missing, f"seed {seed}: no run of {sorted(missing)}"):
            continue
        v.require(all(row[l2] > 0 for row in r.values()), f"seed {seed}: a run did not separate the data")
        ratio = r["Adam"][linf] / r["Signum"][linf]
        rival = max(r["NormalizedGD"][linf], r["Muon"][linf])
        v.note(f"seed {seed}: ℓ∞ Adam/Signum = {ratio:.2f} (need {lo}–{hi}), "
               f"Adam/max(NGD, Muon) = {r['Adam'][linf] / rival:.2f} (need > 1), "
               f"ℓ2 Adam/NGD = {r['Adam'][l2] / r['NormalizedGD'][l2]:.2f} (need < 1)")
        v.require(lo <= ratio <= hi,
                  f"seed {seed}: Adam's ℓ∞ margin is {ratio:.2f}× Signum's, not within {lo}–{hi}")
        v.require(r["Adam"][linf] > rival, f"seed {seed}: Adam's ℓ∞ margin is below NormalizedGD's or Muon's")
        v.require(r["Adam"][l2] < r["NormalizedGD"][l2],
                  f"seed {seed}: Adam's ℓ2 margin is above NormalizedGD's")
    for h in adam_runs:
        _merge(v, regime(h))
    return v


def linear_sweep_rows(hs: Sequence[History], eps_values: Sequence[float], unit: dict[str, np.ndarray],
                      solutions: dict[str, MaxMarginSolution]) -> list[dict[str, object]]:
    """The ε sweep on linear data, one row per run: hand-over step, cosines with the ℓ∞ and
    ℓ2 solutions (peak, at the hand-over, at the end), margins and the final gradient."""
    rows: list[dict[str, object]] = []
    for h, eps in zip(hs, eps_values):
        k = handover(h, eps)
        c_inf, c_2 = h.directions @ unit["linf"], h.directions @ unit["l2"]
        rows.append({"ε": eps, "hand-over step": h.steps[k] if k is not None else "—",
                     "cos ℓ∞ peak": c_inf.max(), "cos ℓ∞ end": c_inf[-1],
                     "cos ℓ2 at hand-over": c_2[h.direction_row(h.steps[k])] if k is not None else np.nan,
                     "cos ℓ2 end": c_2[-1],
                     "ℓ∞ margin/max end": h.final("linf") / solutions["linf"].margin,
                     "ℓ2 margin/max end": h.final("l2") / solutions["l2"].margin,
                     "log10 max|g| end": h.observed["log10_grad_max"][-1],
                     "log10 loss end": h.log_loss[-1] / np.log(10)})
    return rows


def eps_sweep_linear(hs: Sequence[History], eps_values: Sequence[float], unit: dict[str, np.ndarray],
                     track: float = 0.999, slack: float = 0.002,
                     late: int = 4) -> Verdict:
    """Chapter 5's four checks on the linear ε sweep (the histories need the :func:`scales`
    observer; ``eps_values[i]`` is the ε of ``hs[i]``, and one of them is 0):

    1. tracking: wherever ``√v̂ ≥ 100 ε`` in every coordinate, the run's direction has cosine
       ``≥ track`` with the ε = 0 run's;
    2. hand-over: after ``max √v̂ < ε`` the largest gradient entry stays within
       ``[ε·10⁻³, ε·10^0.5]``, and a run that handed over before the last ``late`` log
       points ends with a gradient more than ten times the ε = 0 run's;
    3. drift: such a run's cosine with the ℓ2 solution rises after the hand-over and its
       cosine with the ℓ∞ solution ends below its peak;
    4. ordering: at the end the ℓ∞ cosine falls and the ℓ2 cosine rises with ε (within
       ``slack``); at least two runs hand over; and the ε = 0 run is in its :func:`regime`."""
    v = Verdict("Adam is sign-like (ℓ∞) until its gradients reach ε, then GD-like, drifting toward ℓ2")
    if not v.require(0.0 in list(eps_values), "the sweep has no ε = 0 run"):
        return v
    ref = hs[list(eps_values).index(0.0)]
    g_ref = ref.observed["log10_grad_max"][-1]
    handed = 0
    for h, eps in zip(hs, eps_values):
        if eps == 0:
            continue
        k = handover(h, eps)
        g = h.observed["log10_grad_max"]
        early = h.observed["log10_root_v_min"] >= np.log10(100 * eps)
        agree = _cosines_where_both_kept(h, ref, h.steps[early])
        v.note(f"ε={eps:g}: {len(agree)} logged directions with √v̂ ≥ 100ε, min cosine with ε = 0 "
               f"{agree.min() if len(agree) else np.nan:.5f} (need ≥ {track}); hand-over at "
               f"{h.steps[k] if k is not None else '—'}")
        v.require((agree >= track).all(), f"ε={eps:g}: leaves the ε = 0 direction while √v̂ ≥ 100ε "
                                          f"(cosine {agree.min() if len(agree) else np.nan:.5f})")
        if k is None:
            continue
        handed += 1
        lo, hi = np.log10(eps) - 3, np.log10(eps) + 0.5
        v.require(((g[k:] >= lo) & (g[k:] <= hi)).all(),
                  f"ε={eps:g}: after the hand-over max|g| leaves [ε·1e-3, ε·10^0.5] "
                  f"(log10 range {g[k:].min():.2f}..{g[k:].max():.2f})")
        if k <= len(h.steps) - late:
            c_inf, c_2 = h.directions @ unit["linf"], h.directions @ unit["l2"]
            at_handover = h.direction_row(h.steps[k])
            v.require(g[-1] > g_ref + 1, f"ε={eps:g}: final gradient not ten times the ε = 0 run's")
            if v.require(at_handover < len(c_2) - 1, f"ε={eps:g}: no direction kept between the "
                                                      "hand-over and the end (thinned history)"):
                v.require(c_2[-1] > c_2[at_handover],
                          f"ε={eps:g}: the ℓ2 cosine does not rise after the hand-over")
            v.require(c_inf[-1] < c_inf.max(), f"ε={eps:g}: the ℓ∞ cosine ends at its peak")
    v.note(f"{handed} of {len(hs) - 1} runs with ε > 0 handed over (need ≥ 2; after it max|g| within "
           f"[ε·1e-3, ε·10^0.5], and for an early one a final gradient ≥ 10× the ε = 0 run's)")
    v.require(handed >= 2, f"only {handed} run(s) handed over: the sweep must contain hand-overs")
    order = np.argsort(eps_values, kind="stable")
    ends_inf = [float(hs[i].directions[-1] @ unit["linf"]) for i in order]
    ends_2 = [float(hs[i].directions[-1] @ unit["l2"]) for i in order]
    v.note("cos ℓ∞ end by ε: " + ", ".join(f"{c:.4f}" for c in ends_inf) + f" (need falling, to {slack})")
    v.note("cos ℓ2 end by ε: " + ", ".join(f"{c:.4f}" for c in ends_2) + f" (need rising, to {slack})")
    v.require(all(b <= a + slack for a, b in zip(ends_inf, ends_inf[1:])),
              "the final ℓ∞ cosine does not fall with ε")
    v.require(all(b >= a - slack for a, b in zip(ends_2, ends_2[1:])),
              "the final ℓ2 cosine does not rise with ε")
    return _merge(v, regime(ref))


#: Relative difference below which two runs' final margins count as equal. Adam on a network
#: amplifies any perturbation: at the smoke size the ε = 1e-8 run (ε/√v̂ < 1e-6 at every step)
#: ends 2e-5 away from the ε = 0 run, on either side depending on the engine's summation order.
TIE = 1e-3


def eps_sweep_network(hs: Sequence[History], eps_values: Sequence[float], late: int = 4) -> Verdict:
    """On the network: every run separated the data; the final ℓ∞ margin falls and the ℓ2
    margin rises strictly with ε; a run that handed over before the last ``late`` log
    points ends with its ℓ∞ margin below its own peak; the ε = 0 run is in its
    :func:`regime`. Histories need margins in ``l2`` and ``linf`` and the :func:`scales`
    observer."""
    v = Verdict("on the network, a larger ε trades ℓ∞ margin for ℓ2 margin")
    v.note(f"need: ℓ∞ end falling and ℓ2 end rising with ε (neighbours may tie to {TIE:g} relative, the ends "
           f"may not)")
    if not v.require(0.0 in list(eps_values), "the sweep has no ε = 0 run"):
        return v
    order = np.argsort(eps_values, kind="stable")
    for i in order:
        h, eps = hs[i], eps_values[i]
        k = handover(h, eps)
        v.note(f"ε={eps:g}: ℓ∞ end {h.final('linf'):.4g} (peak {h.margins['linf'].max():.4g}), "
               f"ℓ2 end {h.final('l2'):.4g}, hand-over at {h.steps[k] if k is not None else '—'}")
        v.require(h.final("l2") > 0, f"ε={eps:g}: did not separate the data")
        if k is not None and k <= len(h.steps) - late:
            v.require(h.final("linf") < h.margins["linf"].max(),
                      f"ε={eps:g}: handed over, ℓ∞ margin still at its peak")
    ends_inf = [hs[i].final("linf") for i in order]
    ends_2 = [hs[i].final("l2") for i in order]
    # An ε far below √v̂ for the whole run (1e-8 at the smaller sizes) is ε = 0 up to the run's
    # amplified rounding: such neighbours may tie to TIE; anything larger in the wrong direction fails.
    falls = all(b < a * (1 + TIE) for a, b in zip(ends_inf, ends_inf[1:]))
    rises = all(b > a * (1 - TIE) for a, b in zip(ends_2, ends_2[1:]))
    v.require(falls and ends_inf[-1] < ends_inf[0] * (1 - TIE), "the final ℓ∞ margin does not fall with ε")
    v.require(rises and ends_2[-1] > ends_2[0] * (1 + TIE), "the final ℓ2 margin does not rise with ε")
    return _merge(v, regime(hs[list(eps_values).index(0.0)]))


def conditioner_solution(h: History, X: torch.Tensor,
                         y: torch.Tensor) -> tuple[np.ndarray, MaxMarginSolution]:
    """``M = √G_∞ + ε`` from a run's final ``'root'`` observation (:func:`conditioner`) and the
    max-margin solution of the norm ``√(wᵀ M w)``."""
    M = h.observed["root"][-1] + h.run.options.get("eps", 0.0)
    return M, max_margin(X, y, M)


def preconditioned(rms: History, ada: History, X: torch.Tensor, y: torch.Tensor, floor: float,
                   gap_rms: float = 0.01, gap_ada: float = 0.005) -> Verdict:
    """RMSProp (ε > 0) ends closer to the ℓ2 solution than to the ℓ∞ one by ``gap_rms`` in
    cosine, with cosine ≥ ``floor``, and has handed over (``max √v < ε``). AdaGrad ends
    closer to the max-margin solution of its own final conditioner ``M`` than to either the
    ℓ2 or the ℓ∞ solution by ``gap_ada``, with cosine ≥ ``floor``, and its M-norm margin is
    a larger fraction of the M-norm maximum than its ℓ2 margin is of the ℓ2 maximum.
    Both histories need the :func:`conditioner` observer; M comes from ``ada``'s. (Measured at
    the chapter's smoke size: RMSProp leads by 0.026, AdaGrad by 0.014; their mutants, Adam
    with ε = 0 and RMSProp in AdaGrad's place, by −0.078 and 0.0002.)"""
    v = Verdict("RMSProp with ε → ℓ2; AdaGrad → the max-margin direction of its own conditioner")
    sol = {n: max_margin(X, y, n) for n in ("l2", "linf")}
    M, sol["M"] = conditioner_solution(ada, X, y)
    unit = {n: _unit(cast(np.ndarray, s.direction)) for n, s in sol.items()}  # no blocks: one array each
    Z = (y[:, None] * X).numpy()
    cos = {h.run.label: {n: float(_unit(h.directions[-1]) @ u) for n, u in unit.items()} for h in (rms, ada)}
    c_r, c_a = cos[rms.run.label], cos[ada.run.label]
    eps = rms.run.options.get("eps", 0.0)
    root = rms.observed["log10_root_v_max"][-1]
    v.note(f"{rms.run.label}: cos ℓ2 {c_r['l2']:.4f}, cos ℓ∞ {c_r['linf']:.4f} (need ℓ2 ≥ {floor} and ≥ ℓ∞ + "
           f"{gap_rms}); log10 max √v {root:.2f} vs log10 ε {np.log10(eps) if eps > 0 else -np.inf:.2f}")
    v.require(c_r["l2"] >= floor, f"{rms.run.label}: cosine {c_r['l2']:.4f} with the ℓ2 solution < {floor}")
    v.require(c_r["l2"] >= c_r["linf"] + gap_rms,
              f"{rms.run.label}: not closer to ℓ2 than to ℓ∞ by {gap_rms}")
    v.require(eps > 0 and root < np.log10(eps), f"{rms.run.label}: has not handed over (√v ≥ ε)")
    w = ada.directions[-1]
    m_frac = float((Z @ w).min() / np.sqrt(w @ (M * w))) / sol["M"].margin
    l2_frac = ada.final("l2") / sol["l2"].margin
    v.note(f"{ada.run.label}: cos M {c_a['M']:.4f}, cos ℓ2 {c_a['l2']:.4f}, cos ℓ∞ {c_a['linf']:.4f} "
           f"(need M ≥ {floor} and ≥ both + {gap_ada}); M margin / max {m_frac:.4f}, "
           f"ℓ2 margin / max {l2_frac:.4f}")
    v.require(c_a["M"] >= floor, f"{ada.run.label}: cosine {c_a['M']:.4f} with its M-norm solution < {floor}")
    v.require(c_a["M"] >= max(c_a["l2"], c_a["linf"]) + gap_ada,
              f"{ada.run.label}: not closer to the M-norm solution than to ℓ2 and ℓ∞ by {gap_ada}")
    v.require(m_frac > l2_frac,
              f"{ada.run.label}: its M-norm margin is no closer to its maximum than its ℓ2 margin")
    return v


def beta_bound(beta1: float, beta2: float) -> float:
    """Kingma & Ba's bound ``(1−β1)/√((1−β2)(1−β1²/β2))`` on ``|m̂|/√v̂`` (for β1² < β2)."""
    return (1 - beta1) / math.sqrt((1 - beta2) * (1 - beta1**2 / beta2))


def beta_cases(ok: History, mild: History, bad: History, unit: dict[str, np.ndarray],
               messages: Iterable[object]) -> Verdict:
    """Three Adam runs on linear data: ``ok`` (β1 ≤ β2), ``mild`` (β2 < β1 < √β2) and ``bad``
    (β1² > β2), with the :func:`implicit_bias.regime.step_ratio` observer. ``ok`` and
    ``mild``: the largest step ratio stays below Kingma & Ba's bound, the direction ends
    closer to the ℓ∞ solution than to the ℓ2 one, and the run is in its :func:`regime`.
    ``bad``: the ratio exceeds 10 and is still at its maximum at the end, the direction ends
    closer to ℓ2, and the loss is more than 10⁵ times below ``ok``'s.
    ``messages`` (the warnings raised) must include the β1 > β2 warning for ``bad``."""
    v = Verdict("β1² > β2 makes Adam's steps unbounded; β1 ≤ β2 (or at least β1² < β2) keeps them sign-sized")

    def summary(h: History) -> tuple[float, float, float, float, float, float]:
        w = _unit(h.directions[-1])
        b1, b2 = _betas(h)
        r = h.observed["step ratio max"]
        return b1, b2, float(np.nanmax(r)), float(r[-1]), float(w @ unit["linf"]), float(w @ unit["l2"])

    for h in (ok, mild):
        b1, b2, r_max, _, c_inf, c_2 = summary(h)
        bound = beta_bound(b1, b2) if b1**2 < b2 else math.inf
        v.note(f"β=({b1}, {b2}): max step ratio {r_max:.3f} (bound {bound:.3f}); "
               f"cos ℓ∞ {c_inf:.4f}, cos ℓ2 {c_2:.4f}")
        v.require(r_max <= bound * (1 + 1e-9),
                  f"β=({b1}, {b2}): step ratio {r_max:.3f} above the bound {bound:.3f}")
        v.require(c_inf > c_2, f"β=({b1}, {b2}): closer to the ℓ2 solution than to the ℓ∞ one")
    b1, b2, r_max, r_end, c_inf, c_2 = summary(bad)
    drop = (ok.log_loss[-1] - bad.log_loss[-1]) / math.log(10)
    v.note(f"β=({b1}, {b2}): step ratio max {r_max:.3g}, at the end {r_end:.3g} (need > 10, at its max); "
           f"cos ℓ∞ {c_inf:.4f}, cos ℓ2 {c_2:.4f}; log10 loss {drop:.1f} below β=({_betas(ok)[0]}, "
           f"{_betas(ok)[1]})'s (need > 5)")
    v.require(r_end > 10 and r_end == r_max,
              f"β=({b1}, {b2}): the step ratio is not unbounded (end {r_end:.3g})")
    v.require(c_2 > c_inf, f"β=({b1}, {b2}): still heads for the ℓ∞ solution")
    v.require(drop > 5, f"β=({b1}, {b2}): the loss did not collapse ({drop:.1f} decades below)")
    v.require(any(f"beta1 = {b1} > beta2 = {b2}" in str(m) for m in messages), "no β1 > β2 warning")
    for h in (ok, mild):
        _merge(v, regime(h))
    return v


def dead_coordinates(start: torch.nn.Module, end: torch.nn.Module, X: torch.Tensor,
                     messages: Iterable[object]) -> Verdict:
    """Adam with ε = 0 on raw digits from an initialization ``start`` with a dead unit: every
    parameter of ``end`` is finite, the ε = 0 warning was raised exactly once, and at least
    the coordinates that can never get a gradient did not move: the first-layer weights of
    blank pixels, and every weight (in and out) of a unit that is dead on all of ``X``
    (its non-blank input weights and its output weight)."""
    v = Verdict("with ε = 0 the 0/0 step is 0: coordinates without a gradient stay put, "
                "nothing is NaN, one warning")
    W = start.get_parameter("W").detach().cpu()
    X = X.to(W.dtype)
    blank = int((X.abs().sum(0) == 0).sum())
    dead = int((((X @ W.T) > 0).sum(0) == 0).sum())
    before = torch.cat([p.detach().cpu().reshape(-1) for p in start.parameters()])
    after = torch.cat([p.detach().cpu().reshape(-1) for p in end.parameters()])
    frozen = int((before == after).sum())
    need = blank * W.shape[0] + dead * (X.shape[1] + 1 - blank)
    warned = sum("eps = 0" in str(m) for m in messages)
    v.note(f"{blank} blank pixels, {dead} dead unit(s) at the start; {frozen} coordinates never moved "
           f"(at least {need} cannot); all finite: {bool(after.isfinite().all())}; ε = 0 warnings: {warned}")
    v.require(dead > 0, "the initialization has no dead unit: nothing is tested")
    v.require(bool(after.isfinite().all()), "a parameter became NaN or infinite")
    v.require(frozen >= need, f"only {frozen} coordinates stayed put; {need} have no gradient")
    v.require(warned == 1, f"the ε = 0 warning was raised {warned} times, not once")
    return v


__all__ = ["RATIO_MIN", "scales", "conditioner", "handover",
           "regime", "linear", "network", "linear_sweep_rows", "eps_sweep_linear", "eps_sweep_network",
           "conditioner_solution", "preconditioned", "beta_bound", "beta_cases", "dead_coordinates"]
