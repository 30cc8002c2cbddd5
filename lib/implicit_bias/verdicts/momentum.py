"""Chapter 4, momentum steepest descent (Gronich & Vardi 2026, Thm 3.3, Cor 3.4): the
predicates of its verdicts, and the few measurements they read (KKT certificates over a
run, the per-step fall of the loss, margins at matched loss). The random separating
direction, the log-log slope and the path-length bound are chapter 3's
(:mod:`implicit_bias.verdicts.certificates`), re-exported here for the chapter.

Every predicate returns a :class:`~implicit_bias.verdicts.Verdict`; the chapter asserts it
and ``tests/test_verdicts_momentum.py`` runs it on a mutant (the wrong optimizer, a random
direction, Newton–Schulz in place of the exact polar factor, momentum switched off) and
asserts that it fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from .. import kkt
from . import Row, Verdict, own_norm_wins
from .certificates import fitted_slope, random_separating, turn_and_bound, unit_step_l2  # chapter 3's

if TYPE_CHECKING:
    from ..history import History, RunFailed

#: A schedule sweep's runs: ``{(label, a): History, or RunFailed for a run that overflowed}``.
Sweep = Mapping[tuple[str, float], "History | RunFailed"]

#: The near-active set of every certificate in the chapter: ``q_i ≤ 1.5 q_min``.
ACTIVE_TOL = 0.5

#: SCS for every max-spectral certificate, whatever its size (kkt_certificate sends small
#: semidefinite programs to Clarabel, which takes ~30 s on a 32 × 64 layer with one point),
#: at tolerance 1e-4: on the book's Muon network (233 candidates) ε = 0.1057 against 0.1042
#: at SCS's 1e-5, in a quarter of the time. ε is evaluated at a feasible point, so a looser
#: solve can only raise it.
SCS: dict[str, Any] = {"solver": "SCS",
                       "solver_options": {**{k: v for k, v in kkt.SDP_DEFAULTS.items() if k != "solver"},
                                          "eps_abs": 1e-4, "eps_rel": 1e-4}}


# --- measurements ---------------------------------------------------------------------------


def certify(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, norm: str,
            spectral_points: int | None = None) -> kkt.KKTCertificate:
    """The approximate-KKT certificate of ``model``'s direction in ``norm`` with the chapter's
    settings: near-active points ``q_i ≤ 1.5 q_min``, no cap on their number for ℓ2 and ℓ∞;
    the max-spectral semidefinite program is solved by :data:`SCS` and, if
    ``spectral_points`` is given, over at most that many of the smallest margins (a cap can
    only raise ε)."""
    if norm == "spectral":
        return kkt.kkt_certificate(model, X, y, norm, active_tol=ACTIVE_TOL, max_points=spectral_points,
                                   **SCS)
    return kkt.kkt_certificate(model, X, y, norm, active_tol=ACTIVE_TOL)


def epsilon(model: torch.nn.Module | History | Exception, X: torch.Tensor, y: torch.Tensor, norm: str,
            spectral_points: int | None = None) -> float:
    """:func:`certify`'s ε, or 1.0 (its largest value: no evidence of a KKT direction) when
    ``model`` does not separate the data or is a run that failed (a
    :class:`~implicit_bias.train.RunFailed` from ``train(failures='return')``: its loss fell
    faster than the optimizer's memory decays, beyond the float range). A
    :class:`~implicit_bias.train.History` stands for its final model."""
    if isinstance(model, Exception):
        return 1.0
    model = cast(torch.nn.Module, getattr(model, "model", model))  # a History: its final model
    with torch.no_grad():
        if not float((y * model(X)).min()) > 0:
            return 1.0
    return certify(model, X, y, norm, spectral_points).epsilon


def checkpoints(history: History, points: int = 5, start: float = 0.1) -> np.ndarray:
    """Rows of ``history.directions`` of about ``points`` log-spaced checkpoints from step
    ``start · T`` (or the first logged direction where the data are separated, if later) to
    the last step ``T``, keeping those where the data are separated. Their steps are
    ``history.direction_grid[rows]``."""
    steps = history.direction_grid
    separated = history.on_direction_grid(history.margins["l2"]) > 0
    if not separated.any():
        return np.array([], dtype=int)
    first = max(start * steps[-1], steps[int(np.argmax(separated))], 1.0)
    wanted = np.searchsorted(steps, np.geomspace(first, steps[-1], points))
    idx = np.unique(np.clip(wanted, 0, len(steps) - 1))
    return np.array([i for i in idx if separated[i]], dtype=int)


def certificate_path(history: History, X: torch.Tensor, y: torch.Tensor, norm: str, points: int = 5,
                     start: float = 0.1, spectral_points: int | None = None,
                     last: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ε in ``norm`` at the :func:`checkpoints` of ``history`` (from the logged directions:
    ε is scale-free). ``last``, if given, is the final model's ε, already computed. Returns
    ``(steps, eps)``."""
    rows = checkpoints(history, points, start)
    final = len(history.directions) - 1
    eps = [last if last is not None and row == final
           else certify(history.model_at(row).cpu(), X, y, norm, spectral_points).epsilon for row in rows]
    return history.direction_grid[rows], np.array(eps, dtype=float)


def drop_per_step(history: History, start: float = 0.1) -> float:
    """The mean fall of ``log L`` per step from step ``start · T`` to T (Δ_t of the text)."""
    i = int(np.searchsorted(history.steps, history.steps[-1] * start))
    return float((history.log_loss[i] - history.log_loss[-1]) / (history.steps[-1] - history.steps[i]))


def at_loss(history: History, norm: str, log_loss: float) -> tuple[float, int]:
    """The normalized margin in ``norm`` and the step at the first logged step where the
    natural log of the loss is at most ``log_loss``."""
    i = np.nonzero(history.log_loss <= log_loss + 1e-12)[0]
    if not len(i):
        raise ValueError(f"{history.run.label} never reaches log L = {log_loss:.4g}.")
    return float(history.margins[norm][i[0]]), int(history.steps[i[0]])


def matched_loss(h: History, g: History, norm: str) -> dict[str, float]:
    """Margins of two runs compared at *matched loss*: at the lowest loss both reach (the
    larger of their final losses), each taken when it first gets there."""
    level = max(h.log_loss[-1], g.log_loss[-1])
    (mh, sh), (mg, sg) = at_loss(h, norm, level), at_loss(g, norm, level)
    return {"log10 loss": level / math.log(10), "margin": mh, "step": sh, "margin (plain)": mg,
            "step (plain)": sg, "ratio": mh / mg if mg != 0 else math.nan}


def outcome(h: History | RunFailed) -> str:
    """``'overflow'`` for a run that failed (a :class:`~implicit_bias.train.RunFailed` from
    ``train(failures='return')``), ``'not separated'`` if its final margin is ≤ 0, else
    ``'separated'``."""
    if isinstance(h, Exception):
        return "overflow"
    return "separated" if h.final("l2") > 0 else "not separated"


_FAILED_RUN = {"overflow": "overflowed", "not separated": "never separated the data"}


def sweep_rows(runs: Sweep, own: Mapping[str, str],
               eps: Mapping[tuple[str, float], float] | None = None) -> list[dict[str, object]]:
    """One row per run of a schedule sweep, ``runs[(label, a)]`` a History or a RunFailed:
    :func:`outcome`, own-norm margin (``own[label]``), final loss, the fall of log L per step
    over the last decade, and the own-norm ε where ``eps[(label, a)]`` has it."""
    rows: list[dict[str, object]] = []
    for (label, a), h in runs.items():
        row: dict[str, object] = {"optimizer": label, "a": a, "outcome": outcome(h)}
        if isinstance(h, Exception):
            rows.append(row)
            continue
        row |= {"own margin": h.final(own[label]), "log10 loss": h.log_loss[-1] / math.log(10),
                "Δ per step": drop_per_step(h)}
        if eps is not None and (label, a) in eps:
            row["ε own"] = eps[label, a]
        rows.append(row)
    return rows


def matched_rows(runs: Sweep, pairs: Mapping[str, str], own: Mapping[str, str],
                 exponents: Iterable[float]) -> list[dict[str, object]]:
    """Momentum against no momentum at each exponent ``a``: the own-norm margins of the pair
    ``pairs = {momentum: plain}`` at matched loss (:func:`matched_loss`) and at the last
    step (matched step)."""
    rows: list[dict[str, object]] = []
    for m, p in pairs.items():
        for a in exponents:
            h, g = runs[m, a], runs[p, a]
            if isinstance(h, Exception) or isinstance(g, Exception):
                continue
            ml = matched_loss(h, g, own[m])
            rows.append({"pair": f"{m} / {p}", "a": a, "matched log10 loss": ml["log10 loss"],
                         "margin": ml["margin"], "at step": ml["step"],
                         "margin (plain)": ml["margin (plain)"], "at step (plain)": ml["step (plain)"],
                         "ratio, matched loss": ml["ratio"],
                         "ratio, matched step": h.final(own[m]) / g.final(own[m])})
    return rows


# --- predicates -------------------------------------------------------------------------------


def margins(rows: Sequence[Row], own: dict[str, str], key: Callable[[str], str] | None = None) -> Verdict:
    """On every seed each momentum method has the largest final normalized margin in its own
    norm among the methods in ``own`` (``{label: norm}``); ``rows`` as from
    :func:`train.summary` (raw) or :func:`symmetry.summary` (function-level, ``key``)."""
    v = own_norm_wins(rows, own, key)
    v.claim = "on every seed, each momentum method has the largest margin in its own norm"
    return v


def certificates(eps: Mapping[tuple[str, str], float], own: Mapping[str, str],
                 random_eps: Mapping[str, float]) -> Verdict:
    """Final KKT certificates, compared only *within* a norm (ε's of different norms are not
    comparable): in each norm of ``own`` (``{label: norm}``) the method of that norm has the
    smallest ε among the methods in ``own``; and each method's ε in its own norm is below
    ``random_eps[label]``, the ε of a random separating direction in that norm.
    ``eps[(label, norm)]`` are the final certificates."""
    v = Verdict("in each norm the method of that norm has the smallest KKT certificate, "
                "and every method certifies better than a random separating direction")
    for norm in dict.fromkeys(own.values()):
        theirs = [o for o, n in own.items() if n == norm]
        best = min(own, key=lambda o: _num(eps[o, norm]))
        v.note(f"{norm}: " + ", ".join(f"{o} {eps[o, norm]:.3g}" for o in own))
        v.require(best in theirs, f"in {norm}, {best} has the smallest ε ({eps[best, norm]:.3g}), "
                                  f"not {' or '.join(theirs)}")
    for o, norm in own.items():
        v.note(f"{o} in {norm}: ε {eps[o, norm]:.3g}, random separating direction {random_eps[o]:.3g}")
        v.require(eps[o, norm] < random_eps[o],
                  f"{o}: ε in {norm} {eps[o, norm]:.3g} is not below the random direction's "
                  f"{random_eps[o]:.3g}")
    return v


#: The fitted log–log slope of ε over the checkpoints that counts as falling. Measured (4
#: checkpoints from 0.1·T, seed 0) inside the schedule condition: Signum −0.40 (smoke) and
#: −0.23 (book), Muon −0.38 and −0.33, MomentumGD −0.96 and −0.73; outside it (a = 0.5, smoke
#: size) MomentumGD −0.04 and Signum +0.05 (rising).
FALLING_SLOPE = -0.1


def falling(paths: Mapping[str, tuple[np.ndarray, Sequence[float] | np.ndarray]],
            max_slope: float = FALLING_SLOPE) -> Verdict:
    """Each run's own-norm certificate is still falling at the end of the run: over its
    checkpoints (``paths[label] = (steps, eps)``, at least 3) the log–log slope of ε fitted
    over all of them is at most ``max_slope``, and ε is lowest at the last one. A fit over
    every checkpoint, not the ratio of two of them: one certificate can sit anywhere in a
    band of ±10% around the trend. A direction that has stopped moving (a summable
    schedule) or that moves without approaching a KKT direction (momentum outside the
    schedule condition) fails."""
    v = Verdict(f"every momentum method's certificate in its own norm falls over the run (log–log slope "
                f"≤ {max_slope:g}) and ends at its lowest")
    for label, (steps, eps) in paths.items():
        eps = np.asarray(eps, float)
        slope = fitted_slope(steps, eps, since=steps[0]) if len(eps) else math.nan
        v.note(f"{label}: ε " + " → ".join(f"{e:.3g}" for e in eps)
               + f" at steps {', '.join(str(int(s)) for s in steps)}; log-log slope {slope:.3f} "
               f"(need ≤ {max_slope:g})")
        if not v.require(len(eps) >= 3, f"{label}: {len(eps)} separated checkpoints; need at least 3"):
            continue
        v.require(slope <= max_slope, f"{label}: ε falls with log-log slope {slope:.3f} > {max_slope:g}")
        v.require(eps[-1] < eps[:-1].min(),
                  f"{label}: ε ends at {eps[-1]:.3g}, above its earlier low {eps[:-1].min():.3g}")
    return v


def same_limit(first: torch.Tensor, second: torch.Tensor, exact: torch.Tensor,
               names: tuple[str, str] = ("MomentumGD", "NormalizedGD"),
               threshold: float = 0.98) -> Verdict:
    """Where the limit is unique (a linear model, ℓ2): both final directions (``first``,
    ``second``: tensors or arrays) have cosine ≥ ``threshold`` with the exact max-margin
    direction ``exact`` and with each other. (Lowest measured: MomentumGD's 0.992 at the
    chapter's smoke size, 0.994 in the test; the mutant Signum's: 0.75.)"""
    from ..margins import direction_cosine

    v = Verdict(f"with a unique limit, {names[0]} and {names[1]} reach the same direction "
                f"(cos ≥ {threshold})")
    cos = {names[0]: direction_cosine(first, exact), names[1]: direction_cosine(second, exact)}
    mutual = direction_cosine(first, second)
    for name, c in cos.items():
        v.note(f"cos({name}, exact) = {c:.4f} (need ≥ {threshold})")
        v.require(c >= threshold, f"{name} ends at cos {c:.4f} < {threshold} with the exact solution")
    v.note(f"cos({names[0]}, {names[1]}) = {mutual:.4f} (need ≥ {threshold})")
    v.require(mutual >= threshold, f"the two final directions have cos {mutual:.4f} < {threshold}")
    return v


def polar_factor(fractions: Mapping[str, float], exact: str = "Muon",
                 approximations: Sequence[str] = ("Muon (Newton–Schulz)", "TorchMuon"),
                 gap: float = 0.015) -> Verdict:
    """On a problem with a known max-spectral margin, the run labelled ``exact`` reaches a
    fraction of it (``fractions[label]``) at least ``gap`` above every Newton–Schulz
    approximation's. (Smallest lead measured: 0.036 at the chapter's smoke size, 0.049 in
    the test; two Newton–Schulz variants differ by at most 0.006.)"""
    v = Verdict(f"exact Muon gets closer to the max-spectral margin than Newton–Schulz, by ≥ {gap}")
    v.note("fraction of the exact max-spectral margin: "
           + ", ".join(f"{k} {fractions[k]:.4f}" for k in (exact, *approximations))
           + f" (need {exact} ≥ each other + {gap})")
    for k in approximations:
        v.require(fractions[exact] >= fractions[k] + gap,
                  f"{exact} {fractions[exact]:.4f} is not {gap} above {k} {fractions[k]:.4f}")
    return v


def schedule_sweep(runs: Sweep, eps: Mapping[tuple[str, float], float], momentum: Collection[str],
                   controls: Sequence[str] = ("NormalizedGD",), inside: float = 0.8,
                   below: Sequence[float] = (0.5, 0.6)) -> Verdict:
    """The schedule condition ``a > 1 − 1/L`` of ``η_t = η_0 t^{−a}``, read from the runs
    ``runs[(label, a)]`` (Histories, or RunFailed for a run that overflowed) and their final
    own-norm certificates ``eps[(label, a)]``: below the boundary (every ``a`` in ``below``)
    each method in ``momentum`` ends with a larger ε than at ``inside`` (it loses the KKT
    evidence it has there), while each momentum-free method in ``controls`` does not (its ε
    at every ``a`` in ``below`` is at most its ε at ``inside``: normalized steepest descent
    needs only ``Σ η_t = ∞``).

    Only a run that separated the data is evidence: a run that overflowed or never
    separated (too small a rate, too few steps) has no direction to certify, and counting
    its conventional ε = 1 as a lost bias would pass the verdict on a broken experiment.
    Every run read must have separated (:func:`outcome`)."""
    v = Verdict(f"below the boundary (a in {list(below)}) the momentum methods lose the KKT evidence "
                f"they have at a = {inside} although they separate the data; momentum-free "
                f"{', '.join(controls)} does not")
    for label in [*momentum, *controls]:
        outcomes = {a: outcome(runs[label, a]) for a in (*below, inside)}
        v.note(f"{label}: ε " + ", ".join(f"{eps[label, a]:.3g} at a = {a} ({outcomes[a]})"
                                          for a in (*below, inside)))
        evidence = [v.require(o == "separated", f"{label}: the run at a = {a} {_FAILED_RUN.get(o)}: no "
                                                 "evidence either way (fix its rate or steps)")
                    for a, o in outcomes.items()]
        if not all(evidence):
            continue
        for a in below:
            if label in momentum:
                v.require(eps[label, a] > eps[label, inside],
                          f"{label}: ε at a = {a} ({eps[label, a]:.3g}) is not above ε at a = {inside} "
                          f"({eps[label, inside]:.3g})")
            else:
                v.require(eps[label, a] <= eps[label, inside],
                          f"{label}: ε at a = {a} ({eps[label, a]:.3g}) is above ε at a = {inside} "
                          f"({eps[label, inside]:.3g}): it breaks down without momentum")
    return v


def _num(x: float) -> float:
    x = float(x)
    return x if math.isfinite(x) else math.inf


__all__ = ["certify", "epsilon", "checkpoints", "certificate_path", "drop_per_step", "at_loss", "outcome",
           "matched_loss", "sweep_rows", "matched_rows", "margins", "certificates", "falling", "same_limit",
           "polar_factor", "schedule_sweep", "random_separating", "fitted_slope", "turn_and_bound",
           "unit_step_l2",
           "ACTIVE_TOL", "SCS", "FALLING_SLOPE"]
