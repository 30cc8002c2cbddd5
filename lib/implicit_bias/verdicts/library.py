"""The verdict of the library chapter: a user's own norm, trained and certified end to end.

* :func:`rows` — per run: its margin in the user's norm as a fraction of the exact maximum,
  the cosine of its direction to the exact max-margin direction, and its KKT certificate.
* :func:`user_norm` — steepest descent in the user's norm reaches its max margin: near the
  exact margin, a small certificate, and ahead of every other optimizer (the mutant: plain
  normalized GD, whose limit is the ℓ2 solution).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, cast

import numpy as np

from ..kkt import kkt_certificate
from ..margins import normalized_margin
from . import Verdict

if TYPE_CHECKING:
    import torch

    from ..history import History
    from ..maxmargin import MaxMarginSolution
    from ..norms import Norm

#: One data draw's numbers (:func:`rows`): ``{label: {'margin', 'cosine', 'epsilon'}}``.
Draw = Mapping[str, Mapping[str, float]]


def rows(histories: Iterable[History], X: torch.Tensor, y: torch.Tensor, norm: Norm | str,
         exact: MaxMarginSolution, active_tol: float = 0.1) -> dict[str, dict[str, float]]:
    """``{label: {'margin', 'cosine', 'epsilon'}}`` for linear-model ``histories`` against
    ``exact`` (a :class:`maxmargin.MaxMarginSolution` in ``norm``)."""
    out: dict[str, dict[str, float]] = {}
    direction = cast(np.ndarray, exact.direction)  # a linear model's solution: one array
    unit = np.asarray(direction).reshape(-1) / np.linalg.norm(direction)
    for h in histories:
        out[cast(str, h.run.label)] = dict(  # Run sets the label when built
            margin=normalized_margin(h.model, X, y, norm) / exact.margin,
            cosine=float(h.directions[-1] @ unit),
            epsilon=kkt_certificate(h.model, X, y, norm, active_tol=active_tol).epsilon)
    return out


def user_norm(rows: Draw | list[Draw], own: str, margin_min: float = 0.9, eps_max: float = 0.06) -> Verdict:
    """The run ``own`` (steepest descent in the user's norm) reaches ``margin_min`` of the
    exact max margin in that norm with a certificate ε ≤ ``eps_max``, and has the largest
    margin and cosine to the exact direction of all ``rows``. ``rows`` is one :func:`rows`
    dict, or a list of them, one per data draw: then every draw must pass. (Measured at
    1,000 steps on the first three draws: margin ≥ 0.954, ε ≤ 0.025; the mutant normalized
    GD: ε ≥ 0.082.)"""
    draws = rows if isinstance(rows, list) else [rows]
    v = Verdict(f"{own} converges to the max-margin direction of its own norm, ahead of the others"
                + (f", on each of {len(draws)} data draws" if len(draws) > 1 else ""))
    for i, draw in enumerate(draws):
        _check_draw(v, draw, own, margin_min, eps_max, f"draw {i}: " if len(draws) > 1 else "")
    return v


def _check_draw(v: Verdict, rows: Draw, own: str, margin_min: float, eps_max: float, prefix: str) -> None:
    if not v.require(own in rows, f"{prefix}no run labelled {own!r}"):
        return
    for label, r in rows.items():
        need = f" (need ≥ {margin_min} and ε ≤ {eps_max})" if label == own else ""
        v.note(f"{prefix}{label}: margin {r['margin']:.4f} of the maximum, cosine {r['cosine']:.5f}, "
               f"certificate ε = {r['epsilon']:.3g}{need}")
    mine = rows[own]
    v.require(mine["margin"] >= margin_min,
              f"{prefix}{own} reaches only {mine['margin']:.3f} of the max margin")
    v.require(mine["epsilon"] <= eps_max,
              f"{prefix}{own}'s certificate ε = {mine['epsilon']:.3g} > {eps_max}")
    for label, r in rows.items():
        if label != own:
            v.require(mine["margin"] > r["margin"], f"{prefix}{label} has a larger margin than {own}")
            v.require(mine["cosine"] > r["cosine"],
                      f"{prefix}{label} is closer to the exact direction than {own}")


__all__ = ["rows", "user_norm"]
