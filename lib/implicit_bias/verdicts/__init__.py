"""Verdicts: each chapter's prediction as a predicate that tests can call.

A chapter's verdict cell measures, then hands the numbers to a predicate from this
package and asserts its result::

    v = verdicts.steepest.network(rows, own={"NormalizedGD": "l2", ...})
    print(v)
    assert v, v.failures

The same predicate is run in ``tests/test_verdicts_*.py`` on a deliberately wrong input
(a mutant: the wrong optimizer, norm or direction) and must *fail* there: a verdict that
no mutant can fail tests nothing. One module per chapter; the predicates shared by
several chapters live here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Verdict:
    """The outcome of one verdict: its claim, the numbers it compared and the failed checks.

    Truthy exactly when every check passed; ``str(v)`` prints the comparisons and the
    failures (the chapter prints it, the test reads ``failures``)."""

    claim: str
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def require(self, condition, message: str) -> bool:
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

    def __str__(self) -> str:
        head = f"verdict {'PASSED' if self else 'FAILED'}: {self.claim}"
        lines = self.lines
        if len(lines) > self.max_lines:
            lines = [*lines[: self.max_lines - 1], f"… and {len(lines) - self.max_lines + 1} more"]
        body = [*lines, *(f"FAILED: {f}" for f in self.failures)]
        return "\n".join([head, *("  " + line for line in body)])


def own_norm_wins(rows, own: dict, key=None) -> Verdict:
    """On every seed, the optimizer named after each norm has the largest value of that norm's
    column among the optimizers in ``own`` (``{optimizer label: norm column}``).

    ``rows`` are dicts with ``label``, ``seed`` and one column per norm (e.g. from
    :func:`implicit_bias.train.summary`, raw or function-level margins); ``key(norm)`` maps a
    norm to its column name (default: the norm itself). Every named run must have a positive
    margin (it separated the data)."""
    key = key or (lambda n: n)
    v = Verdict("on every seed, each optimizer has the largest margin in its own norm")
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


def _num(x) -> float:
    x = float(x)
    return x if math.isfinite(x) else -math.inf


__all__ = ["Verdict", "own_norm_wins"]
