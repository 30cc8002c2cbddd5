"""Chapter 7 (KKT points and optima): is the KKT point a run reaches a max-margin solution?

* :func:`linear_network` — a deep *linear* network's end-to-end predictor is the ℓ2
  max-margin direction (every KKT point is global, Vardi, Shamir & Srebro 2022).
* :func:`diagonal` — diagonal linear networks: the balanced point is KKT at every depth, a
  global optimum at depth 2 and not even a local one at depth ≥ 3.
* :func:`relu` — a width-2 ReLU network: gradient descent ends at a KKT point that is not a
  local optimum from some initializations, and at the global optimum from others.

Measurements shared by the chapter and the tests: :func:`end_to_end`, :func:`point_row`,
:func:`train_width2`, :func:`relu_row`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from .. import losses, models, optim
from ..kkt import kkt_certificate
from ..margins import direction_cosine, normalized_margin
from ..optimality import search_nearby
from . import Row, Verdict

if TYPE_CHECKING:
    from ..maxmargin import MaxMarginSolution

#: An end-to-end predictor ``w`` (:func:`end_to_end`).
Predictor = torch.Tensor | np.ndarray

# --- measurements ------------------------------------------------------------------------------


@torch.no_grad()
def end_to_end(model: torch.nn.Module, d: int) -> torch.Tensor:
    """The vector ``w`` with ``f(x) = w·x`` of a linear model (any depth): ``f(e_j) = w_j``."""
    # a module's call is Any to mypy
    w: torch.Tensor = model(torch.eye(d, dtype=next(model.parameters()).dtype)).detach()
    return w


def point_row(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, trials: int, radius: float = 0.05,
              active_tol: float = 1e-6) -> dict[str, float]:
    """ℓ2 certificate ε, squared norm at margin 1, normalized margin γ and the relative
    improvement ``search_nearby`` finds within ``radius`` of a model's point."""
    c = kkt_certificate(model, X, y, "l2", active_tol=active_tol)
    s = search_nearby(model, X, y, radius=radius, trials=trials)
    return {"ε": c.epsilon, "norm²": s.norm_start**2, "γ": normalized_margin(model, X, y, "l2"),
            "improvement": s.improvement}


def framed_loss(q: torch.Tensor) -> torch.Tensor:
    """``Σ_i ℓ(q_i) / L`` per run (rows of ``q``), L detached: a normalized step only sees the
    gradient's direction, and dividing by the run's own loss keeps it from underflowing."""
    terms = losses.log_terms(q)
    return torch.exp(terms - torch.logsumexp(terms.detach(), dim=-1, keepdim=True)).sum()


def train_width2(W0: torch.Tensor, a0: torch.Tensor, X: torch.Tensor, y: torch.Tensor, steps: int, lr: float,
                 decay: float) -> models.TwoLayer:
    """A bias-free width-2 ReLU network ``Σ_j a_j relu(w_j·x)`` started at ``(W0, a0)`` and
    trained by the library's ``NormalizedGD`` with ``η_t = lr·t^{−decay}`` on
    :func:`framed_loss`."""
    model = models.TwoLayer(X.shape[1], 2, activation="relu")
    model.W.data, model.a.data = W0.clone(), a0.clone()
    opt = optim.make("NormalizedGD", list(model.parameters()), lr)
    schedule = optim.power_schedule(opt, decay)
    for _ in range(steps):
        opt.zero_grad()
        framed_loss(y * model(X)).backward()
        opt.step()
        schedule.step()
    return model


def relu_row(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, trials: int, v_global: float = 2.0,
             reference: torch.Tensor | None = None) -> dict[str, float]:
    """γ, the certificate ε (near-active within 1e-3), the norm at margin 1 over the global
    optimum's ``v_global``, the improvement found nearby, and (given ``reference``, a flat
    parameter vector of the same run trained elsewhere) their relative distance."""
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    c = kkt_certificate(model, X, y, "l2", active_tol=1e-3)
    s = search_nearby(model, X, y, radius=0.05, trials=trials)
    row = {"γ": normalized_margin(model, X, y), "ε": c.epsilon, "V / V_global": s.norm_start / v_global,
           "improvement nearby": s.improvement}
    if reference is not None:
        row["batch vs library"] = float((theta - reference).norm() / theta.norm())
    return row


# --- verdicts --------------------------------------------------------------------------------


def linear_network(w: Predictor | dict[int, Predictor], X: torch.Tensor, y: torch.Tensor,
                   best: MaxMarginSolution, cos_min: float = 0.99, ratio_min: float = 0.99) -> Verdict:
    """The end-to-end predictor ``w`` has cosine ≥ ``cos_min`` with the ℓ2 max-margin
    direction ``best.direction`` and an ℓ2 margin ≥ ``ratio_min`` × ``best.margin``.

    ``w`` may also be a dict ``{seed: w}``, one predictor per training seed: the claim must
    then hold on every seed (the failures are the union, each naming its seed)."""
    # {seed: w} is only read here: as a {seed or None: w}
    ws = cast(dict[int | None, Predictor], w) if isinstance(w, dict) else {None: w}
    v = Verdict("the deep linear network's KKT limit is the ℓ2 max-margin solution"
                + ("" if None in ws else f" (on each of {len(ws)} seeds)"))
    v.note(f"need: cos ≥ {cos_min}, ℓ2 margin / max ≥ {ratio_min}" + ("" if None in ws else " on every seed"))
    for seed, wi in ws.items():
        tag = "" if seed is None else f" (seed {seed})"
        wi = torch.as_tensor(wi, dtype=X.dtype).reshape(-1)
        cos = direction_cosine(wi, torch.as_tensor(best.direction, dtype=X.dtype))
        ratio = float((y * (X @ wi)).min() / wi.norm()) / best.margin
        v.note(f"{'seed ' + str(seed) + ': ' if seed is not None else ''}cos(end-to-end w, ℓ2 max-margin) = "
               f"{cos:.6f}; ℓ2 margin / max = {ratio:.6f}")
        v.require(cos >= cos_min, f"cos {cos:.4f} < {cos_min}{tag}")
        v.require(ratio >= ratio_min, f"margin ratio {ratio:.4f} < {ratio_min}{tag}")
    return v


