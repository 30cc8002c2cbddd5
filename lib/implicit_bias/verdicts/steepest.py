"""Chapter 2's verdicts: normalized steepest descent maximizes the margin of its own norm.

* :func:`linear` — on linear separable data each optimizer's final direction is the exact
  max-margin solution of its own norm (a cosine test when that solution is unique, a
  margin test when it is not); its input comes from :func:`linear_rows`.
* the network verdict is the shared :func:`implicit_bias.verdicts.own_norm_wins` (on every
  seed each optimizer wins its own norm's column), run on raw and on function-level margins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt

from ..maxmargin import norm_value
from . import Row, Verdict

if TYPE_CHECKING:
    from ..maxmargin import MaxMarginSolution


def _unit(w: npt.ArrayLike) -> np.ndarray:
    w = np.asarray(w, dtype=float).reshape(-1)
    unit: np.ndarray = w / np.linalg.norm(w)  # numpy's arithmetic is Any to mypy
    return unit


def linear_rows(directions: Mapping[str, npt.ArrayLike], own: Mapping[str, str],
                solutions: Mapping[str, MaxMarginSolution], X: npt.ArrayLike,
                y: npt.ArrayLike) -> list[dict[str, object]]:
    """One row per optimizer of a linear model: its own norm, its normalized margin in that
    norm as a fraction of the maximum, and its cosine with every exact solution.

    ``directions`` maps an optimizer label to its final weight vector (any scale),
    ``own`` a label to its norm's name, ``solutions`` a norm name to
    :func:`implicit_bias.max_margin`'s answer."""
    Z = np.asarray(y, dtype=float)[:, None] * np.asarray(X, dtype=float)
    rows: list[dict[str, object]] = []
    for label, w in directions.items():
        w = np.asarray(w, dtype=float).reshape(-1)
        norm = own[label]
        margin = float((Z @ w).min()) / norm_value(w, norm)
        row: dict[str, object] = {"optimizer": label, "own norm": norm,
                                  "margin / max": margin / solutions[norm].margin}
        # a linear model's solutions: one array each (no blocks)
        row.update({f"cos {n}": float(_unit(w) @ _unit(cast(np.ndarray, s.direction)))
                    for n, s in solutions.items()})
        rows.append(row)
    return rows


def linear(rows: Sequence[Row], spreads: Mapping[str, float], cos_min: float = 0.99, margin_min: float = 0.99,
           unique: float = 1e-2) -> Verdict:
    """Each optimizer converged to the max-margin direction of its own norm.

    Where that norm's solution is unique (``spreads[norm] < unique``, see
    :func:`implicit_bias.maxmargin.solution_spread`) the final direction must have cosine
    ``≥ cos_min`` with it *and* a larger cosine with it than with any other norm's
    solution; where it is not, the normalized margin in the own norm must be
    ``≥ margin_min`` of the maximum (a cosine with one solver's answer would test
    nothing). ``rows`` come from :func:`linear_rows`."""
    v = Verdict("each optimizer's direction converges to the max-margin solution of its own norm")
    norms = [k[4:] for k in rows[0] if k.startswith("cos ")]
    for row in rows:
        opt, own = row["optimizer"], row["own norm"]
        cos_own = row[f"cos {own}"]
        if spreads[own] < unique:
            best = max(norms, key=lambda n: row[f"cos {n}"])
            v.note(f"{opt}: cos with the {own} solution {cos_own:.4f} (need ≥ {cos_min}); "
                   f"closest solution {best} ({row[f'cos {best}']:.4f})")
            v.require(cos_own >= cos_min, f"{opt}: cosine {cos_own:.4f} with the {own} solution < {cos_min}")
            v.require(best == own, f"{opt}: closer to the {best} solution than to its own norm's ({own})")
        else:
            v.note(f"{opt}: {own} solution not unique (spread {spreads[own]:.2g}); "
                   f"margin / max {row['margin / max']:.4f} (need ≥ {margin_min})")
            v.require(row["margin / max"] >= margin_min,
                      f"{opt}: {own} margin is {row['margin / max']:.4f} of the maximum < {margin_min}")
    return v


__all__ = ["linear_rows", "linear"]
