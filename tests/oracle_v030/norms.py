"""Norms over a list of parameter tensors, with their duals and steepest directions.

Every norm here acts on a *list* of tensors (a model's parameters) and knows

* its value ``norm(xs)``,
* its dual norm ``norm.dual(gs)``,
* its steepest direction ``norm.steepest(gs)``: a ``u`` with ``norm(u) = 1`` and
  ``<u, g> = norm.dual(g)`` (Gunasekar et al. 2018; Tsilivis, Vardi & Kempe 2024),
* a subgradient ``norm.subgradient(xs)``: a ``u`` with ``norm.dual(u) <= 1`` and
  ``<u, x> = norm(x)``.

Optimizers, margins and KKT checks are written once against this interface, so a new
norm gives a new steepest-descent optimizer, margin and certificate at once.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch

from .updates import newton_schulz  # frozen

Tensors = Sequence[torch.Tensor]


def _flat(xs: Tensors) -> torch.Tensor:
    return torch.cat([x.reshape(-1) for x in xs])


def _unflat(v: torch.Tensor, like: Tensors) -> list[torch.Tensor]:
    out, i = [], 0
    for x in like:
        out.append(v[i : i + x.numel()].view_as(x))
        i += x.numel()
    return out


def inner(a: Tensors, b: Tensors) -> torch.Tensor:
    """Euclidean inner product of two lists of tensors."""
    return sum((x * y).sum() for x, y in zip(a, b, strict=True))


def as_matrix(x: torch.Tensor) -> torch.Tensor:
    """The matrix view the spectral norm uses: a vector is a 1×n matrix, a scalar 1×1,
    a tensor with more than two dimensions is flattened to (shape[0], rest)."""
    if x.dim() == 0:
        return x.reshape(1, 1)
    if x.dim() == 1:
        return x.reshape(1, -1)
    return x.reshape(x.shape[0], -1)


def polar_factor(g: torch.Tensor) -> torch.Tensor:
    """Exact polar factor ``U Vᵀ`` of ``g = U Σ Vᵀ`` (reduced SVD), in g's matrix view.

    Singular values that are zero (to rounding) contribute nothing, so a rank-deficient
    ``g`` gets the partial isometry on its range, which is still a steepest direction."""
    return polar_factors(as_matrix(g)).reshape(g.shape)


def polar_factors(m: torch.Tensor) -> torch.Tensor:
    """:func:`polar_factor` of every matrix of a batch ``(…, rows, cols)``, by one batched
    SVD (the batched engine steps K runs' matrices at once)."""
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    if not s.numel():
        return u @ vh
    keep = (s > s.amax(dim=-1, keepdim=True) * m.shape[-1] * torch.finfo(m.dtype).eps).to(m.dtype)
    return (u * keep.unsqueeze(-2)) @ vh


class Norm(abc.ABC):
    """Base class. Subclasses implement ``__call__``, ``dual``, ``steepest`` and
    ``subgradient`` on lists of tensors; ``check`` validates the shapes."""

    name = "norm"

    def check(self, xs: Tensors) -> None:
        if len(xs) == 0:
            raise ValueError(f"{self.name}: got an empty list of tensors.")

    @abc.abstractmethod
    def __call__(self, xs: Tensors) -> torch.Tensor:
        """See the module docstring."""

    @abc.abstractmethod
    def dual(self, gs: Tensors) -> torch.Tensor:
        """See the module docstring."""

    @abc.abstractmethod
    def steepest(self, gs: Tensors) -> list[torch.Tensor]:
        """See the module docstring."""

    @abc.abstractmethod
    def subgradient(self, xs: Tensors) -> list[torch.Tensor]:
        """See the module docstring."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class L2(Norm):
    """Euclidean norm of all parameters together; self-dual. Steepest: ``g/‖g‖₂``."""

    name = "l2"

    def __call__(self, xs):
        self.check(xs)
        flat = _flat(xs)
        # torch sums raw squares: a float32 vector of entries ~1e-23 would have norm 0.
        scale = flat.abs().max()
        return scale * (flat / scale).norm() if scale > 0 else scale

    def dual(self, gs):
        return self(gs)

    def steepest(self, gs):
        n = self(gs)
        return [g / n if n > 0 else torch.zeros_like(g) for g in gs]

    def subgradient(self, xs):
        return self.steepest(xs)


class Linf(Norm):
    """Max-abs norm; dual ℓ1. Steepest: ``sign(g)`` (sign descent)."""

    name = "linf"

    def __call__(self, xs):
        self.check(xs)
        return _flat(xs).abs().max()

    def dual(self, gs):
        self.check(gs)
        return _flat(gs).abs().sum()

    def steepest(self, gs):
        return [torch.sign(g) for g in gs]

    def subgradient(self, xs):
        # sign(x_j) e_j at one coordinate attaining the max.
        v = _flat(xs)
        u = torch.zeros_like(v)
        j = v.abs().argmax()
        u[j] = torch.sign(v[j])
        return _unflat(u, xs)


class L1(Norm):
    """Sum-abs norm; dual ℓ∞. Steepest: ``sign(g_j) e_j`` at the largest ``|g_j|``
    (coordinate descent)."""

    name = "l1"

    def __call__(self, xs):
        self.check(xs)
        return _flat(xs).abs().sum()

    def dual(self, gs):
        self.check(gs)
        return _flat(gs).abs().max()

    def steepest(self, gs):
        return Linf.subgradient(self, gs)

    def subgradient(self, xs):
        return [torch.sign(x) for x in xs]


class Spectral(Norm):
    """Max over tensors of the spectral norm of each tensor's matrix view (``as_matrix``);
    dual: the sum of nuclear norms. Steepest: the polar factor of every tensor — Muon's
    direction (Gronich & Vardi 2026, Cor 3.4). A vector counts as a 1×n matrix, so its
    spectral norm is its ℓ2 norm."""

    name = "spectral"

    def __init__(self, polar: str = "svd", ns_steps: int = 5, ns_dtype: torch.dtype | None = None):
        if polar not in ("svd", "newton_schulz"):
            raise ValueError(f"Spectral: polar must be 'svd' or 'newton_schulz', got {polar!r}.")
        self.polar, self.ns_steps, self.ns_dtype = polar, ns_steps, ns_dtype

    def check(self, xs):
        super().check(xs)
        for x in xs:
            if x.dim() > 2:
                raise ValueError(
                    f"Spectral: got a tensor of shape {tuple(x.shape)}; this norm takes "
                    "matrices and vectors. Reshape the parameter to 2-D first."
                )

    def __repr__(self):
        return "Spectral()" if self.polar == "svd" else f"Spectral(polar={self.polar!r})"

    def _per_tensor(self, xs):
        return torch.stack([torch.linalg.matrix_norm(as_matrix(x), ord=2) for x in xs])

    def __call__(self, xs):
        self.check(xs)
        return self._per_tensor(xs).max()

    def dual(self, gs):
        self.check(gs)
        return sum(torch.linalg.matrix_norm(as_matrix(g), ord="nuc") for g in gs)

    def steepest(self, gs):
        self.check(gs)
        if self.polar == "newton_schulz":
            # Approximate: not unit-norm, see updates.newton_schulz.
            return [
                newton_schulz(as_matrix(g), self.ns_steps, dtype=self.ns_dtype).reshape(g.shape)
                for g in gs
            ]
        return [polar_factor(g) for g in gs]

    def subgradient(self, xs):
        # u₁v₁ᵀ of one tensor attaining the max, zero elsewhere.
        self.check(xs)
        k = int(self._per_tensor(xs).argmax())
        out = [torch.zeros_like(x) for x in xs]
        u, _, vh = torch.linalg.svd(as_matrix(xs[k]), full_matrices=False)
        out[k] = torch.outer(u[:, 0], vh[0]).reshape(xs[k].shape)
        return out


class MaxNorm(Norm):
    """Weighted max of norms over blocks of tensors: ``‖θ‖ = max_k w_k ‖θ_{B_k}‖_k``.

    ``blocks`` is a list of ``(norm, indices, weight)``; the indices (positions in the
    parameter list) of all blocks must partition the list. Dual: ``Σ_k ‖g_{B_k}‖_{k*} / w_k``.
    Steepest: each block's own steepest direction divided by its weight. This covers the
    hybrid norm ``max{r‖W‖_msp, ‖u‖_∞}`` of Muon-Signum and Muon-Adam (Gronich & Vardi
    2026, Cor 3.5 and Thm 3.7); see :func:`hybrid`.
    """

    name = "max"

    def __init__(self, blocks, name: str | None = None):
        if not blocks:
            raise ValueError("MaxNorm needs at least one block (norm, indices, weight).")
        self.blocks = []
        for norm, idx, w in blocks:
            if not isinstance(norm, Norm):
                raise TypeError(f"MaxNorm: {norm!r} is not a Norm.")
            if not w > 0:
                raise ValueError(f"MaxNorm: block weights must be positive, got {w}.")
            self.blocks.append((norm, [int(i) for i in idx], float(w)))
        self.size = sum(len(idx) for _, idx, _ in self.blocks)
        if sorted(i for _, idx, _ in self.blocks for i in idx) != list(range(self.size)):
            raise ValueError(
                "MaxNorm: the block indices must partition 0..n-1 (each parameter in "
                "exactly one block)."
            )
        if name:
            self.name = name

    def check(self, xs):
        super().check(xs)
        if len(xs) != self.size:
            raise ValueError(
                f"{self.name}: built for {self.size} tensors but got {len(xs)}; build the "
                "norm for this model's parameter list."
            )

    def _split(self, xs):
        return [(norm, idx, w, [xs[i] for i in idx]) for norm, idx, w in self.blocks]

    def __call__(self, xs):
        self.check(xs)
        return torch.stack([w * norm(part) for norm, _, w, part in self._split(xs)]).max()

    def dual(self, gs):
        self.check(gs)
        return sum(norm.dual(part) / w for norm, _, w, part in self._split(gs))

    def steepest(self, gs):
        self.check(gs)
        out = [None] * len(gs)
        for norm, idx, w, part in self._split(gs):
            for i, u in zip(idx, norm.steepest(part)):
                out[i] = u / w
        return out

    def subgradient(self, xs):
        self.check(xs)
        parts = self._split(xs)
        k = int(torch.stack([w * norm(p) for norm, _, w, p in parts]).argmax())
        out = [torch.zeros_like(x) for x in xs]
        norm, idx, w, part = parts[k]
        for i, u in zip(idx, norm.subgradient(part)):
            out[i] = w * u
        return out

    def __repr__(self):
        inner_ = ", ".join(f"({n!r}, {idx}, {w:g})" for n, idx, w in self.blocks)
        return f"MaxNorm([{inner_}])"


def matrix_indices(params: Tensors) -> tuple[list[int], list[int]]:
    """Positions of the matrix parameters (≥ 2-D) and of the others (vectors, scalars).

    This is the split the hybrid optimizers use: Muon on matrices, Signum/Adam on the rest.
    """
    mats = [i for i, p in enumerate(params) if p.dim() >= 2]
    rest = [i for i, p in enumerate(params) if p.dim() < 2]
    return mats, rest


def hybrid(params: Tensors, r: float = 1.0) -> MaxNorm:
    """The hybrid norm ``max{r·‖W‖_msp, ‖u‖_∞}`` over a parameter list: max-spectral on
    the matrices ``W``, ℓ∞ on the other parameters ``u``. For Muon-Adam with base rates
    ``η^M_0, η^A_0`` the theorem's ratio is ``r = η^A_0 / η^M_0``."""
    mats, rest = matrix_indices(params)
    blocks = []
    if mats:
        blocks.append((Spectral(), mats, r))
    if rest:
        blocks.append((Linf(), rest, 1.0))
    return MaxNorm(blocks, name="hybrid" if r == 1 else f"hybrid(r={r:g})")


def by_name(name: str, params: Tensors | None = None) -> Norm:
    """A norm from its name: ``l2``, ``linf``, ``l1``, ``spectral`` (max-spectral), or
    ``hybrid`` (needs ``params`` for the matrix/other split)."""
    simple = {"l2": L2, "linf": Linf, "l1": L1, "spectral": Spectral, "msp": Spectral}
    if name in simple:
        return simple[name]()
    if name == "hybrid":
        if params is None:
            raise ValueError("by_name('hybrid') needs the parameter list to split it.")
        return hybrid(params)
    raise ValueError(f"Unknown norm {name!r}; choose one of {sorted(simple) + ['hybrid']}.")
