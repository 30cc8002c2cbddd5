"""Chapter 3 (certificates): the instruments that say a run has converged, and their verdicts.

* :func:`exact_solutions` — at the exact max-margin solution of each norm (a linear model),
  the KKT certificate is at solver precision in that norm and clearly positive in the others.
* :func:`network` — certificates as convergence evidence on a trained network: in each norm,
  the optimizer of that norm has the smallest final ε; every optimizer's final ε in its own
  norm is below that of a random separating direction and has fallen since the data were
  first separated, and is still falling at the end (fitted log–log slope < 0).
* :func:`directional` — the direction has settled (cos ≥ 0.99 over the last half, the data
  separated there), *and* this is a measurement, not a consequence of the schedule: the
  remaining path length ``Σ_{t>T/2} η_t`` (:func:`path_length_bound`) would allow a larger
  turn, of which the direction uses at most 0.6.
* :func:`vanishing_loss` — the frame takes training past both precisions' underflow without
  changing the trajectory.

Helpers used by the chapter and the tests: :func:`certify_path` (certificates at the logged
checkpoints), :func:`random_separating` (the control direction), :func:`fitted_slope`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import numpy as np
import numpy.typing as npt
import torch

from ..kkt import kkt_certificate
from ..margins import NotSeparatingError
from . import Verdict

if TYPE_CHECKING:
    from ..history import History
    from ..kkt import KKTCertificate

#: Certificates along a run (:func:`certify_path`): the checkpoints' steps, and per checkpoint
#: a certificate by norm.
Path = tuple[np.ndarray, list[dict[str, "KKTCertificate"]]]

# --- helpers ------------------------------------------------------------------------------


def certify_path(history: History, X: torch.Tensor, y: torch.Tensor, norms: Iterable[str],
                 **options: Any) -> Path:
    """KKT certificates in each of ``norms`` at every logged direction of ``history`` (the
    steps of :attr:`~implicit_bias.train.History.direction_grid`) where the model separates
    the data. Returns ``(steps, [{norm: KKTCertificate}, ...])``. ``options`` go to
    :func:`~implicit_bias.kkt.kkt_certificate` (no ``max_points`` cap by default: a cap can
    only raise ε)."""
    keep = np.flatnonzero(history.on_direction_grid(history.margins["l2"]) > 0)
    certs: list[dict[str, KKTCertificate]] = []
    for row in keep:
        model = history.model_at(row)
        certs.append({n: kkt_certificate(model, X, y, n, **options) for n in norms})
    return history.direction_grid[keep], certs


@torch.no_grad()
def random_separating(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, seed: int = 0,
                      tries: int = 11) -> tuple[torch.nn.Module, float]:
    """The control direction: ``θ + s·‖θ‖·z/‖z‖`` with ``z`` Gaussian and ``s`` the largest of
    ½, ¼, … for which the model still separates the data. Returns ``(model, s)``."""
    gen = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    theta = torch.nn.utils.parameters_to_vector(params).detach()
    noise = torch.randn(theta.shape, generator=gen, dtype=theta.dtype)
    for scale in 0.5 ** np.arange(1, tries + 1):
        candidate = copy.deepcopy(model)
        torch.nn.utils.vector_to_parameters(theta + scale * theta.norm() * noise / noise.norm(),
                                            list(candidate.parameters()))
        if (y * candidate(X)).min() > 0:
            return candidate, float(scale)
    raise NotSeparatingError("random_separating: no separating perturbation found; is the model separating?")


@overload
def fitted_slope(steps: npt.ArrayLike, values: npt.ArrayLike, since: float | None = None,
                 intercept: Literal[False] = False) -> float: ...
@overload
def fitted_slope(steps: npt.ArrayLike, values: npt.ArrayLike, since: float | None = None, *,
                 intercept: Literal[True]) -> tuple[float, float]: ...
def fitted_slope(steps: npt.ArrayLike, values: npt.ArrayLike, since: float | None = None,
                 intercept: bool = False) -> float | tuple[float, float]:
    """Least-squares slope of ``log values`` against ``log steps`` over the steps ≥ ``since``
    (default: the last decade, ``steps[-1] / 10``); NaN with fewer than two points. With
    ``intercept=True`` returns ``(slope, c)`` of the fitted power law ``values ≈ e^c · steps^slope``."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    since = steps[-1] / 10 if since is None else since
    keep = (steps >= since) & (values > 0)
    if keep.sum() < 2:
        return (math.nan, math.nan) if intercept else math.nan
    slope, c = np.polyfit(np.log(steps[keep]), np.log(values[keep]), 1)
    return (float(slope), float(c)) if intercept else float(slope)


