"""Chapter 9's verdict: on 2-D data where the loss gradient turns during training, each
normalized steepest descent ends at the exact max-margin direction of its own norm.

* :func:`rows` — per run: the final direction's angle from each exact solution, and how far
  the loss gradient turned between the initialization and the last step;
* :func:`own_norm_direction` — the predicate on those rows.

The turn is what makes the verdict a test of the dynamics: on data with one sample and its
mirror, ``∇L(w) = ℓ'(z·w) z`` points along the same ``z`` at every ``w``, so every step of a
steepest descent is the same vector and the final direction is fixed by the direction map
alone (the turn is 0°). Where the gradient turns, where a run ends depends on which
samples dominate the gradient at each stage of training.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt
import torch

from .. import models
from . import Row, Verdict

if TYPE_CHECKING:
    from ..history import History
    from ..maxmargin import MaxMarginSolution
    from ..runs import Run


def _unit(w: npt.ArrayLike) -> np.ndarray:
    w = np.asarray(w, dtype=float).reshape(-1)
    unit: np.ndarray = w / np.linalg.norm(w)  # numpy's arithmetic is Any to mypy
    return unit


def angle(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """The angle between two vectors, in degrees."""
    return math.degrees(math.acos(float(np.clip(_unit(a) @ _unit(b), -1.0, 1.0))))


def loss_gradient(X: npt.ArrayLike, y: npt.ArrayLike, w: npt.ArrayLike) -> np.ndarray:
    """The gradient of the logistic loss ``Σ_i log(1 + e^{−y_i x_i·w})`` at ``w``, divided by
    its largest sample weight (the direction is exact at any scale of ``w``: no underflow)."""
    Z = np.asarray(y, dtype=float)[:, None] * np.asarray(X, dtype=float)
    log_weights = -np.logaddexp(0.0, Z @ np.asarray(w, dtype=float).reshape(-1))  # log σ(−q_i)
    gradient: np.ndarray = -(np.exp(log_weights - log_weights.max())[:, None] * Z).sum(axis=0)
    return gradient


def initial_weights(run: Run, d: int) -> np.ndarray:
    """The weights a :class:`~implicit_bias.train.Run` of a linear model starts from (its
    seeded initialization)."""
    model = models.build(cast(dict, run.model), d, seed=run.seed)  # a config: a linear model's
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()


def rows(histories: Iterable[History], X: npt.ArrayLike, y: npt.ArrayLike,
         solutions: Mapping[str, MaxMarginSolution]) -> list[dict[str, object]]:
    """One row per history of a linear model: ``° from <norm>`` for every exact solution in
    ``solutions`` (norm name → :func:`implicit_bias.max_margin`'s answer) and ``gradient
    turn °``, the angle between the loss gradients at the run's initialization and at its
    last iterate (``param_norm · direction``: the scale that weighs the samples is the run's
    own)."""
    X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    out: list[dict[str, object]] = []
    for h in histories:
        w_first, w_last = initial_weights(h.run, X.shape[1]), h.param_norm[-1] * h.directions[-1]
        row: dict[str, object] = {"optimizer": h.run.label}
        # a linear model's solutions: one array each (no blocks)
        row.update({f"° from {n}": angle(w_last, cast(np.ndarray, s.direction))
                    for n, s in solutions.items()})
        row["gradient turn °"] = angle(loss_gradient(X, y, w_first), loss_gradient(X, y, w_last))
        out.append(row)
    return out


def own_norm_direction(rows: Sequence[Row], own: Mapping[str, str], max_angle: float = 4.5,
                       min_turn: float = 13.0) -> Verdict:
    """Each optimizer named in ``own`` (label → norm name) ends within ``max_angle`` degrees
    of its own norm's exact solution and nearer to it than to every other solution in the
    rows, and its loss gradient turned by at least ``min_turn`` degrees during the run (so
    the data are not a one-direction case, where every step is the same vector). Measured on
    the "four points" data at 200 steps: at most 2.1° (SignGD), the solutions ≥ 14° apart;
    turns ≥ 26.9° (CoordinateDescent), 0° on one point and its mirror."""
    v = Verdict(f"each normalized steepest descent ends within {max_angle}° of its own norm's max-margin "
                f"direction, nearer to it than to the others, while its gradient turns ≥ {min_turn}°")
    by_label = {r["optimizer"]: r for r in rows}
    for opt, norm in own.items():
        if not v.require(opt in by_label, f"no run labelled {opt}"):
            continue
        r = by_label[opt]
        angles = {k[len("° from "):]: a for k, a in r.items() if k.startswith("° from ")}
        nearest = min(angles, key=lambda k: angles[k])
        v.note(f"{opt}: {angles[norm]:.2f}° from the {norm} solution (need ≤ {max_angle}°; nearest: "
               f"{nearest}, {angles[nearest]:.2f}°); gradient turned {r['gradient turn °']:.1f}° "
               f"(need ≥ {min_turn}°)")
        v.require(angles[norm] <= max_angle,
                  f"{opt}: {angles[norm]:.2f}° from the {norm} solution > {max_angle}°")
        v.require(nearest == norm, f"{opt}: nearer to the {nearest} solution than to its own norm's ({norm})")
        v.require(r["gradient turn °"] >= min_turn,
                  f"{opt}: the loss gradient turned only {r['gradient turn °']:.1f}° < {min_turn}° "
                  "(a one-direction case tests the direction map, not the dynamics)")
    return v


__all__ = ["angle", "loss_gradient", "initial_weights", "rows", "own_norm_direction"]
