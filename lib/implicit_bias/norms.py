"""Norms over a list of parameter tensors, with their duals and steepest directions.

Every norm here acts on a *list* of tensors (a model's parameters) and knows

* its value ``norm(xs)``,
* its dual norm ``norm.dual(gs)``,
* its steepest direction ``norm.steepest(gs)``: a ``u`` with ``norm(u) = 1`` and
  ``<u, g> = norm.dual(g)`` (Gunasekar et al. 2018; Tsilivis, Vardi & Kempe 2024),
* a subgradient ``norm.subgradient(xs)``: a ``u`` with ``norm.dual(u) <= 1`` and
  ``<u, x> = norm(x)``,
* its cvxpy expressions ``norm.value_expr`` and ``norm.dual_expr`` (max-margin problems and
  KKT certificates; cvxpy is imported only when they are called), its ``label`` for
  figures and its ``name``, under which :func:`register` makes it known.

Optimizers, margins, KKT checks, max-margin solvers and figures are written once against
this interface, so a new norm (one subclass, registered by name) gives a new
steepest-descent optimizer, margin, certificate and max-margin solver at once.
"""

from __future__ import annotations

import abc
import math
import numbers
import types
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias, cast, overload

import numpy as np
import numpy.typing as npt
import torch

from . import registry

Tensors = Sequence[torch.Tensor]
#: The shapes of a parameter list, as ``value_expr``/``dual_expr`` take them.
Shapes = Sequence[Sequence[int]]
#: A cvxpy expression: cvxpy ships no type hints, so it is Any to mypy.
Expr: TypeAlias = Any
#: What :func:`register` takes: a Norm subclass built with no arguments, or a function of
#: the parameter list (None when the caller has none) returning a Norm.
NormFactory = type["Norm"] | Callable[[Tensors | None], "Norm"]

#: Newton–Schulz quintic coefficients of Keller Jordan's Muon (and ``torch.optim.Muon``).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def _flat(xs: Tensors) -> torch.Tensor:
    return torch.cat([x.reshape(-1) for x in xs])


def _unflat(v: torch.Tensor, like: Tensors) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    i = 0
    for x in like:
        out.append(v[i : i + x.numel()].view_as(x))
        i += x.numel()
    return out


def inner(a: Tensors, b: Tensors) -> torch.Tensor:
    """Euclidean inner product of two lists of tensors."""
    return cast(torch.Tensor, sum((x * y).sum() for x, y in zip(a, b, strict=True)))


def as_matrix(x: torch.Tensor) -> torch.Tensor:
    """The matrix view of the whole Muon family and the spectral norm: a vector is a 1×n
    matrix, a scalar 1×1, and a tensor with more than two dimensions (a convolution
    kernel ``(out, in, kh, kw)``) is flattened to ``(shape[0], rest)``, the rule of
    Keller Jordan's Muon."""
    return as_matrices(x.unsqueeze(0))[0]


def as_matrices(x: torch.Tensor) -> torch.Tensor:
    """:func:`as_matrix` of every run of a stacked tensor ``(K, …)``: ``(K, rows, cols)``."""
    if x.dim() == 1:
        return x.reshape(-1, 1, 1)
    if x.dim() == 2:
        return x.reshape(x.shape[0], 1, -1)
    return x.reshape(x.shape[0], x.shape[1], -1)


@overload
def _one_run(fn: Callable[[Tensors], torch.Tensor], xs: Tensors) -> torch.Tensor: ...
@overload
def _one_run(fn: Callable[[Tensors], list[torch.Tensor]], xs: Tensors) -> list[torch.Tensor]: ...
def _one_run(fn: Callable[[Tensors], torch.Tensor | list[torch.Tensor]],
             xs: Tensors) -> torch.Tensor | list[torch.Tensor]:
    """A stacked method ``fn`` (runs along dimension 0) applied to one unstacked list: the
    K = 1 case, so that each norm's maths is written once."""
    out = fn([x.unsqueeze(0) for x in xs])
    return out[0] if torch.is_tensor(out) else [u[0] for u in out]


