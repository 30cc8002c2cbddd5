"""Summaries over seeds: means with Student-t confidence intervals."""

from __future__ import annotations

import numpy as np


def mean_interval(values, level: float = 0.95):
    """``(mean, half-width)`` of the two-sided Student-t interval at ``level`` for the mean
    of ``values`` over independent seeds (axis 0). For a 1-D input both are floats; for
    ``(seeds, steps)`` they are arrays over the steps. One seed gives a half-width of
    ``nan``: no spread can be estimated from one value."""
    values = np.asarray(values, dtype=float)
    if values.ndim not in (1, 2) or len(values) == 0:
        raise ValueError(f"mean_interval needs a non-empty 1-D or 2-D array, got shape {values.shape}.")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    mean = values.mean(axis=0)
    if len(values) == 1:
        half = np.full_like(mean, np.nan)
    else:
        from scipy import stats as _stats

        sem = values.std(axis=0, ddof=1) / np.sqrt(len(values))
        half = _stats.t.ppf(0.5 + level / 2, df=len(values) - 1) * sem
    if values.ndim == 1:
        return float(mean), float(half)
    return mean, half


def by_label(rows, key: str, label: str = "label") -> dict:
    """Group ``rows`` (dicts, e.g. from :func:`train.summary`) by ``label`` into
    ``{label: (mean, half-width)}`` of the column ``key``."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(row[label], []).append(row[key])
    return {name: mean_interval(vals) for name, vals in groups.items()}


__all__ = ["mean_interval", "by_label"]
