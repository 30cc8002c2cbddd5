"""Summaries over seeds: means with Student-t confidence intervals."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike

#: ``(mean, half-width)``: floats for 1-D values, arrays over the steps for 2-D ones.
_Interval = tuple[float, float] | tuple[np.ndarray, np.ndarray]


@overload
def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]: ...


@overload
def mean_interval(values: ArrayLike, level: float = 0.95) -> _Interval: ...


def mean_interval(values: ArrayLike, level: float = 0.95) -> _Interval:
    """``(mean, half-width)`` of the two-sided Student-t interval at ``level`` for the mean
    of ``values`` over independent seeds (axis 0). For a 1-D input both are floats; for
    ``(seeds, steps)`` they are arrays over the steps. One seed gives a half-width of
    ``nan``: no spread can be estimated from one value."""
    array = np.asarray(values, dtype=float)
    if array.ndim not in (1, 2) or len(array) == 0:
        raise ValueError(f"mean_interval needs a non-empty 1-D or 2-D array, got shape {array.shape}.")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    mean = array.mean(axis=0)
    if len(array) == 1:
        half = np.full_like(mean, np.nan)
    else:
        from scipy import stats as _stats

        sem = array.std(axis=0, ddof=1) / np.sqrt(len(array))
        half = _stats.t.ppf(0.5 + level / 2, df=len(array) - 1) * sem
    if array.ndim == 1:
        return float(mean), float(half)
    return mean, half


def by_label(rows: Iterable[Mapping[str, Any]], key: str,
             label: str = "label") -> dict[Hashable, tuple[float, float]]:
    """Group ``rows`` (dicts, e.g. from :func:`train.summary`) by ``label`` into
    ``{label: (mean, half-width)}`` of the column ``key``."""
    groups: dict[Hashable, list[float]] = {}
    for row in rows:
        groups.setdefault(row[label], []).append(row[key])
    return {name: mean_interval(vals) for name, vals in groups.items()}


__all__ = ["mean_interval", "by_label"]