def newton_schulz(g: torch.Tensor, steps: int = 5,
                  coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                  eps: float = 1e-7, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Approximate polar factor of every matrix of a batch ``(…, rows, cols)`` (or of one
    matrix) by the quintic Newton–Schulz iteration of Muon.

    Returns roughly ``U S' Vᵀ`` with ``S'`` in about [0.5, 1.5], *not* ``U Vᵀ``: fine for
    training speed, not for theory (use the exact :func:`polar_factor`). ``dtype`` lets
    it run in bfloat16 like ``torch.optim.Muon``.
    """
    if g.dim() < 2:
        raise ValueError(f"newton_schulz takes matrices, got shape {tuple(g.shape)}.")
    a, b, c = coefficients
    x = g.reshape(-1, *g.shape[-2:]).to(dtype or g.dtype)
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT
    x = x / torch.linalg.matrix_norm(x).clamp(min=eps)[:, None, None]
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    if tall:
        x = x.mT
    return x.to(g.dtype).reshape(g.shape)


def polar_factor(g: torch.Tensor) -> torch.Tensor:
    """Exact polar factor ``U Vᵀ`` of ``g = U Σ Vᵀ`` (reduced SVD), in g's matrix view.

    Singular values that are zero (to rounding) contribute nothing, so a rank-deficient
    ``g`` gets the partial isometry on its range, which is still a steepest direction."""
    return polar_factors(as_matrix(g)).reshape(g.shape)


def _svd(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reduced SVD ``(U, S, Vᴴ)`` of every matrix of a batch (torch.linalg has no type
    hints: this gives its result one)."""
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    return u, s, vh


def polar_factors(m: torch.Tensor) -> torch.Tensor:
    """:func:`polar_factor` of every matrix of a batch ``(…, rows, cols)``, by one batched
    SVD (the batched engine steps K runs' matrices at once)."""
    u, s, vh = _svd(m)
    if not s.numel():
        return u @ vh
    keep = (s > s.amax(dim=-1, keepdim=True) * m.shape[-1] * torch.finfo(m.dtype).eps).to(m.dtype)
    return (u * keep.unsqueeze(-2)) @ vh


class Norm(abc.ABC):
    """Base class. Subclasses implement ``__call__``, ``dual``, ``steepest`` and
    ``subgradient`` on lists of tensors (that is enough to train and measure margins);
    ``dual_expr`` adds KKT certificates and ``value_expr`` max-margin problems. ``check``
    validates the shapes; :func:`register` makes the norm known by its ``name``."""

    name = "norm"  # the registered name (see register); certificates and solutions report it
    label: str | None = None  # LaTeX label for figures; None: the name
    #: p when this is the ℓp norm of all parameters flattened together: kkt's ℓ2 and ℓ∞
    #: fast paths key on it. None for every other norm.
    lp: float | None = None
    #: A strictly convex norm has one max-margin direction (maxmargin.solution_spread).
    strictly_convex = False
    #: Dimensions of the weight of the linear model max_margin solves for: 1 for vectors,
    #: 2 for a matrix norm (matrix inputs ``(n, a, b)``, predictor ``⟨W, x⟩``).
    max_margin_ndim = 1

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

    def steepest_stacked(self, gs: Tensors) -> list[torch.Tensor]:
        """:meth:`steepest` of every run of a stacked list (each tensor ``(K, …)``), as the
        batched engine and the optimizers call it. This default steps run by run, so a
        user's norm needs only the four methods above; the built-in norms override it
        with one batched computation (and their :meth:`steepest` is its K = 1 case)."""
        return _per_run(self.steepest, gs)

    def dual_stacked(self, gs: Tensors) -> torch.Tensor:
        """:meth:`dual` of every run of a stacked list: a tensor ``(K,)``."""
        return torch.stack([self.dual([g[k] for g in gs]) for k in range(gs[0].shape[0])])

    # cvxpy expressions, for KKT certificates and max-margin problems. ``expr`` is a cvxpy
    # vector holding tensors of ``shapes`` flattened in C order (torch's) and concatenated.

    def value_expr(self, expr: Expr, shapes: Shapes) -> Expr:
        """The norm of ``expr`` as a cvxpy expression (what :func:`maxmargin.max_margin`
        minimizes)."""
        raise TypeError(f"{type(self).__name__} has no cvxpy expression of its value; implement "
                        "value_expr(expr, shapes) to solve max-margin problems in it.")

    def dual_expr(self, expr: Expr, shapes: Shapes) -> Expr:
        """The dual norm of ``expr`` as a cvxpy expression (the convex program of
        :func:`kkt.kkt_certificate`)."""
        raise TypeError(f"{type(self).__name__} has no cvxpy expression of its dual norm; implement "
                        "dual_expr(expr, shapes) to get KKT certificates in it.")

    def max_margin_objective(self, expr: Expr, shapes: Shapes) -> Expr:
        """What max_margin minimizes: ``‖w‖`` (this default, a cone program), or ``½‖w‖²``
        where that is a quadratic form (a QP)."""
        return self.value_expr(expr, shapes)

    def dual_is_sdp(self, shapes: Shapes) -> bool:
        """Whether :meth:`dual_expr` needs a semidefinite cone (kkt then picks SCS/Clarabel)."""
        return False

    def dual_projections(self, shapes: Shapes) -> list[str]:
        """Per tensor, the projections that never increase the dual norm there, for kkt's
        exact reduction of its program: ``'l2'`` (onto a subspace: a Euclidean dual),
        ``'spectral'`` (onto column and row spaces: a nuclear-norm dual) or ``'none'``."""
        return ["none"] * len(shapes)

    # For function-level margins (implicit_bias.symmetry), which minimize log ‖T_s θ‖ over
    # a model's rescalings s: a smooth form of the norm, and its per-tensor terms.

    def smooth_log(self, xs: Tensors, tau: float) -> torch.Tensor | None:
        """``log ‖xs‖`` with every max replaced by a log-sum-exp at temperature ``tau`` (an
        upper bound within ``tau · log(#terms)``). None (this default): the norm has none,
        and the rescaling search follows autograd's subgradient of ``log ‖xs‖`` instead,
        slower and liable to stop at a kink (it warns once)."""
        return None

    def log_terms(self, xs: Tensors, indices: Sequence[int], tau: float) -> dict[int, torch.Tensor] | None:
        """For a norm that is a max of per-tensor terms (ℓ∞, max-spectral, a MaxNorm of
        them): each tensor's smooth log term, keyed by its position in ``xs`` (``indices``:
        the positions this norm covers). None for any other norm."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _spans(shapes: Shapes) -> list[tuple[int, int]]:
    """Where each tensor of ``shapes`` lies in the flat C-order vector."""
    out: list[tuple[int, int]] = []
    start = 0
    for shape in shapes:
        out.append((start, start + math.prod(shape)))
        start += math.prod(shape)
    return out


def _matrix_shape(shape: Sequence[int]) -> tuple[int, int]:
    rows, cols = as_matrix(torch.empty(shape, device="meta")).shape
    return rows, cols


def _cvxpy() -> types.ModuleType:
    """cvxpy, imported when a max-margin problem or a certificate first needs it."""
    try:
        import cvxpy
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError("Max-margin problems and KKT certificates need cvxpy: "
                                  "pip install 'implicit-bias[solvers]'.") from error
    return cvxpy


def _cp_sum(terms: Sequence[Expr]) -> Expr:
    cp = _cvxpy()
    return cp.sum(cp.hstack(terms)) if len(terms) > 1 else terms[0]


def _cp_max(terms: Sequence[Expr]) -> Expr:
    cp = _cvxpy()
    return cp.max(cp.hstack(terms)) if len(terms) > 1 else terms[0]


def _per_run(fn: Callable[[Tensors], list[torch.Tensor]], gs: Tensors) -> list[torch.Tensor]:
    runs = [fn([g[k] for g in gs]) for k in range(gs[0].shape[0])]
    return [torch.stack(parts) for parts in zip(*runs, strict=True)]


def _flat_runs(xs: Tensors) -> torch.Tensor:
    """A stacked list ``(K, …)`` as one ``(K, n)`` matrix, a row per run."""
    return torch.cat([x.reshape(x.shape[0], -1) for x in xs], dim=1)


def _unflat_runs(v: torch.Tensor, like: Tensors) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    i = 0
    for x in like:
        n = x[0].numel()
        out.append(v[:, i:i + n].reshape(x.shape))
        i += n
    return out


@overload
def column(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor: ...
@overload
def column(v: float, like: torch.Tensor) -> float: ...
def column(v: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor | float:
    """A per-run vector ``(K,)`` shaped to broadcast against ``like`` ``(K, …)``; a plain
    number is returned as it is."""
    return v.reshape(-1, *([1] * (like.dim() - 1))) if torch.is_tensor(v) else v


def _smooth_max(values: torch.Tensor, tau: float) -> torch.Tensor:
    return tau * torch.logsumexp(values / tau, dim=0)


def _log_abs(x: torch.Tensor) -> torch.Tensor:
    x = x.reshape(-1)
    return torch.log(x[x != 0].abs())  # a zero entry has no log-scale (and no say in any max)


def _top_singular_value(x: torch.Tensor) -> torch.Tensor:
    """σ_max of x's matrix view as ``u₁ᵀ M v₁`` with the singular vectors held fixed: the same
    value and gradient (σ_max is differentiable where it is simple) for one SVD without
    autograd through it."""
    m = as_matrix(x)
    if m.shape[0] == 1:
        row: torch.Tensor = m.norm()
        return row
    # numpy's LAPACK: torch's multi-threaded SVD of a small matrix is ~50× slower on a busy CPU
    u, _, vh = np.linalg.svd(m.detach().cpu().numpy(), full_matrices=False)
    u1, v1 = (torch.as_tensor(v, dtype=m.dtype, device=m.device) for v in (u[:, 0], vh[0]))
    top: torch.Tensor = u1 @ m @ v1
    return top


_WARNED_NO_SMOOTH_LOG: set[type] = set()


def smooth_log(norm: Norm, xs: Tensors, tau: float) -> torch.Tensor:
    """``norm.smooth_log(xs, tau)``, or, for a norm without one, ``log ‖xs‖`` itself (its
    subgradient then drives the rescaling search), with a warning once per norm class."""
    value = norm.smooth_log(xs, tau)
    if value is not None:
        return value
    if type(norm) not in _WARNED_NO_SMOOTH_LOG:
        _WARNED_NO_SMOOTH_LOG.add(type(norm))
        warnings.warn(
            f"{type(norm).__name__} has no smooth_log: function-level margins in it follow the "
            "subgradient of log ‖T_s θ‖ over the rescalings s, which converges slowly and may stop "
            "at a kink of a max-type norm. Define Norm.smooth_log (a log-sum-exp for each max) to "
            "take the smoothed path.", RuntimeWarning, stacklevel=2)
    return torch.log(norm(xs))


class L2(Norm):
    """Euclidean norm of all parameters together; self-dual. Steepest: ``g/‖g‖₂``."""

    name = "l2"
    label = r"$\ell_2$"
    lp = 2
    strictly_convex = True

    def value_expr(self, expr: Expr, shapes: Shapes) -> Expr:
        cp = _cvxpy()
        return cp.norm(expr, 2)

    def dual_expr(self, expr: Expr, shapes: Shapes) -> Expr:
        return self.value_expr(expr, shapes)

    def max_margin_objective(self, expr: Expr, shapes: Shapes) -> Expr:
        cp = _cvxpy()
        return 0.5 * cp.sum_squares(expr)  # a QP: the hard-margin SVM

    def dual_projections(self, shapes: Shapes) -> list[str]:
        return ["l2"] * len(shapes)

    def __call__(self, xs: Tensors) -> torch.Tensor:
        self.check(xs)
        return _one_run(self.dual_stacked, xs)

    def dual(self, gs: Tensors) -> torch.Tensor:
        return self(gs)

    def dual_stacked(self, gs: Tensors) -> torch.Tensor:
        flat = _flat_runs(gs)
        # torch sums raw squares: a float32 vector of entries ~1e-23 would have norm 0.
        scale = flat.abs().amax(dim=1)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        return torch.where(scale > 0, scale * (flat / safe[:, None]).norm(dim=1), scale)

    def steepest(self, gs: Tensors) -> list[torch.Tensor]:
        return _one_run(self.steepest_stacked, gs)

    def steepest_stacked(self, gs: Tensors) -> list[torch.Tensor]:
        n = self.dual_stacked(gs)
        safe = torch.where(n > 0, n, torch.ones_like(n))
        return [torch.where(column(n, g) > 0, g / column(safe, g), torch.zeros_like(g)) for g in gs]

    def subgradient(self, xs: Tensors) -> list[torch.Tensor]:
        return self.steepest(xs)

    def smooth_log(self, xs: Tensors, tau: float) -> torch.Tensor:
        return 0.5 * torch.logsumexp(2 * torch.cat([_log_abs(x) for x in xs]), dim=0)


class Linf(Norm):
    """Max-abs norm; dual ℓ1. Steepest: ``sign(g)`` (sign descent)."""

    name = "linf"
    label = r"$\ell_\infty$"
    lp = math.inf

    def value_expr(self, expr: Expr, shapes: Shapes) -> Expr:
        cp = _cvxpy()
        return cp.norm(expr, "inf")

    def dual_expr(self, expr: Expr, shapes: Shapes) -> Expr:
        cp = _cvxpy()
        return cp.norm(expr, 1)

    def __call__(self, xs: Tensors) -> torch.Tensor:
        self.check(xs)
        return _flat(xs).abs().max()

    def dual(self, gs: Tensors) -> torch.Tensor:
        self.check(gs)
        return _one_run(self.dual_stacked, gs)

    def dual_stacked(self, gs: Tensors) -> torch.Tensor:
        return _flat_runs(gs).abs().sum(dim=1)

    def steepest(self, gs: Tensors) -> list[torch.Tensor]:
        return self.steepest_stacked(gs)

    def steepest_stacked(self, gs: Tensors) -> list[torch.Tensor]:
        return [torch.sign(g) for g in gs]

    def subgradient(self, xs: Tensors) -> list[torch.Tensor]:
        # sign(x_j) e_j at one coordinate attaining the max.
        v = _flat(xs)
        u = torch.zeros_like(v)
        j = v.abs().argmax()
        u[j] = torch.sign(v[j])
        return _unflat(u, xs)

    def smooth_log(self, xs: Tensors, tau: float) -> torch.Tensor:
        return _smooth_max(torch.cat([_log_abs(x) for x in xs]), tau)

    def log_terms(self, xs: Tensors, indices: Sequence[int], tau: float) -> dict[int, torch.Tensor]:
        return {i: self.smooth_log([xs[i]], tau) for i in indices}


class L1(Norm):
    """Sum-abs norm; dual ℓ∞. Steepest: ``sign(g_j) e_j`` at the largest ``|g_j|``
    (coordinate descent)."""

    name = "l1"
    label = r"$\ell_1$"
    lp = 1

    def value_expr(self, expr: Expr, shapes: Shapes) -> Expr:
        cp = _cvxpy()
        return cp.norm(expr, 1)

    def dual_expr(self, expr: Expr, shapes: Shapes) -> Expr:
        cp = _cvxpy()
        return cp.norm(expr, "inf")

    def __call__(self, xs: Tensors) -> torch.Tensor:
        self.check(xs)
        return _flat(xs).abs().sum()

    def dual(self, gs: Tensors) -> torch.Tensor:
        self.check(gs)
        return _one_run(self.dual_stacked, gs)

    def dual_stacked(self, gs: Tensors) -> torch.Tensor:
        return _flat_runs(gs).abs().amax(dim=1)

    def steepest(self, gs: Tensors) -> list[torch.Tensor]:
        return _one_run(self.steepest_stacked, gs)

    def steepest_stacked(self, gs: Tensors) -> list[torch.Tensor]:
        # sign(g_j) e_j at the first coordinate of largest |g_j|, per run.
        flat = _flat_runs(gs)
        rows = torch.arange(flat.shape[0], device=flat.device)
        j = flat.abs().argmax(dim=1)
        u = torch.zeros_like(flat)
        u[rows, j] = torch.sign(flat[rows, j])
        return _unflat_runs(u, gs)

    def subgradient(self, xs: Tensors) -> list[torch.Tensor]:
        return [torch.sign(x) for x in xs]

    def smooth_log(self, xs: Tensors, tau: float) -> torch.Tensor:
        return torch.logsumexp(torch.cat([_log_abs(x) for x in xs]), dim=0)


class Spectral(Norm):
    """Max over tensors of the spectral norm of each tensor's matrix view (``as_matrix``);
    dual: the sum of nuclear norms. Steepest: the polar factor of every tensor — Muon's
    direction (Gronich & Vardi 2026, Cor 3.4). A vector counts as a 1×n matrix, so its
    spectral norm is its ℓ2 norm; a convolution kernel ``(out, in, kh, kw)`` as the
    ``out × (in·kh·kw)`` matrix (:func:`as_matrix`)."""

    name = "spectral"
    label = "max-spectral"
    max_margin_ndim = 2

    def value_expr(self, expr: Expr, shapes: Shapes) -> Expr:
        cp = _cvxpy()
        terms = []
        for shape, (a, b) in zip(shapes, _spans(shapes)):
            if len(shape) < 2:  # a vector, a 1×n matrix: its ℓ2 norm
                terms.append(cp.norm(expr[a:b], 2))
            else:
                terms.append(cp.sigma_max(cp.reshape(expr[a:b], _matrix_shape(shape), order="C")))
        return _cp_max(terms)

    def dual_expr(self, expr: Expr, shapes: Shapes) -> Expr:
        cp = _cvxpy()
        terms = []
        for shape, (a, b) in zip(shapes, _spans(shapes)):
            m, n = _matrix_shape(shape)
            if min(m, n) == 1:  # a vector: its nuclear norm is its ℓ2 norm
                terms.append(cp.norm(expr[a:b], 2))
            else:
                terms.append(cp.normNuc(cp.reshape(expr[a:b], (m, n), order="C")))
        return _cp_sum(terms)

    def dual_is_sdp(self, shapes: Shapes) -> bool:
        return any(min(_matrix_shape(s)) > 1 for s in shapes)

    def dual_projections(self, shapes: Shapes) -> list[str]:
        return ["spectral"] * len(shapes)

    polar: str
    ns_steps: int
    ns_dtype: torch.dtype | None

    def __init__(self, polar: str = "svd", ns_steps: int = 5, ns_dtype: torch.dtype | None = None):
        if polar not in ("svd", "newton_schulz"):
            raise ValueError(f"Spectral: polar must be 'svd' or 'newton_schulz', got {polar!r}.")
        if not (isinstance(ns_steps, numbers.Integral) and not isinstance(ns_steps, bool) and ns_steps >= 1):
            raise ValueError(f"Spectral: ns_steps (Newton–Schulz iterations) must be a positive integer, "
                             f"got {ns_steps!r}.")
        if not (ns_dtype is None or (isinstance(ns_dtype, torch.dtype) and ns_dtype.is_floating_point)):
            raise TypeError(f"Spectral: ns_dtype must be None or a floating torch dtype such as "
                            f"torch.bfloat16, got {ns_dtype!r}.")
        self.polar, self.ns_steps, self.ns_dtype = polar, ns_steps, ns_dtype

    def __repr__(self) -> str:
        return "Spectral()" if self.polar == "svd" else f"Spectral(polar={self.polar!r})"

    def _per_tensor(self, xs: Tensors) -> torch.Tensor:
        return torch.stack([torch.linalg.matrix_norm(as_matrix(x), ord=2) for x in xs])

    def __call__(self, xs: Tensors) -> torch.Tensor:
        self.check(xs)
        return self._per_tensor(xs).max()

    def dual(self, gs: Tensors) -> torch.Tensor:
        self.check(gs)
        return _one_run(self.dual_stacked, gs)

    def dual_stacked(self, gs: Tensors) -> torch.Tensor:
        return cast(torch.Tensor, sum(torch.linalg.matrix_norm(as_matrices(g), ord="nuc") for g in gs))

    def steepest(self, gs: Tensors) -> list[torch.Tensor]:
        self.check(gs)
        return _one_run(self.steepest_stacked, gs)

    def steepest_stacked(self, gs: Tensors) -> list[torch.Tensor]:
        if self.polar == "newton_schulz":
            # Approximate: not unit-norm, see newton_schulz.
            return [newton_schulz(as_matrices(g), self.ns_steps, dtype=self.ns_dtype).reshape(g.shape)
                    for g in gs]
        return [polar_factors(as_matrices(g)).reshape(g.shape) for g in gs]

    def subgradient(self, xs: Tensors) -> list[torch.Tensor]:
        # u₁v₁ᵀ of one tensor attaining the max, zero elsewhere.
        self.check(xs)
        k = int(self._per_tensor(xs).argmax())
        out = [torch.zeros_like(x) for x in xs]
        u, _, vh = _svd(as_matrix(xs[k]))
        out[k] = torch.outer(u[:, 0], vh[0]).reshape(xs[k].shape)
        return out

    def smooth_log(self, xs: Tensors, tau: float) -> torch.Tensor:
        return _smooth_max(torch.stack([_top_singular_value(x).log() for x in xs]), tau)

    def log_terms(self, xs: Tensors, indices: Sequence[int], tau: float) -> dict[int, torch.Tensor]:
        return {i: self.smooth_log([xs[i]], tau) for i in indices}


class Nuclear(Norm):
    """Sum over tensors of the nuclear norm (sum of singular values) of each tensor's matrix
    view (:func:`as_matrix`); the dual of :class:`Spectral`: its dual is the max over
    tensors of the spectral norm. Steepest: ``u₁v₁ᵀ`` (the top singular pair) of the tensor
    with the largest top singular value, zero elsewhere — a rank-one step, as coordinate
    descent is the ℓ1 step. On a vector (a 1×n matrix) it is the ℓ2 norm. For a linear
    multiclass model ``W`` its max-margin solution is low-rank-seeking, where the spectral
    one (Muon's) spreads the singular values out."""

    name = "nuclear"
    label = "nuclear"
    max_margin_ndim = 2

    def value_expr(self, expr: Expr, shapes: Shapes) -> Expr:
        return Spectral().dual_expr(expr, shapes)  # Σ ‖·‖_nuc (ℓ2 on vectors)

    def dual_expr(self, expr: Expr, shapes: Shapes) -> Expr:
        return Spectral().value_expr(expr, shapes)  # max σ_max (ℓ2 on vectors)

    def dual_is_sdp(self, shapes: Shapes) -> bool:
        return any(min(_matrix_shape(s)) > 1 for s in shapes)

    def dual_projections(self, shapes: Shapes) -> list[str]:
        # P_U v P_V never increases a spectral norm either, so the reduction is exact here too.
        return ["spectral"] * len(shapes)

    def __call__(self, xs: Tensors) -> torch.Tensor:
        self.check(xs)
        return cast(torch.Tensor, sum(torch.linalg.matrix_norm(as_matrix(x), ord="nuc") for x in xs))

    def dual(self, gs: Tensors) -> torch.Tensor:
        self.check(gs)
        return _one_run(self.dual_stacked, gs)

    def dual_stacked(self, gs: Tensors) -> torch.Tensor:
        return torch.stack([torch.linalg.matrix_norm(as_matrices(g), ord=2) for g in gs]).amax(dim=0)

    def steepest(self, gs: Tensors) -> list[torch.Tensor]:
        self.check(gs)
        return _one_run(self.steepest_stacked, gs)

    def steepest_stacked(self, gs: Tensors) -> list[torch.Tensor]:
        # Per run: u₁v₁ᵀ of the tensor whose top singular value is largest (the first on ties).
        tops: list[torch.Tensor] = []
        pairs: list[torch.Tensor] = []
        for g in gs:
            u, s, vh = _svd(as_matrices(g))
            tops.append(s[:, 0])
            pairs.append((u[:, :, 0, None] * vh[:, None, 0, :]).reshape(g.shape))
        winner = torch.stack(tops).argmax(dim=0)  # (K,)
        return [torch.where(column(winner == i, pair) & (column(tops[i], pair) > 0), pair,
                            torch.zeros_like(pair)) for i, pair in enumerate(pairs)]

    def subgradient(self, xs: Tensors) -> list[torch.Tensor]:
        # The polar factor U Vᵀ of every tensor: spectral norm 1, ⟨U Vᵀ, X⟩ = ‖X‖_nuc.
        self.check(xs)
        return [polar_factor(x) for x in xs]


class MaxNorm(Norm):
    """Weighted max of norms over blocks of tensors: ``‖θ‖ = max_k w_k ‖θ_{B_k}‖_k``.

    ``blocks`` is a list of ``(norm, indices, weight)``; the indices (positions in the
    parameter list) of all blocks must partition the list. Dual: ``Σ_k ‖g_{B_k}‖_{k*} / w_k``.
    Steepest: each block's own steepest direction divided by its weight. This covers the
    hybrid norm ``max{r‖W‖_msp, ‖u‖_∞}`` of Muon-Signum and Muon-Adam (Gronich & Vardi
    2026, Cor 3.5 and Thm 3.7); see :func:`hybrid`.
    """

    name = "max"

    def _block_shapes(self, shapes: Shapes) -> list[list[Sequence[int]]]:
        if len(shapes) != self.size:
            raise ValueError(f"{self.name}: built for {self.size} tensors but got {len(shapes)}; build "
                             "the norm for this model's parameter list.")
        return [[shapes[i] for i in idx] for _, idx, _ in self.blocks]

    def _block_exprs(self, expr: Expr,
                     shapes: Shapes) -> list[tuple[Norm, float, Expr, list[Sequence[int]]]]:
        """Per block: its norm, weight, the cvxpy sub-vector of its tensors and their shapes."""
        cp = _cvxpy()
        spans = _spans(shapes)
        out: list[tuple[Norm, float, Expr, list[Sequence[int]]]] = []
        for (norm, idx, w), sub in zip(self.blocks, self._block_shapes(shapes)):
            parts = [expr[spans[i][0]:spans[i][1]] for i in idx]
            out.append((norm, w, cp.hstack(parts) if len(parts) > 1 else parts[0], sub))
        return out

    def value_expr(self, expr: Expr, shapes: Shapes) -> Expr:
        blocks = self._block_exprs(expr, shapes)
        return _cp_max([w * norm.value_expr(part, sub) for norm, w, part, sub in blocks])

    def dual_expr(self, expr: Expr, shapes: Shapes) -> Expr:
        blocks = self._block_exprs(expr, shapes)
        return _cp_sum([norm.dual_expr(part, sub) / w for norm, w, part, sub in blocks])

    def dual_is_sdp(self, shapes: Shapes) -> bool:
        subs = self._block_shapes(shapes)
        return any(norm.dual_is_sdp(sub) for (norm, _, _), sub in zip(self.blocks, subs))

    def dual_projections(self, shapes: Shapes) -> list[str]:
        kinds = ["none"] * len(shapes)
        for (norm, idx, _), sub in zip(self.blocks, self._block_shapes(shapes)):
            for i, kind in zip(idx, norm.dual_projections(sub)):
                kinds[i] = kind
        return kinds

    blocks: list[tuple[Norm, list[int], float]]
    size: int

    def __init__(self, blocks: Sequence[tuple[Norm, Iterable[int], float]], name: str | None = None):
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

    @classmethod
    def named(cls, names: torch.nn.Module | Iterable[str],
              blocks: Sequence[tuple[Norm, Sequence[str], float]], name: str | None = None) -> MaxNorm:
        """The same norm over *named* parameter blocks: ``names`` is the parameter list's
        names in order (a model, whose ``named_parameters()`` give them, or a list or dict of
        names) and ``blocks`` a list of ``(norm, [names], weight)``. For the block model
        ``f = ⟨W, X_W⟩ + ⟨u, x_u⟩``, ``MaxNorm.named(model, [(Spectral(), ["W"], r),
        (L2(), ["u"], 1)])`` is ``max{r‖W‖_op, ‖u‖₂}``."""
        if isinstance(names, torch.nn.Module):
            names = [n for n, _ in names.named_parameters()]
        names = list(names)
        position = {n: i for i, n in enumerate(names)}
        unknown = [b for _, part, _ in blocks for b in part if b not in position]
        if unknown:
            raise ValueError(f"MaxNorm.named: no parameter named {unknown}; the parameters are {names}.")
        return cls([(norm, [position[b] for b in part], w) for norm, part, w in blocks], name=name)

    def check(self, xs: Tensors) -> None:
        super().check(xs)
        if len(xs) != self.size:
            raise ValueError(
                f"{self.name}: built for {self.size} tensors but got {len(xs)}; build the "
                "norm for this model's parameter list."
            )

    def _split(self, xs: Tensors) -> list[tuple[Norm, list[int], float, list[torch.Tensor]]]:
        return [(norm, idx, w, [xs[i] for i in idx]) for norm, idx, w in self.blocks]

    def __call__(self, xs: Tensors) -> torch.Tensor:
        self.check(xs)
        return torch.stack([w * norm(part) for norm, _, w, part in self._split(xs)]).max()

    def dual(self, gs: Tensors) -> torch.Tensor:
        self.check(gs)
        return cast(torch.Tensor, sum(norm.dual(part) / w for norm, _, w, part in self._split(gs)))

    def dual_stacked(self, gs: Tensors) -> torch.Tensor:
        return cast(torch.Tensor, sum(norm.dual_stacked(part) / w for norm, _, w, part in self._split(gs)))

    def steepest(self, gs: Tensors) -> list[torch.Tensor]:
        self.check(gs)
        return _one_run(self.steepest_stacked, gs)

    def steepest_stacked(self, gs: Tensors) -> list[torch.Tensor]:
        out: list[torch.Tensor | None] = [None] * len(gs)
        for norm, idx, w, part in self._split(gs):
            for i, u in zip(idx, norm.steepest_stacked(part)):
                out[i] = u / w
        return cast(list[torch.Tensor], out)  # the blocks partition the list: none is left None

    def subgradient(self, xs: Tensors) -> list[torch.Tensor]:
        self.check(xs)
        parts = self._split(xs)
        k = int(torch.stack([w * norm(p) for norm, _, w, p in parts]).argmax())
        out = [torch.zeros_like(x) for x in xs]
        norm, idx, w, part = parts[k]
        for i, u in zip(idx, norm.subgradient(part)):
            out[i] = w * u
        return out

    def smooth_log(self, xs: Tensors, tau: float) -> torch.Tensor:
        parts = [math.log(w) + smooth_log(norm, part, tau) for norm, _, w, part in self._split(xs)]
        return _smooth_max(torch.stack(parts), tau)

    def log_terms(self, xs: Tensors, indices: Sequence[int], tau: float) -> dict[int, torch.Tensor] | None:
        out: dict[int, torch.Tensor] = {}
        for norm, idx, w, _ in self._split(xs):
            terms = norm.log_terms(xs, [indices[i] for i in idx], tau)
            if terms is None:
                return None
            out.update({i: v + math.log(w) for i, v in terms.items()})
        return out

    def __repr__(self) -> str:
        inner_ = ", ".join(f"({n!r}, {idx}, {w:g})" for n, idx, w in self.blocks)
        return f"MaxNorm([{inner_}])"


class Mahalanobis(Norm):
    """``‖θ‖_M = sqrt(θᵀMθ)`` of all parameters flattened together, for a symmetric
    positive-definite ``M`` (a positive vector is taken as ``diag(M)``); dual
    ``sqrt(gᵀM⁻¹g)``. Steepest: ``M⁻¹g / ‖g‖_{M⁻¹}``, preconditioned gradient descent. The
    data-adaptive norm of per-sample Adam is one (Baek, Song & Yun 2025;
    :func:`maxmargin.adaptive_mahalanobis`)."""

    name = "mahalanobis"
    label = r"$\|\cdot\|_M$"
    strictly_convex = True

    M: torch.Tensor
    chol: torch.Tensor

    def __init__(self, M: torch.Tensor | npt.ArrayLike):
        M = torch.as_tensor(M, dtype=torch.float64)
        M = torch.diag(M) if M.dim() == 1 else M
        if M.dim() != 2 or M.shape[0] != M.shape[1] or not torch.allclose(M, M.T):
            raise ValueError(f"Mahalanobis: M must be a symmetric matrix (or a positive vector, its "
                             f"diagonal); got shape {tuple(M.shape)}.")
        if torch.linalg.eigvalsh(M).min() <= 0:
            raise ValueError("Mahalanobis: M must be positive definite for sqrt(wᵀMw) to be a norm.")
        self.M = M
        self.chol = torch.linalg.cholesky(M)  # M = L Lᵀ: ‖θ‖_M = ‖Lᵀθ‖₂, ‖g‖_{M⁻¹} = ‖L⁻¹g‖₂

    def __repr__(self) -> str:
        return f"Mahalanobis(M of size {self.M.shape[0]})"

    def _check_size(self, n: int) -> None:
        if n != self.M.shape[0]:
            d = self.M.shape[0]
            raise ValueError(f"{self.name}: M is {d}×{d} but the parameters have {n} entries; M must "
                             f"be a symmetric {n}×{n} matrix.")

    def check(self, xs: Tensors) -> None:
        super().check(xs)
        self._check_size(sum(x.numel() for x in xs))

    def _like(self, t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return m.to(dtype=t.dtype, device=t.device)

    def __call__(self, xs: Tensors) -> torch.Tensor:
        self.check(xs)
        v = _flat(xs)
        value: torch.Tensor = (self._like(v, self.chol).T @ v).norm()  # Tensor.norm has no hints
        return value

    def dual(self, gs: Tensors) -> torch.Tensor:
        self.check(gs)
        v = _flat(gs)
        solved = torch.linalg.solve_triangular(self._like(v, self.chol), v[:, None], upper=False)
        value: torch.Tensor = solved.norm()  # torch.linalg and Tensor.norm have no type hints
        return value

    def steepest(self, gs: Tensors) -> list[torch.Tensor]:
        self.check(gs)
        v = _flat(gs)
        size = self.dual(gs)
        u = torch.cholesky_solve(v[:, None], self._like(v, self.chol))[:, 0]
        return _unflat(u / size if size > 0 else torch.zeros_like(v), gs)

    def subgradient(self, xs: Tensors) -> list[torch.Tensor]:
        v = _flat(xs)
        size = self(xs)
        u = self._like(v, self.M) @ v
        return _unflat(u / size if size > 0 else torch.zeros_like(v), xs)

    def value_expr(self, expr: Expr, shapes: Shapes) -> Expr:
        cp = _cvxpy()
        self._check_size(sum(math.prod(s) for s in shapes))
        return cp.norm(self.chol.T.numpy() @ expr, 2)

    def dual_expr(self, expr: Expr, shapes: Shapes) -> Expr:
        cp = _cvxpy()
        self._check_size(sum(math.prod(s) for s in shapes))
        eye = torch.eye(self.M.shape[0], dtype=torch.float64)
        return cp.norm(torch.linalg.solve_triangular(self.chol, eye, upper=False).numpy() @ expr, 2)

    def max_margin_objective(self, expr: Expr, shapes: Shapes) -> Expr:
        cp = _cvxpy()
        self._check_size(sum(math.prod(s) for s in shapes))
        return 0.5 * cp.quad_form(expr, cp.psd_wrap(self.M.numpy()))  # a QP


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
    blocks: list[tuple[Norm, list[int], float]] = []
    if mats:
        blocks.append((Spectral(), mats, r))
    if rest:
        blocks.append((Linf(), rest, 1.0))
    norm = MaxNorm(blocks, name="hybrid" if r == 1 else f"hybrid(r={r:g})")
    norm.label = _hybrid_label(r)
    return norm


def _hybrid_label(r: float = 1.0) -> str:
    weight = "" if r == 1 else f"{r:g}"
    return rf"hybrid $\max\{{{weight}\|W\|_{{msp}}, \|u\|_\infty\}}$"


# --- norms by name ------------------------------------------------------------------------

_REGISTRY: dict[str, tuple[NormFactory, str | None]] = {}


@registry.entry
def register(name: str, factory: NormFactory, label: str | None = None) -> None:
    """Make a norm known by ``name`` wherever a name is accepted (margins, certificates,
    max-margin problems, runs, figures), as every registry does
    (:mod:`implicit_bias.registry`): ``register(name, factory)`` or ``@register(name)``.
    ``factory`` is a :class:`Norm` subclass, built with no arguments, or a function of the
    model's parameter list (``None`` when the caller has none) that returns a Norm, for
    norms built from it like :func:`hybrid`. ``label`` (LaTeX, for figures) defaults to the
    class's. Registering a name again replaces it."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register: a norm's name must be a non-empty string, got {name!r}.")
    if (isinstance(factory, type) and not issubclass(factory, Norm)) or not callable(factory):
        raise TypeError(f"register: {factory!r} is neither a Norm subclass nor a function "
                        "params -> Norm.")
    _REGISTRY[name] = (factory, label)


def names() -> list[str]:
    """The registered norm names."""
    return sorted(_REGISTRY)


def by_name(name: str, params: Tensors | None = None) -> Norm:
    """The norm registered as ``name``: ``l2``, ``linf``, ``l1``, ``spectral`` (or ``msp``,
    max-spectral), ``hybrid`` (needs ``params`` for the matrix/other split) or one added
    with :func:`register`."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown norm {name!r}; choose one of {names()}, or add yours with "
                         "norms.register(name, factory).")
    factory, _ = _REGISTRY[name]
    norm = factory() if isinstance(factory, type) else factory(params)
    if not isinstance(norm, Norm):
        raise TypeError(f"The factory registered as {name!r} returned a {type(norm).__name__}, not a Norm.")
    return norm


def as_norm(norm: Norm | str, params: Tensors | None = None) -> Norm:
    """A :class:`Norm` as it is, or the one registered under a name (see :func:`by_name`)."""
    if isinstance(norm, Norm):
        return norm
    if isinstance(norm, str):
        return by_name(norm, params)
    raise TypeError(f"Expected a Norm or a registered norm name ({', '.join(names())}), "
                    f"got {type(norm).__name__}.")


def label_of(norm: Norm | str) -> str:
    """The figure label of a Norm or of a registered name (an unknown name labels itself)."""
    if isinstance(norm, Norm):
        return norm.label or norm.name
    factory, label = _REGISTRY.get(norm, (None, None))
    return label or getattr(factory, "label", None) or str(norm)


def _hybrid_by_name(params: Tensors | None) -> Norm:
    if params is None:
        raise ValueError("by_name('hybrid') needs the parameter list to split it.")
    return hybrid(params)


for _name, _class in (("l2", L2), ("linf", Linf), ("l1", L1), ("spectral", Spectral), ("msp", Spectral),
                     ("nuclear", Nuclear)):
    register(_name, _class)
register("hybrid", _hybrid_by_name, label=_hybrid_label())
