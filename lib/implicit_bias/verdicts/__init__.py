"""Verdicts: each chapter's prediction as a predicate that tests can call.

A chapter's verdict cell measures, then hands the numbers to a predicate from this
package, shows its result and asserts it::

    v = verdicts.steepest.linear(rows, spread)
    v.show("steepest-linear", mutant="SignGD's direction scored as NormalizedGD's")
    assert v, v.failures

``show`` prints the verdict for the reader and glues its record (claim, PASSED/FAILED, the
numbers compared, the mutant that fails it) under its key with myst-nb's ``glue``; the page
"Status of the theorems" (``status.md``, written by ``scripts/status_page.py``) pastes the
records of every chapter into one table. A result no theorem covers is shown with
``v.show_measured(key, scope=...)``: the same record, worded as a measurement ("holds" /
"does not hold"), in its own section of that page, and not asserted.

The same predicate is run in ``tests/test_verdicts_*.py`` on a deliberately wrong input
(a mutant: the wrong optimizer, norm or direction) and must *fail* there: a verdict that
no mutant can fail tests nothing. One module per chapter; the predicates shared by
several chapters live here.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import profile

#: A table row: ``label``, ``seed`` and numbers by column (e.g. :func:`implicit_bias.train.summary`'s).
Row = Mapping[str, Any]


@dataclass
class Verdict:
    """The outcome of one verdict: its claim, the numbers it compared and the failed checks.

    Truthy exactly when every check passed; ``str(v)`` is the claim, the comparisons and the
    failures, wrapped at ``width`` characters (the chapter shows it with :meth:`show`, which
    also glues its :meth:`record` for the status page; the test reads ``failures``)."""

    claim: str
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def require(self, condition: object, message: str) -> bool:
        """Record ``message`` as a failure unless ``condition`` holds (a NaN counts as false)."""
        ok = bool(condition)
        if not ok:
            self.failures.append(message)
        return ok

    def note(self, line: str) -> None:
        """A number the verdict compared, for the reader."""
        self.lines.append(line)

    def __bool__(self) -> bool:
        return not self.failures

    #: ``str(v)`` shows at most this many of the compared numbers (every failure is shown).
    max_lines = 12
    #: ``str(v)`` wraps its lines at this many characters (a page's output box shows 100).
    width = 100
    #: The status page's "numbers compared" cell shows about this many characters of them.
    record_chars = 160

    def __str__(self) -> str:
        return self._text(f"verdict {'PASSED' if self else 'FAILED'}")

    def _text(self, status: str, failed: str = "FAILED") -> str:
        lines = self.lines
        if len(lines) > self.max_lines:
            lines = [*lines[: self.max_lines - 1], f"… and {len(lines) - self.max_lines + 1} more"]
        body = [*lines, *(f"{failed}: {f}" for f in self.failures)]
        out = textwrap.wrap(f"{status}: {self.claim}", self.width, subsequent_indent="    ")
        for line in body:
            out += textwrap.wrap(line, self.width, initial_indent="  ", subsequent_indent="      ") or [""]
        return "\n".join(out)

    def record(self, key: str, mutant: str | None = None, scope: str | None = None) -> dict[str, str | None]:
        """What the status page shows of this verdict, under glue keys ``<key>-<field>``:
        ``claim``, ``status``, ``numbers`` and ``mutant`` (a verdict) or ``scope`` (a
        measurement: why no theorem covers it)."""
        if not KEY.fullmatch(key):
            raise ValueError(f"verdict key {key!r}: use lowercase letters, digits and '-' "
                             "(e.g. 'adam-linear').")
        if (mutant is None) == (scope is None):
            raise ValueError("name the mutant that fails a verdict (mutant=...) or, for a measurement, "
                             "why no theorem covers it (scope=...), not both.")
        failed = "failed" if scope is None else "not so"
        shown = [*(f"{failed}: {f}" for f in self.failures), *self.lines]
        kept = 1 + sum(1 for k in range(2, len(shown) + 1) if len("; ".join(shown[:k])) <= self.record_chars)
        numbers = "; ".join(shown[:kept])
        if len(numbers) > self.record_chars:  # one long line: cut at a word
            numbers = textwrap.shorten(numbers, self.record_chars, placeholder=" …")
        if len(shown) > kept:
            numbers += f"; … and {len(shown) - kept} more in the chapter"
        if scope is None:
            status = "✓ PASSED" if self else "✗ FAILED"
        else:
            status = "holds" if self else "does not hold"
        fields: dict[str, str | None] = {"claim": self.claim, "status": status, "numbers": numbers or "—"}
        fields |= {"mutant": mutant} if scope is None else {"scope": scope}
        return {f"{key}-{name}": value for name, value in fields.items()}

    def show(self, key: str, mutant: str) -> None:
        """Print this verdict for the reader and glue its record under ``key`` for the page
        "Status of the theorems". ``mutant`` names the deliberately wrong input that fails
        it (the one its test in ``tests/test_verdicts_<chapter>.py`` uses), in the chapter's
        words, e.g. ``"SignGD in place of NormalizedGD"``. The cell asserts ``v`` after it."""
        record = self.record(key, mutant=mutant)
        print(self)
        _glue_record(record)

    def show_measured(self, key: str, scope: str) -> None:
        """Print this check as a measurement that no theorem covers, and glue its record under
        ``key`` for the "measured, not proved" section of the status page. ``scope`` says why
        it is not a theorem's prediction (e.g. ``"no theorem covers a 10-class CNN"``). The
        cell does not assert it: "does not hold" is a finding, not a failure."""
        record = self.record(key, scope=scope)
        print(self._text(f"measured, not proved ({'holds' if self else 'does not hold'})", "not so"))
        _glue_record(record)


#: A verdict's key: what the status page names its glued values by.
KEY = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def _glue_record(record: dict[str, str | None]) -> None:
    """Glue a verdict's record; the first one in a kernel also glues ``run-size`` (the status
    page states the size the book was built at)."""
    global _size_glued
    if not _size_glued and glue(record | {"run-size": profile()}):
        _size_glued = True
    else:
        glue(record)


_size_glued = False


def glue(values: Mapping[str, object]) -> bool:
    """Glue each ``name: value`` with myst-nb's ``glue``, hidden, for pages that paste it
    (``{glue:text}`` with ``chapter::name``); returns whether it did. Outside a Jupyter
    kernel, or without myst-nb (Colab), there is no page to paste into and nothing is glued."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    if getattr(get_ipython(), "kernel", None) is None:
        return False
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return False
    for name, value in values.items():
        myst_glue(name, value, display=False)
    return True