# --- exact solutions ----------------------------------------------------------------------


def exact_solutions(certs: Mapping[tuple[str, str], KKTCertificate], norms: Sequence[str],
                    own_max: float = 1e-6, other_min: float = 5e-3) -> Verdict:
    """``certs[(s, n)]`` is the certificate of the exact solution of norm ``s`` in norm ``n``.
    Each solution has ε ≤ ``own_max`` and δ/Σλ ≤ ``own_max`` in its own norm and ε ≥
    ``other_min`` in every other norm (measured on the chapter's data: own ε ≤ 3e-9, the
    smallest other ε 0.019, the spectral solution's in ℓ2)."""
    v = Verdict("each exact solution certifies in its own norm only")
    v.note(f"need: own-norm ε and δ/Σλ ≤ {own_max:g}; ε in every other norm ≥ {other_min:g}")
    for s in norms:
        own = certs[s, s]
        others = {n: certs[s, n].epsilon for n in norms if n != s}
        v.note(f"{s} solution: own ε {own.epsilon:.1e} (δ/Σλ {own.delta_relative:.1e}); other norms "
               + ", ".join(f"{n} {e:.3f}" for n, e in others.items()))
        v.require(own.epsilon <= own_max, f"{s} solution: own-norm ε = {own.epsilon:.2e} > {own_max:g}")
        v.require(own.delta_relative <= own_max,
                  f"{s} solution: own-norm δ/Σλ = {own.delta_relative:.2e} > {own_max:g}")
        for n, e in others.items():
            v.require(e >= other_min, f"{s} solution: ε in {n} = {e:.2e} < {other_min:g}")
    return v


# --- a trained network ----------------------------------------------------------------------


def network(paths: Mapping[str, Path], own: Mapping[str, str],
            random: Mapping[str, Mapping[str, KKTCertificate]], drop: float,
            delta_max: float = 0.15) -> Verdict:
    """Certificates as convergence evidence.

    ``paths[label] = (steps, [{norm: certificate}, ...])`` (from :func:`certify_path`),
    ``own[label]`` the optimizer's own norm, ``random[label] = {norm: certificate}`` of a
    random separating direction near its final one. Requires:

    * within each norm, the optimizer of that norm has the smallest final ε among the
      optimizers (ε of different norms are never compared);
    * final own-norm ε < the random direction's ε in that norm;
    * own-norm ε has fallen by at least ``drop`` since the first separated checkpoint, and its
      log–log slope over the last decade of steps is negative (still falling at the end);
    * the final δ/Σλ ≤ ``delta_max`` (the certificate does not lean on far-from-active points;
      measured at the chapter's smoke size: 0.060 and 0.035).
    """
    v = Verdict("each optimizer has the smallest certificate in its own norm, below a random "
                "direction's, and still falling")
    v.note(f"need: own-norm ε smallest in its norm, below the random direction's, fallen ÷ ≥ {drop:g}, "
           f"slope < 0 over the last decade; δ/Σλ ≤ {delta_max:g}")
    final = {label: certs[-1] for label, (_, certs) in paths.items()}
    for label, norm in own.items():
        others = {o: final[o][norm].epsilon for o in own if o != label}
        mine = final[label][norm].epsilon
        v.note(f"ε in {norm}: {label} {mine:.3g}; " + ", ".join(f"{o} {e:.3g}" for o, e in others.items()))
        for o, e in others.items():
            v.require(mine < e, f"in {norm}, {o} has ε {e:.3g} ≤ {label}'s {mine:.3g}")
    for label, norm in own.items():
        steps, certs = paths[label]
        eps = [c[norm].epsilon for c in certs]
        ctrl = random[label][norm].epsilon
        slope = fitted_slope(steps, eps)
        v.note(f"{label} in {norm}: ε {eps[0]:.3g} at step {int(steps[0])} → {eps[-1]:.3g} at "
               f"{int(steps[-1])} (÷{eps[0] / eps[-1]:.3g}); slope {slope:.3f} over the last decade; "
               f"random direction {ctrl:.3g}; δ/Σλ {certs[-1][norm].delta_relative:.3g}")
        v.require(eps[-1] < ctrl, f"{label}: final ε {eps[-1]:.3g} ≥ the random direction's {ctrl:.3g}")
        v.require(eps[0] >= drop * eps[-1], f"{label}: ε fell only ÷{eps[0] / eps[-1]:.3g} (< {drop:g})")
        v.require(slope < 0, f"{label}: ε is not falling at the end (slope {slope:.3g})")
        v.require(certs[-1][norm].delta_relative <= delta_max,
                  f"{label}: δ/Σλ = {certs[-1][norm].delta_relative:.3g} > {delta_max:g}")
    return v


