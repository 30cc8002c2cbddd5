"""Chapter 10's verdicts: the fingerprint names an optimizer's geometry where a theorem does.

* :func:`named` — a fingerprint names ``want`` with confidence (every applicable linear
  problem confident, the overall geometry ``want``). The chapter asserts it only where a
  theorem states the limit: the library's exact-polar Muon → spectral (steepest descent in
  the spectral norm with momentum; Gronich & Vardi 2026, Tsilivis et al. 2024), Lion
  without weight decay → ℓ∞ (a signed momentum method: steepest ℓ∞ descent with momentum),
  and the calibration set. Its mutants: the weighted-sign optimizer (steepest descent for a
  weighted ℓ∞ norm) against ℓ∞, and any optimizer against another optimizer's geometry.

No verdict is asserted for torch's Adam at ε = 1e-8, AdamW, torch's Newton–Schulz Muon,
SOAP or Prodigy: where their limit depends on the run (the ε hand-over) or no theorem
states it, the chapter reports their fingerprints as measurements.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..fingerprint import COS_MIN, RATIO_MIN, SEPARATION
from . import Verdict

if TYPE_CHECKING:
    from ..fingerprint import Fingerprint


def named(fp: Fingerprint, want: str) -> Verdict:
    """``fp`` (a :class:`implicit_bias.fingerprint.Fingerprint`) names ``want`` with
    confidence: every applicable linear problem confident and the overall geometry ``want``."""
    v = Verdict(f"{fp.name} maximizes the {want} margin (fingerprint, with confidence)")
    linear = [p for k, p in fp.problems.items() if k != "network" and p.applicable]
    v.require(linear, f"{fp.name}: no linear problem of the battery could be run")
    for p in linear:
        ratio = p.margin_ratio.get(p.nearest, float("nan")) if p.nearest else float("nan")
        v.note(f"{p.problem}: nearest {p.nearest} at {ratio:.3f} of its maximum (confident needs "
               f"≥ {RATIO_MIN}, {SEPARATION} above the next, cosine ≥ {COS_MIN} where unique): "
               f"{'confident' if p.confident else 'not confident (' + '; '.join(p.reasons) + ')'}")
    doubtful = [f"{p.problem}: not confident ({'; '.join(p.reasons)})" for p in linear if not p.confident]
    v.require(fp.confident, "; ".join(doubtful) or "the fingerprint is not confident")  # its own reading
    v.require(fp.geometry == want, f"the fingerprint names {fp.geometry}, not {want}")
    return v


__all__ = ["named"]
