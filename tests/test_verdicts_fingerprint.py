"""Chapter 10's verdicts pass on the chapter's kind of runs and fail on mutants: the
weighted-sign optimizer (steepest descent for a weighted ℓ∞ norm) is not named ℓ∞, sign
descent is not named ℓ2, a card with an unconfident problem fails, and so does one with no
problem that could run."""

from __future__ import annotations

import math

import pytest
from implicit_bias import optim
from implicit_bias.fingerprint import Fingerprint, ProblemPrint, WeightedSignDescent, fingerprint
from implicit_bias.verdicts import fingerprint as verdicts


def _card(nearest="linf", confident=True, ratio=0.97):
    ratios = {"l2": 0.7, "linf": 0.5, "l1": 0.4} | {nearest: ratio}
    p = ProblemPrint("binary", {g: 0.9 for g in ratios}, ratios, {g: 0.1 for g in ratios}, nearest, confident,
                     True, False, 1e-4, 0.3, -20.0, True, [] if confident else ["not converged"])
    return Fingerprint("card", {"binary": p}, nearest if confident else None, confident, 0.0, 0, 10)


def test_named_on_cards():
    assert verdicts.named(_card(), "linf")
    assert not verdicts.named(_card(), "l2")  # mutant: the wrong geometry
    v = verdicts.named(_card(confident=False), "linf")  # mutant: not confident
    assert not v and any("not confident" in f for f in v.failures)


def test_named_with_nothing_applicable_fails():
    assert verdicts.named(_card(), "linf")
    p = ProblemPrint("binary", {}, {}, {}, None, False, False, True, math.nan, math.nan, math.nan, False, [],
                     error="ValueError: 2-D parameters only")
    assert not verdicts.named(Fingerprint("x", {"binary": p}, None, False, 0.0, 0, 10), "spectral")


@pytest.fixture(scope="module")
def runs():
    kw = {"problems": ("binary",)}
    return {"sign": fingerprint(lambda p: optim.SignGD(p, lr=0.5), name="SignGD", **kw),
            "mutant": fingerprint(lambda p: WeightedSignDescent(p, lr=0.5), name="weighted sign", **kw)}


def test_named_on_runs(runs):
    assert verdicts.named(runs["sign"], "linf")
    assert not verdicts.named(runs["mutant"], "linf")  # the chapter's mutant
    assert not verdicts.named(runs["sign"], "l2")