# --- directional convergence ------------------------------------------------------------------


def unit_step_l2(norm: str, model: torch.nn.Module) -> float:
    """The largest ℓ2 length of a unit step in ``norm`` (1 for ℓ2 and ℓ1, √p for ℓ∞, √(Σ rank)
    for max-spectral, √(Σ rank + #other entries) for the hybrid norm at r = 1): turns a path
    length in ``norm`` into an ℓ2 one."""
    params = list(model.parameters())
    if norm in ("l2", "l1"):
        return 1.0
    if norm == "linf":
        return math.sqrt(sum(p.numel() for p in params))
    if norm in ("spectral", "msp"):
        return math.sqrt(sum(min(p.reshape(p.shape[0], -1).shape) if p.dim() > 1 else 1 for p in params))
    if norm == "hybrid":  # polar factors on the matrices, signs on the rest
        return math.sqrt(sum(min(p.reshape(p.shape[0], -1).shape) if p.dim() > 1 else p.numel()
                             for p in params))
    raise ValueError(f"unit_step_l2: unknown norm {norm!r}")


def path_length_bound(history: History, norm: str) -> dict[str, np.ndarray]:
    """How far the direction *could* still turn after each checkpoint, given the schedule.

    After checkpoint ``s`` the run makes steps ``s+1 … T`` of size ``η_t = η_0 t^{−a}`` in its
    norm, so ``‖θ_T − θ_s‖₂ ≤ P_s = u·Σ_{t>s} η_t`` (``u`` from :func:`unit_step_l2`), and the
    angle between ``θ_s`` and ``θ_T`` is at most ``arcsin(P_s / ‖θ_s‖₂)`` (90° once
    ``P_s ≥ ‖θ_s‖₂``). Returns ``steps``, ``path`` (P_s), ``ratio`` (P_s/‖θ_s‖) and
    ``cos_bound`` (the cosine this alone guarantees, ``√(1 − ratio²)``)."""
    run = history.run
    t = np.arange(1, run.steps + 1, dtype=float)
    eta = run.lr * t ** (-run.schedule)
    after = np.concatenate([np.cumsum(eta[::-1])[::-1], [0.0]])  # after[s] = Σ_{t>s} η_t
    steps = np.asarray(history.steps)
    path = after[steps] * unit_step_l2(norm, history.model)
    ratio = path / np.asarray(history.param_norm)
    return {"steps": steps, "path": path, "ratio": ratio,
            "cos_bound": np.sqrt(np.clip(1.0 - ratio**2, 0.0, 1.0))}


def turn_and_bound(history: History, norm: str, window: float = 0.5) -> tuple[float, float, float]:
    """From the first logged direction ``s`` at or after ``(1 − window)·T`` to the end: the
    measured turn ``∠(θ_s, θ_T)`` and the largest turn the schedule allows,
    ``arcsin(P_s/‖θ_s‖)`` (:func:`path_length_bound`), both in degrees, and
    ``min cos(θ_t, θ_T)`` over the logged directions ``t ≥ s``."""
    first = history.direction_row(history.run.steps * (1 - window))
    cos = history.cosine_to_final()
    ratio = history.on_direction_grid(path_length_bound(history, norm)["ratio"])[first]
    turn = math.degrees(math.acos(min(1.0, float(cos[first]))))
    return turn, math.degrees(math.asin(min(1.0, float(ratio)))), float(cos[first:].min())