def own_norm_wins(rows: Sequence[Row], own: dict[str, str],
                  key: Callable[[str], str] | None = None) -> Verdict:
    """On every seed, the optimizer named after each norm has the largest value of that norm's
    column among the optimizers in ``own`` (``{optimizer label: norm column}``).

    ``rows`` are dicts with ``label``, ``seed`` and one column per norm (e.g. from
    :func:`implicit_bias.train.summary`, raw or function-level margins); ``key(norm)`` maps a
    norm to its column name (default: the norm itself). Every named run must have a positive
    margin (it separated the data)."""
    columns = [key(n) for n in own.values()] if key else list(own.values())
    key = key or (lambda n: n)
    claim = "on every seed, each optimizer has the largest margin in its own norm"
    if columns != list(own.values()):
        claim += f", read from the columns {', '.join(map(str, columns))}"
    v = Verdict(claim)
    seeds = sorted({r["seed"] for r in rows})
    for seed in seeds:
        by_opt = {r["label"]: r for r in rows if r["seed"] == seed and r["label"] in own}
        missing = set(own) - set(by_opt)
        if not v.require(not missing, f"seed {seed}: no run of {sorted(missing)}"):
            continue
        for opt, norm in own.items():
            col = key(norm)
            winner = max(by_opt, key=lambda o: _num(by_opt[o][col]))
            v.note(f"seed {seed}, {col}: {opt} {by_opt[opt][col]:.4g}, "
                   f"best {winner} {by_opt[winner][col]:.4g}")
            v.require(winner == opt, f"seed {seed}: {winner} beats {opt} on its own norm {col}")
            v.require(by_opt[opt][col] > 0, f"seed {seed}: {opt} did not separate the data ({col} ≤ 0)")
    return v


def on_every_seed(per_seed: Mapping[Any, Verdict], name: str = "seed") -> Verdict:
    """One verdict from the same predicate run on each seed (``{seed: Verdict}``; ``name``
    says what the keys are, e.g. ``"draw"`` for data draws): it passes when it passes on
    every one; its numbers and failures are each one's, labelled."""
    if not per_seed:
        raise ValueError(f"on_every_seed needs at least one {name}'s verdict.")
    claims = {v.claim for v in per_seed.values()}
    if len(claims) != 1:
        raise ValueError(f"on_every_seed combines one predicate's verdicts, got claims {sorted(claims)}.")
    v = Verdict(f"on every {name} ({len(per_seed)}): {claims.pop()}")
    for seed, one in per_seed.items():
        v.lines += [f"{name} {seed}: {line}" for line in one.lines]
        v.failures += [f"{name} {seed}: {f}" for f in one.failures]
    return v


def _num(x: float) -> float:
    x = float(x)
    return x if math.isfinite(x) else -math.inf


__all__ = ["Verdict", "glue", "own_norm_wins", "on_every_seed"]
