"""Function-level margins: a homogeneous network scored at the best point of its rescalings.

For ``f(x) = Σ_j a_j σ(w_j·x)`` with σ q-homogeneous, every map
``(w_j, a_j) → (c_j w_j, a_j / c_j^q)`` (c_j > 0) leaves ``f`` unchanged but changes every
norm of θ except at balanced points of ℓ2-type norms. A raw normalized margin in a max-type
norm (ℓ∞, max-spectral, hybrid) therefore partly measures *how the parameters are split
between layers*, not the function. The function-level margin is the margin at the best
point of the symmetry,

    γ_fn(θ) = min_i q_i(θ) / min_s ‖T_s θ‖^L,

and the *rebalancing gain* ``γ_fn / γ`` is ≥ 1, with equality at every KKT point of the
margin problem (no rescaling can shorten a KKT point: a cheap necessary check). Compare
optimizers on ``γ_fn``; report the raw γ beside it.

Multi-output models (``num_classes = k``) are scored on Lyu & Li's multiclass margin
``f_y − max_{j≠y} f_j`` when given class labels (:func:`implicit_bias.margins.as_pairs`); their
symmetries are those of the inner network.

The models of :mod:`implicit_bias.models` describe their symmetries by log-scales ``s``
(``symmetry_size``, ``rescaled``); a user's model that defines the same two methods works
here too. ``log ‖T_s θ‖`` is convex in ``s`` for the book's norms (each is a max or a
norm of terms ``e^{affine(s)}``), so the minimum is found by L-BFGS on a smoothed
log-norm whose smoothing is tightened step by step; the value returned is the exact norm
at the point found, never worse than the raw one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch

from . import norms as _norms
from .margins import NotSeparatingError, _norm, checked_margins, normalized_margin

if TYPE_CHECKING:
    from .history import History

#: Smoothing temperatures of the max-type norms, tightened in turn (a log-sum-exp with
#: temperature τ over N terms is within τ log N of the max).
TEMPERATURES = (0.1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def smooth_log_norm(norm: _norms.Norm, xs: Sequence[torch.Tensor], tau: float) -> torch.Tensor:
    """``log ‖xs‖`` with every max replaced by a log-sum-exp at temperature ``tau`` (an upper
    bound within ``tau · log(#terms)``): the norm's own :meth:`Norm.smooth_log`; a norm
    without one is used as it is (autograd then sees a subgradient; it warns once)."""
    return _norms.smooth_log(norm, xs, tau)


class _Symmetric(Protocol):
    """A model that describes its rescaling symmetries, as :class:`models.HomogeneousModel` does."""

    def symmetry_size(self, group: str = "neuron") -> int: ...

    def rescaled(self, params: Sequence[torch.Tensor], s: torch.Tensor,
                 group: str = "neuron") -> list[torch.Tensor]: ...


def _check_model(model: torch.nn.Module) -> _Symmetric:
    """``model``, checked to describe its rescaling symmetries."""
    if not (hasattr(model, "symmetry_size") and hasattr(model, "rescaled")):
        raise TypeError(
            f"{type(model).__name__} does not describe its rescaling symmetries: define "
            "`symmetry_size(group)` and `rescaled(params, s, group)` (see models.HomogeneousModel), "
            "or use the raw margin (margins.normalized_margin) if it has none.")
    return cast(_Symmetric, model)


def _layer_shift(model: _Symmetric, params: list[torch.Tensor], norm: _norms.Norm,
                 group: str) -> tuple[float, float, list[bool]] | None:
    """The rates ``(α, β)`` at which the log of each tensor's scale moves along the uniform
    shift ``s → s + c`` (first tensors ``+α c``, the others ``−β c``), when the model's
    symmetry has one such shift and ``norm`` is a max of per-tensor terms; else None.

    Along that shift ``max(P + αc, Q − βc)`` is smallest at ``(βP + αQ)/(α + β)``, a smooth
    function of the rest of ``s``: the one kink that cannot be smoothed away cheaply (the
    two layers' balance) is removed exactly."""
    if model.symmetry_size("layer") != 1 or norm.log_terms(params, range(len(params)), 1.0) is None:
        return None
    one = torch.ones(model.symmetry_size(group), dtype=params[0].dtype, device=params[0].device)
    moved = model.rescaled(params, one, group)
    rates = [float((m.abs().sum() / p.abs().sum()).log()) if p.abs().sum() > 0 else 0.0
             for m, p in zip(moved, params)]
    up = [r for r in rates if r > 1e-9]
    down = [-r for r in rates if r < -1e-9]
    if not up or not down or max(up) - min(up) > 1e-9 or max(down) - min(down) > 1e-9:
        return None
    return up[0], down[0], [r > 0 for r in rates]


def best_rescaling(model: torch.nn.Module, norm: _norms.Norm | str = "l2", group: str = "neuron",
                   max_iter: int = 100, rtol: float = 1e-9, method: str = "auto") -> torch.Tensor:
    """The log-scales ``s`` that minimize ``‖T_s θ‖`` over the model's symmetry ``group``
    (``'neuron'``: every hidden unit on its own; ``'layer'``: one scale per layer).

    ``method='auto'`` takes the model's closed form where it has one
    (:meth:`models.HomogeneousModel.best_log_scales`: the two-layer nets in ℓ2, ℓ∞, hybrid);
    otherwise, and always with ``method='search'``: L-BFGS on a smoothed log-norm, tightening
    the smoothing until a temperature improves the exact norm by less than ``rtol``
    (relative), with the layers' balance solved exactly where the model allows
    (``_layer_shift``)."""
    symmetric = _check_model(model)
    if method not in ("auto", "search"):
        raise ValueError(f"method must be 'auto' or 'search', got {method!r}.")
    params = [p.detach() for p in model.parameters()]
    norm = _norm(norm, params)
    size = symmetric.symmetry_size(group)
    s = torch.zeros(size, dtype=params[0].dtype, device=params[0].device)
    if size == 0:
        return s
    closed_form = getattr(model, "best_log_scales", None) if method == "auto" else None
    closed: torch.Tensor | None = closed_form(params, norm, group) if closed_form is not None else None
    if closed is not None:
        return closed
    shift = _layer_shift(symmetric, params, norm, group)

    def objective(s: torch.Tensor, tau: float) -> torch.Tensor:
        xs = symmetric.rescaled(params, s, group)
        if shift is None:
            return smooth_log_norm(norm, xs, tau)
        a, b, first = shift
        # not None: _layer_shift found the norm a max of per-tensor terms
        terms = cast(dict[int, torch.Tensor], norm.log_terms(xs, range(len(xs)), tau))
        P = _norms._smooth_max(torch.stack([v for i, v in terms.items() if first[i]]), tau)
        Q = _norms._smooth_max(torch.stack([v for i, v in terms.items() if not first[i]]), tau)
        return (b * P + a * Q) / (a + b)

    def exact(s: torch.Tensor) -> float:
        with torch.no_grad():
            return float(norm(symmetric.rescaled(params, s, group)))

    s.requires_grad_(True)
    best, best_value = s.detach().clone(), exact(s.detach())
    for tau in TEMPERATURES:
        opt = torch.optim.LBFGS([s], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12,
                                tolerance_change=1e-14, history_size=20, line_search_fn="strong_wolfe")

        def closure(opt: torch.optim.LBFGS = opt, tau: float = tau) -> torch.Tensor:
            opt.zero_grad()
            value = objective(s, tau)
            value.backward()
            return value

        opt.step(closure)
        candidate = s.detach().clone()
        if shift is not None:  # put the two layers at their exact balance
            candidate = candidate + _balance(exact, candidate)
        value = exact(candidate)
        improved = best_value - value
        if math.isfinite(value) and improved > 0:  # the exact norm: keep the best point seen
            best, best_value = candidate, value
        if tau < 1e-2 and improved < rtol * best_value:
            break
    return best


def _balance(exact: Callable[[torch.Tensor], float], s: torch.Tensor) -> float:
    """The uniform shift ``c`` minimizing the exact norm at ``s + c`` (a 1-D convex problem)."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda c: math.log(exact(s + c)), bracket=(-1.0, 1.0), tol=1e-12)
    return float(res.x) if res.fun <= math.log(exact(s)) else 0.0


def rebalanced_params(model: torch.nn.Module, norm: _norms.Norm | str = "l2",
                      group: str = "neuron") -> list[torch.Tensor]:
    """The parameters at the best point of the symmetry: same function, smallest norm."""
    s = best_rescaling(model, norm, group)
    with torch.no_grad():
        symmetric = cast(_Symmetric, model)  # best_rescaling checked it
        return [p.detach() for p in symmetric.rescaled([p.detach() for p in model.parameters()], s, group)]


@torch.no_grad()
def function_margin(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, norm: _norms.Norm | str = "l2",
                    group: str = "neuron") -> float:
    """The normalized margin ``min_i q_i / ‖T_s θ‖^L`` at the best rescaling ``s``: a property
    of the function ``f``, the same for every parametrization of it."""
    q, degree = checked_margins(model, X, y)
    q_min = q.min()
    params = rebalanced_params(model, norm, group)
    return float(q_min / _norm(norm, params)(params) ** degree)


def rebalancing_gain(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, norm: _norms.Norm | str = "l2",
                     group: str = "neuron") -> float:
    """``function_margin / normalized_margin`` (≥ 1; = 1 at a KKT point of the margin
    problem in ``norm``). Defined for separated data (positive margins)."""
    from .margins import normalized_margin

    raw = normalized_margin(model, X, y, norm)
    if not raw > 0:
        raise NotSeparatingError(f"rebalancing_gain needs separated data (raw margin {raw:.3g} ≤ 0).")
    return function_margin(model, X, y, norm, group) / raw


def summary(histories: Iterable[History], X: torch.Tensor, y: torch.Tensor, norms: Iterable[str],
            group: str = "neuron") -> list[dict[str, Any]]:
    """One row per history, like :func:`train.summary`: ``label``, ``seed``, then for every
    norm the function-level margin under ``norm``, the raw one under ``'<norm> raw'`` and
    their ratio under ``'<norm> gain'`` (final models). ``X, y`` are the training data."""
    rows: list[dict[str, Any]] = []
    for h in histories:
        model = h.model.cpu()
        Xc, yc = X.to(next(model.parameters()).dtype), y.to(next(model.parameters()).dtype)
        row: dict[str, Any] = {"label": h.run.label, "seed": h.run.seed,
                               "log10_loss": h.log_loss[-1] / math.log(10)}
        for n in norms:
            params = [p.detach() for p in model.parameters()]
            nobj = _norm(n, params)
            raw = normalized_margin(model, Xc, yc, nobj)
            fn = function_margin(model, Xc, yc, nobj, group)
            row |= {n: fn, f"{n} raw": raw, f"{n} gain": fn / raw if raw > 0 else math.nan}
        rows.append(row)
    return rows


__all__ = ["best_rescaling", "rebalanced_params", "function_margin", "rebalancing_gain", "summary",
           "smooth_log_norm"]
