"""Which samples each step of a run uses: the batch schemes of ``Run.batch``."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

#: Which samples each step uses: all of them, or batches of ``Run.batch_size`` taken in a
#: fixed cyclic order, drawn uniformly with replacement, or reshuffled every epoch.
BATCH_SCHEMES = ("full", "cyclic", "replacement", "reshuffle")


def batches(scheme: str, n: int, size: int, seed: int = 0) -> Iterator[torch.Tensor]:
    """The indices of the samples of each step, forever: ``'cyclic'`` walks through
    ``0 … n−1`` in order in consecutive batches of ``size``; ``'reshuffle'`` does the same
    through a fresh random permutation every epoch (in both, an epoch visits every sample
    once and its last batch is smaller when ``size`` does not divide ``n``); ``'replacement'``
    draws ``size`` indices uniformly with replacement at every step. Deterministic given
    ``seed`` (its own random stream, independent of the model's initialization)."""
    if scheme not in BATCH_SCHEMES[1:]:
        raise ValueError(f"scheme must be one of {BATCH_SCHEMES[1:]}, got {scheme!r}.")
    if not (isinstance(size, int) and 1 <= size <= n):
        raise ValueError(f"batch_size must be an integer in [1, n = {n}], got {size!r}.")
    rng = np.random.default_rng([int(seed), 0xBA7C4])
    while True:
        if scheme == "replacement":
            yield torch.as_tensor(rng.integers(n, size=size))
            continue
        order = np.arange(n) if scheme == "cyclic" else rng.permutation(n)
        for start in range(0, n, size):
            yield torch.as_tensor(order[start:start + size])


__all__ = ["batches", "BATCH_SCHEMES"]
