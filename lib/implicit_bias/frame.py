"""The moving frame of the loss (Lyu & Li 2019), shared by both engines.

Training differentiates ``e^F L(θ)`` with ``F ≈ −log L`` instead of L, and tells the
optimizer whenever F changes (its gradients and state grow by ``e^{ΔF}``), so training
goes on to losses far below float64's range (1e−300) with the same trajectory as the
plain computation wherever that one is representable.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .history import RunFailed
from .runs import Run, describe

#: Re-frame the loss when ``|log L + F|`` exceeds this (so ``e^F L`` stays in [e^-20, e^20]).
SLACK = 20.0

#: The largest factor :func:`in_pieces` hands to a ``rescale_gradients(ratio)`` at once:
#: ``e^700`` is still a finite float64.
MAX_PIECE = 700.0


def recentre(log_loss: np.ndarray, frames: np.ndarray, reframe: Callable[[np.ndarray], object]) -> np.ndarray:
    """The frames after a step whose loss is ``log_loss`` (one per run): a run whose framed
    loss left ``[e^−SLACK, e^SLACK]`` moves to ``F = −log L``, and ``reframe(deltas)`` is
    told by how much each frame moved (0 for the runs that stay), in one call however far."""
    moved = np.abs(log_loss + frames) > SLACK
    if not moved.any():
        return frames
    reframe(np.where(moved, -log_loss - frames, 0.0))
    return np.where(moved, -log_loss, frames)


def step_frames(log_loss: np.ndarray, frames: np.ndarray, reframe: Callable[[np.ndarray], object],
                runs: Sequence[Run], t: int, frame: bool = True) -> np.ndarray:
    """One step's loss check and frame, the same in the reference loop and the batched
    engine: the first of ``runs`` (in the order of ``log_loss``) whose log-loss is not
    finite fails with :class:`RunFailed`, naming the run and the step; then, with ``frame``,
    the frames move as :func:`recentre` moves them. Returns the frames (``frames`` itself
    when none moved)."""
    bad = np.flatnonzero(~np.isfinite(log_loss))
    if len(bad):
        run = runs[int(bad[0])]
        raise RunFailed(run, f"{describe(run)}: the loss became {log_loss[bad[0]]} at step {t} (the "
                             "parameters left the float range); lower the learning rate.")
    return recentre(log_loss, frames, reframe) if frame else frames


def in_pieces(rescale_gradients: Callable[[float], object]) -> Callable[[float], None]:
    """A ``reframe(delta)`` for an optimizer that only has ``rescale_gradients(ratio)`` (a
    user's): the factor ``e^delta`` in pieces of at most ``e^MAX_PIECE``."""

    def reframe(delta: float) -> None:
        while delta:
            piece = max(-MAX_PIECE, min(MAX_PIECE, delta))
            rescale_gradients(math.exp(piece))
            delta -= piece

    return reframe


def warn_underflow(framed_log_terms: torch.Tensor, limit: float = -700.0) -> None:
    """Warn when a batch's framed loss terms are all below float64's range: its gradient
    (or, for per-sample squares, ``limit = −350``) is then exactly 0."""
    if float(framed_log_terms.detach().max()) < limit:
        warnings.warn(
            "A batch's framed loss is below float64's range (its margins exceed the smallest one "
            "by hundreds): its gradient (or its square) is 0. Harmless for optimizers with a state; a step "
            "normalized per batch would have moved. Use larger batches or a lower learning rate.",
            RuntimeWarning, stacklevel=3)
