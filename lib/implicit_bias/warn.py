"""Warnings from many runs, aggregated: one line per kind, with its count and the runs.

A sweep of hundreds of runs that all leave Adam's regime would print the same warning
hundreds of times, burying the progress bar and anything else. Inside
:func:`aggregate_warnings` warnings are collected; on leaving, each kind (its category and
its message with the run's label and the numbers left out, or, for a message that names no
run, the message itself) is warned once: unchanged when
it came once, else as ``"<first message> [<count> times: runs 'Adam' ×10, 'Signum' ×2]"``: the
message still begins as it did, so a filter on its start (``filterwarnings(message=...)``)
still catches it.
"""

from __future__ import annotations

import functools
import re
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

#: A run's label in a message: ``Run 'Adam': …`` or ``run 'Adam' (seed 3) …``.
_LABEL = re.compile(r"\b[Rr]un '([^']*)'")
_NUMBER = re.compile(r"[-+]?\d[\d.,]*(?:e[-+]?\d+)?")

#: Labels named in an aggregated line; the rest are counted.
SHOWN = 6


@dataclass
class _Group:
    """Warnings of one kind so far: how many, the runs they named (counted), and the first
    one's message, filename and line number."""

    first: tuple[str, str, int]
    count: int = 0
    labels: Counter[str] = field(default_factory=Counter)


#: (category, kind) -> the warnings of that kind so far.
_Groups = dict[tuple[type[Warning], str], _Group]


def user_stacklevel() -> int:
    """The ``stacklevel`` at which ``warnings.warn`` points at the user's line: the first
    frame, counted from the caller of this function, outside this library and torch (the
    optimizer's ``step`` goes through torch's wrappers, whose depth torch may change)."""
    import torch

    ours = (str(Path(__file__).parent), str(Path(torch.__file__).parent))
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(ours):
        frame, level = frame.f_back, level + 1
    return level


def kind(message: str) -> str:
    """What warnings of one kind share: for a message that names a run, the message without
    its run label and numbers (the same warning about other runs); for any other, the whole
    message (warnings that differ in a setting, e.g. two β's, stay apart)."""
    if _LABEL.search(message) is None:
        return message
    return _NUMBER.sub("#", _LABEL.sub("run …", message))


def _label(message: str) -> str | None:
    found = _LABEL.search(message)
    return found.group(1) if found else None


def summary(count: int, labels: Counter[str], first: str) -> str:
    """The aggregated message of ``count`` warnings of one kind, the first being ``first``."""
    if count == 1:
        return first
    named = ", ".join(f"{label!r} ×{k}" if k > 1 else repr(label) for label, k in labels.most_common(SHOWN))
    more = len(labels) - SHOWN
    runs = f": runs {named}{f' and {more} more' if more > 0 else ''}" if labels else ""
    return f"{first} [{count} times{runs}]"


@contextmanager
def aggregate_warnings() -> Iterator[None]:
    """Collect the warnings raised inside, then warn each kind once (see the module
    docstring), at the place the first of its kind came from, so filters still apply. The
    warnings come out also when the body raises (they may explain why). Each is counted as
    it comes, not kept: a warning raised at every step of a long sweep costs no memory."""
    groups: _Groups = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # count every one; the filters apply when re-warned
            warnings.showwarning = functools.partial(_collect, groups)  # restored on leaving
            yield
    finally:
        _rewarn(groups)


def _collect(groups: _Groups, message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
    text = str(message)
    group = groups.setdefault((category, kind(text)), _Group((text, filename, lineno)))
    group.count += 1
    label = _label(text)
    if label is not None:
        group.labels[label] += 1


def _rewarn(groups: _Groups) -> None:
    for (category, _), group in groups.items():
        first, filename, lineno = group.first
        warnings.warn_explicit(summary(group.count, group.labels, first), category, filename, lineno,
                               module=_module_of(filename))


def _module_of(filename: str) -> str:
    """The name of the module at ``filename`` (what a filter's ``module=`` matches), as
    ``warnings.warn`` would have named it: a file that is no imported module's (a notebook
    cell, a script, stdin) runs as ``__main__``. (``warn_explicit`` without a module drops a
    warning from such a file: a notebook would never see it.)"""
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == filename:
            return name
    return "__main__"


__all__ = ["aggregate_warnings", "kind", "summary"]
