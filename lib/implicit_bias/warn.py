"""Warnings from many runs, aggregated: one line per kind, with its count and the runs.

A sweep of hundreds of runs that all leave Adam's regime would print the same warning
hundreds of times, burying the progress bar and anything else. Inside
:func:`aggregate_warnings` warnings are collected; on leaving, each kind (its category and
its message with the run's label and the numbers left out) is warned once: unchanged when
it came once, else as ``"<count> times (runs 'Adam' ×10, 'Signum' ×2): <first message>"``.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections import Counter
from contextlib import contextmanager

#: A run's label in a message: ``Run 'Adam': …`` or ``run 'Adam' (seed 3) …``.
_LABEL = re.compile(r"\b[Rr]un '([^']*)'")
_NUMBER = re.compile(r"[-+]?\d[\d.,]*(?:e[-+]?\d+)?")

#: Labels named in an aggregated line; the rest are counted.
SHOWN = 6


def kind(message: str) -> str:
    """What warnings of one kind share: the message without its run label and numbers."""
    return _NUMBER.sub("#", _LABEL.sub("run …", message))


def _label(message: str) -> str | None:
    found = _LABEL.search(message)
    return found.group(1) if found else None


def summary(count: int, labels: Counter, first: str) -> str:
    """The aggregated message of ``count`` warnings of one kind, the first being ``first``."""
    if count == 1:
        return first
    named = ", ".join(f"{label!r} ×{k}" if k > 1 else repr(label) for label, k in labels.most_common(SHOWN))
    more = len(labels) - SHOWN
    runs = f" (runs {named}{f' and {more} more' if more > 0 else ''})" if labels else ""
    return f"{count} times{runs}: {first}"


@contextmanager
def aggregate_warnings():
    """Collect the warnings raised inside, then warn each kind once (see the module
    docstring), at the place the first of its kind came from, so filters still apply. The
    warnings come out also when the body raises (they may explain why)."""
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # count every one; the filters apply when re-warned
            yield
    finally:
        _rewarn(caught)


def _rewarn(caught) -> None:
    groups: dict = {}
    for w in caught:
        groups.setdefault((w.category, kind(str(w.message))), []).append(w)
    for (category, _), ws in groups.items():
        labels = Counter(label for w in ws if (label := _label(str(w.message))) is not None)
        first = ws[0]
        warnings.warn_explicit(summary(len(ws), labels, str(first.message)), category, first.filename,
                               first.lineno, module=_module_of(first.filename))


def _module_of(filename: str) -> str | None:
    """The name of the module at ``filename`` (what a filter's ``module=`` matches), as
    ``warnings.warn`` would have named it."""
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == filename:
            return name
    return None


__all__ = ["aggregate_warnings", "kind", "summary"]
