"""The moving frame of the loss (Lyu & Li 2019), shared by both engines.

Training differentiates ``e^F L(θ)`` with ``F ≈ −log L`` instead of L, and tells the
optimizer whenever F changes (its gradients and state grow by ``e^{ΔF}``), so training
goes on to losses far below float64's range (1e−300) with the same trajectory as the
plain computation wherever that one is representable.
"""

from __future__ import annotations

import warnings

import numpy as np

#: Re-frame the loss when ``|log L + F|`` exceeds this (so ``e^F L`` stays in [e^-20, e^20]).
SLACK = 20.0

#: The largest rescaling applied at once: ``e^700`` is still a finite float64.
MAX_PIECE = 700.0


def recentre(log_loss: np.ndarray, frames: np.ndarray, rescale) -> np.ndarray:
    """The frames after a step whose loss is ``log_loss`` (one per run): a run whose framed
    loss left ``[e^−SLACK, e^SLACK]`` moves to ``F = −log L``, and ``rescale(ratios)`` is told
    the change (1 for the runs that stay), in pieces of at most ``e^MAX_PIECE`` so that no
    ratio overflows."""
    moved = np.abs(log_loss + frames) > SLACK
    if not moved.any():
        return frames
    shift = np.where(moved, -log_loss - frames, 0.0)
    while np.any(shift != 0):
        piece = np.clip(shift, -MAX_PIECE, MAX_PIECE)
        rescale(np.exp(piece))
        shift = shift - piece
    return np.where(moved, -log_loss, frames)


def warn_underflow(framed_log_terms, limit: float = -700.0) -> None:
    """Warn when a batch's framed loss terms are all below float64's range: its gradient
    (or, for per-sample squares, ``limit = −350``) is then exactly 0."""
    if float(framed_log_terms.detach().max()) < limit:
        warnings.warn(
            "A batch's framed loss is below float64's range (its margins exceed the smallest one "
            "by hundreds): its gradient (or its square) is 0. Harmless for optimizers with a state; a step "
            "normalized per batch would have moved. Use larger batches or a lower learning rate.",
            RuntimeWarning, stacklevel=3)