def diagonal(rows: Sequence[Row], eps_max: float = 1e-10, flat: float = 1e-9, improve_min: float = 1e-4,
             gain: float = 1.2) -> Verdict:
    """``rows``: one per depth, with ``depth`` and the :func:`point_row` numbers of the
    balanced and the sparse point as ``"balanced ε"``, ``"sparse improvement"``, …. Both
    points are KKT (ε ≤ ``eps_max``); nothing shorter is found near the sparse point
    (improvement ≤ ``flat``); at depth 2 nothing near the balanced point either; at depth ≥ 3
    a shorter point is found near the balanced one (≥ ``improve_min``) and the sparse point's
    γ is ≥ ``gain`` × the balanced one's."""
    v = Verdict("depth 2: the balanced KKT point is global; depth ≥ 3: it is not even a local optimum")
    v.note(f"need: ε ≤ {eps_max:g} at both points; improvement ≤ {flat:g} where the point is a local "
           f"optimum, ≥ {improve_min:g} near the balanced point at depth ≥ 3; γ sparse / balanced "
           f"≥ {gain} there")
    for r in rows:
        D = r["depth"]
        v.note(f"depth {D}: ε balanced {r['balanced ε']:.1e}, sparse {r['sparse ε']:.1e}; improvement near "
               f"balanced {r['balanced improvement']:.2e}, near sparse {r['sparse improvement']:.2e}; "
               f"γ sparse / balanced {r['sparse γ'] / r['balanced γ']:.3f}")
        for point in ("balanced", "sparse"):
            eps = r[f"{point} ε"]
            v.require(eps <= eps_max, f"depth {D}: the {point} point is not KKT (ε {eps:.2e})")
        v.require(r["sparse improvement"] <= flat,
                  f"depth {D}: a shorter point near the sparse one ({r['sparse improvement']:.2e})")
        if D == 2:
            v.require(r["balanced improvement"] <= flat,
                      f"depth 2: a shorter point near the balanced one ({r['balanced improvement']:.2e})")
        else:
            v.require(r["balanced improvement"] >= improve_min,
                      f"depth {D}: no shorter point near the balanced one ({r['balanced improvement']:.2e})")
            v.require(r["sparse γ"] >= gain * r["balanced γ"],
                      f"depth {D}: sparse γ {r['sparse γ']:.4g} < {gain} × balanced {r['balanced γ']:.4g}")
    return v


def relu(bad: Mapping[str, float], good: Mapping[str, float], fraction_bad: float, fraction_good: float,
         gamma_bad: float = math.cos(math.radians(80)) / 2, gamma_good: float = 0.25, tol: float = 0.02,
         eps_max: float = 1e-3, improve_min: float = 1e-4, agree: float = 1e-10) -> Verdict:
    """``bad`` and ``good`` are :func:`relu_row` s of the representative runs ending at the
    one-neuron KKT point and at the global optimum; ``fraction_*`` the fractions of the
    initialization grid ending at each. Requires: both outcomes occur; both runs are KKT
    (ε ≤ ``eps_max``) and agree with the batched grid (≤ ``agree``); γ within ``tol``
    (relative) of ``gamma_bad`` and ``gamma_good``; a shorter feasible point next to the bad
    one (≥ ``improve_min``), and none next to the good one below the global optimum's norm."""
    v = Verdict("gradient descent can end at a KKT point that is not even a local optimum")
    v.note(f"grid: {fraction_bad:.3f} end at the one-neuron KKT point, "
           f"{fraction_good:.3f} at the global optimum (need both > 0)")
    v.note(f"need: ε ≤ {eps_max:g}, γ within {tol:.0%} of its expected value, batch vs library ≤ {agree:g}, "
           f"improvement next to the bad run ≥ {improve_min:g}")
    v.require(fraction_bad > 0 and fraction_good > 0, "the grid does not contain both outcomes")
    for name, row, target in (("bad", bad, gamma_bad), ("good", good, gamma_good)):
        v.note(f"{name} run: γ {row['γ']:.4f} (expected {target:.4f}), ε {row['ε']:.1e}, improvement nearby "
               f"{row['improvement nearby']:.2e}, V / V_global {row['V / V_global']:.4f}, batch vs library "
               f"{row.get('batch vs library', math.nan):.1e}")
        v.require(row.get("batch vs library", math.inf) <= agree,
                  f"{name} run: batched and library runs differ")
        v.require(row["ε"] <= eps_max, f"{name} run: not a KKT point (ε {row['ε']:.2e} > {eps_max:g})")
        v.require(abs(row["γ"] / target - 1) <= tol,
                  f"{name} run: γ {row['γ']:.4f} not within {tol:.0%} of {target:.4f}")
    v.require(bad["improvement nearby"] >= improve_min,
              f"no shorter point next to the bad run ({bad['improvement nearby']:.2e} < {improve_min:g})")
    below = (1 - good["improvement nearby"]) * good["V / V_global"]
    v.require(below >= 1 - 1e-12,
              f"the search went below the global optimum's norm next to the good run ({below:.6f})")
    return v


__all__ = ["end_to_end", "point_row", "framed_loss", "train_width2", "relu_row", "linear_network", "diagonal",
           "relu"]
