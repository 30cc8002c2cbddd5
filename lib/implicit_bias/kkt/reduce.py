"""The exact reduction of the certificate program to the span of the data.

For a tensor under a nuclear-norm (or ℓ2) dual, every gradient and θ lie in ``U · Vᵀ``
with U, V bases of the column and row spaces of ``[G_1, …, G_k, Θ]`` and
``[G_1ᵀ, …, G_kᵀ, Θᵀ]``. Projecting v onto that subspace (``v ↦ P_U v P_V``) never
increases ‖·‖_* or the residual and keeps ⟨v, θ⟩, so the optimum has ``v = U c Vᵀ`` and
only the small ``c`` is a variable. Which tensors qualify is the norm's to say
(:meth:`~implicit_bias.norms.Norm.dual_projections`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ..norms import Norm, Shapes, _matrix_shape, _spans

#: The bases ``(U, V)`` that lift a projected tensor back (None: the tensor was kept).
_Bases = tuple[np.ndarray, np.ndarray] | None


def basis(M: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """Orthonormal basis of the column space of M (singular values above ``rtol·max``).
    Dropping the tiny ones is harmless: the certificate is evaluated in the full space."""
    U, sv, _ = np.linalg.svd(M, full_matrices=False)
    return U[:, sv > rtol * sv.max()] if sv.size and sv.max() > 0 else U[:, :0]


def _reduce_tensor(At: np.ndarray, tt: np.ndarray, shape: Sequence[int],
                   kind: str) -> tuple[np.ndarray, np.ndarray, Sequence[int], _Bases]:
    """One tensor's rows of A and θ̂, projected when that is exact and smaller. Returns the
    new rows, the new shape and the bases ``(U, V)`` that lift it back (None: kept)."""
    k = At.shape[1]
    m, n = _matrix_shape(shape) if kind == "spectral" else (1, At.shape[0])
    if kind == "none" or (m == 1 and n <= k + 1) or (m > 1 and min(m, n) <= 1):
        return At, tt, shape, None
    G = np.concatenate([At.T.reshape(k, m, n), tt.reshape(1, m, n)])  # (k+1, m, n)
    U = np.ones((1, 1)) if m == 1 else basis(G.transpose(1, 0, 2).reshape(m, -1))
    V = basis(G.transpose(2, 0, 1).reshape(n, -1))
    if min(U.shape[1], V.shape[1]) == 0 or U.shape[1] * V.shape[1] >= m * n:
        return At, tt, shape, None
    R = np.einsum("mi,kmn,nj->kij", U, G, V)  # (k+1, r1, r2)
    new_shape = (U.shape[1], V.shape[1]) if kind == "spectral" else (V.shape[1],)
    return R[:k].reshape(k, -1).T, R[k].reshape(-1), new_shape, (U, V)


def _lift(v_small: np.ndarray, shapes: Shapes, bases: Sequence[_Bases]) -> np.ndarray:
    out: list[np.ndarray] = []
    start = 0
    for shape, pair in zip(shapes, bases):
        part = v_small[start : start + math.prod(shape)]
        start += math.prod(shape)
        if pair is None:
            out.append(part)
        else:
            U, V = pair
            out.append((U @ part.reshape(U.shape[1], V.shape[1]) @ V.T).reshape(-1))
    return np.concatenate(out)


def reduce_program(norm: Norm, A: np.ndarray, theta_hat: np.ndarray, shapes: Shapes) -> tuple[
        np.ndarray, np.ndarray, list[Sequence[int]], Callable[[np.ndarray], np.ndarray]]:
    """Shrink the program exactly (see the module docstring). Returns the reduced
    ``(A, θ̂, shapes)`` and a function lifting a reduced v back to the full space."""
    parts = [_reduce_tensor(A[a:b], theta_hat[a:b], shape, kind)
             for shape, (a, b), kind in zip(shapes, _spans(shapes), norm.dual_projections(shapes))]
    blocks_A, blocks_t, new_shapes, bases = zip(*parts)
    return (np.concatenate(blocks_A), np.concatenate(blocks_t), list(new_shapes),
            lambda v_small: _lift(v_small, new_shapes, bases))
