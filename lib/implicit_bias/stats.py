"""Summaries over seeds: means with Student-t confidence intervals."""

from __future__ import annotations

import numpy as np
from scipy import stats as _stats


def mean_interval(values, level: float = 0.95) -> tuple[float, float]:
    """``(mean, half-width)`` of the two-sided Student-t interval at ``level`` for the mean
    of ``values`` (independent seeds). One value gives a half-width of ``nan``: no spread
    can be estimated from one seed."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"mean_interval needs a non-empty 1-D list of values, got shape {values.shape}.")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    mean = float(values.mean())
    if len(values) == 1:
        return mean, float("nan")
    sem = values.std(ddof=1) / np.sqrt(len(values))
    return mean, float(_stats.t.ppf(0.5 + level / 2, df=len(values) - 1) * sem)


def by_label(rows, key: str, label: str = "label") -> dict:
    """Group ``rows`` (dicts, e.g. from :func:`train.summary`) by ``label`` into
    ``{label: (mean, half-width)}`` of the column ``key``."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(row[label], []).append(row[key])
    return {name: mean_interval(vals) for name, vals in groups.items()}


__all__ = ["mean_interval", "by_label"]