def directional(histories: Iterable[History], own: Mapping[str, str], threshold: float = 0.99,
                fraction: float = 0.6,
                window: float = 0.5) -> Verdict:
    """Directional convergence as a measurement. For each history (its own norm
    ``own[label]``), over the last ``window`` of training (:func:`turn_and_bound`):

    * ``min cos(θ_t, θ_T) ≥ threshold`` (the papers' criterion);
    * the data are separated at every logged step of the window: the theorems describe the
      direction of a separating run (a run cut short before it separates fails here);
    * the schedule alone does not imply the cosine: the remaining path length allows a turn
      larger than ``arccos(threshold)`` (a summable schedule, whose direction freezes, fails
      here; a logical condition on a computed bound, not a tuned threshold);
    * the direction spends at most ``fraction`` of that allowance on turning. Measured: 0.17
      (sign descent, chapter 3's book size), 0.23 (its smoke size), 0.26 (its test), at most
      0.30 (chapter 8's test sweep, 12 runs); runs cut short, still turning, use 0.41–0.63,
      too close to tell apart, so the separation and cosine checks are what fail them."""
    limit = math.degrees(math.acos(threshold))
    v = Verdict(f"over the last {window:g} of training the run separates the data, cos(θ_t, θ_final) ≥ "
                f"{threshold}, and the direction turns by at most {fraction:.2g} of what the remaining path "
                f"length allows")
    for h in histories:
        label = cast(str, h.run.label)  # Run sets it when built
        turn, allowed, cos = turn_and_bound(h, own[label], window)
        late = h.steps >= h.steps[-1] * (1 - window)
        separated = bool((h.margins["l2"][late] > 0).all())
        v.note(f"{label}: min cos {cos:.5f} (need ≥ {threshold}); separated throughout: {separated}; turned "
               f"{turn:.2f}° where the path length allows {allowed:.1f}° (need > {limit:.1f}°), "
               f"{turn / allowed:.2f} of it (need ≤ {fraction:.2g})")
        v.require(cos >= threshold, f"{label}: min cos {cos:.4f} < {threshold}")
        v.require(separated, f"{label}: does not separate the data over the last {window:g} of training")
        v.require(allowed > limit, f"{label}: implied by the schedule (the path length allows only "
                                   f"{allowed:.2f}° < {limit:.2f}°)")
        v.require(turn <= fraction * allowed, f"{label}: turned {turn:.2f}°, more than {fraction:.2g} of "
                                              f"the {allowed:.1f}° the path length allows")
    return v


# --- vanishing loss -------------------------------------------------------------------------


def vanishing_loss(framed: Mapping[tuple[str, bool], History], exact_max: float, below: float = -50.0,
                   float32_floor: float = -50.0,
                   float64_floor: float = -300.0, agree: float = 1e-10) -> Verdict:
    """``framed[(dtype, frame)]`` are the histories of one run in float64/float32 with and
    without the frame. Requires: the framed runs reach ``log10 L < below`` with finite
    margins; the plain float32 run stays above ``float32_floor`` (it froze at underflow); and
    the framed and plain float64 runs agree to ``agree`` (relative to ``exact_max``) at every
    checkpoint where the plain loss is above ``10^float64_floor``. The default −50 is past
    float32's range (its smallest subnormal is 1.4e-45), which a plain float32 loss cannot
    cross (measured: it freezes at −45); the framed runs reach −106 at the chapter's smoke
    size."""
    v = Verdict("the frame trains past both precisions' underflow without changing the trajectory")
    v.note(f"need: framed runs below log10 L = {below:g}; plain float32 above {float32_floor:g}; framed and "
           f"plain float64 within {agree:g} while the plain loss is above 1e{float64_floor:g}")
    for (dtype, frame), h in framed.items():
        kind = "framed" if frame else "plain"
        v.note(f"{dtype}, {kind}: final log10 loss {h.log_loss[-1] / math.log(10):.1f}, "
               f"ℓ2 margin / max {h.final('l2') / exact_max:.6f}")
    for dtype in ("float64", "float32"):
        h = framed[dtype, True]
        final = h.log_loss[-1] / math.log(10)
        v.require(final < below, f"framed {dtype}: final log10 loss {final:.1f} ≥ {below:g}")
        v.require(np.isfinite(h.margins["l2"]).all(), f"framed {dtype}: a margin is not finite")
    plain32 = framed["float32", False].log_loss[-1] / math.log(10)
    v.require(plain32 > float32_floor, f"plain float32 reached log10 loss {plain32:.1f} ≤ {float32_floor:g}")
    plain, fr = framed["float64", False], framed["float64", True]
    ok = plain.log_loss / math.log(10) > float64_floor
    diff = np.abs(fr.margins["l2"][ok] - plain.margins["l2"][ok])
    gap = float(diff.max() / exact_max) if ok.any() else math.nan
    v.note(f"float64 framed vs plain over {int(ok.sum())} checkpoints with loss > 1e{float64_floor:g}: "
           f"max relative gap {gap:.1e}")
    v.require(gap <= agree, f"framed and plain float64 differ by {gap:.2e} > {agree:g}")
    return v


__all__ = ["certify_path", "random_separating", "fitted_slope", "exact_solutions", "network", "unit_step_l2",
           "path_length_bound", "turn_and_bound", "directional", "vanishing_loss"]
