"""The declared degree checked on the data: ``f(X; cθ) = c^L f(X; θ)`` for ``c > 0``.

Normalized margins ``min_i y_i f(x_i; θ) / ‖θ‖^L`` and KKT certificates are defined for a
positively homogeneous model of degree ``L`` (the setting of Lyu & Li 2020) with one score
per sample. A wrong ``degree``, a bias, a tanh or an ``(n, 1)`` output all still return a
plausible number; the checks here turn each into an error that says what to change.
Homogeneity is a property of the architecture, so a model is measured once and the result
cached until its parameter tensors are replaced (training updates them in place).
A multi-output model (``num_classes = k``) has ``(n, k)`` scores: ``multi_output=True``
measures it as it is; margins score it through its pairs (:func:`margins.as_pairs`).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, SupportsFloat

import torch
from torch.func import functional_call

#: The factors c at which f(cθ) is compared with c^L f(θ).
SCALES = (0.5, 2.0, 3.0)

#: A passing check's key: (degree, scales, rtol, multi_output, id(X), X's shape, and per
#: parameter its id, shape, dtype and device).
_Key = tuple[float, tuple[float, ...], float, bool, int, tuple[int, ...],
             tuple[tuple[int, tuple[int, ...], torch.dtype, torch.device], ...]]

# model → {(degree, scales, rtol, data, parameters): measured degree}; weak, so a model
# leaves the cache when it is garbage collected.
_CHECKED: weakref.WeakKeyDictionary[torch.nn.Module, dict[_Key, float]] = weakref.WeakKeyDictionary()

_HOW_TO_FIX = ("Remove biases (nn.Linear(..., bias=False)) and activations that are not positively "
               "homogeneous, such as tanh, sigmoid or GELU (ReLU and its powers are; see "
               "implicit_bias.models), then declare the degree L.")


def _as_degree(degree: Any, owner: str) -> float:  # Any: whatever a user declared, checked here
    try:
        value = float(degree)
    except (TypeError, ValueError):
        raise TypeError(f"{owner} `degree` must be a number L > 0 (e.g. 2 for a bias-free two-layer "
                        f"ReLU net), got {degree!r}.") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{owner} `degree` must be a finite number L > 0, got {degree!r}.")
    return value


def declared_degree(model: torch.nn.Module) -> float:
    """``model.degree`` as a float; TypeError if the model declares none."""
    name = type(model).__name__
    degree = getattr(model, "degree", None)
    if degree is None:
        raise TypeError(
            f"{name} has no `degree`: margins and certificates need a positively homogeneous model "
            "f(x; cθ) = c^L f(x; θ). Declare its degree L ≥ 1 (`model.degree = L`: 1 for a linear model, "
            "2 for a bias-free two-layer ReLU net; see implicit_bias.models).")
    return _as_degree(degree, name)


def num_classes(model: torch.nn.Module) -> int | None:
    """The number of outputs ``k ≥ 2`` a multi-output model declares (``num_classes``), or None."""
    k = getattr(model, "num_classes", None)
    return int(k) if isinstance(k, int) and not isinstance(k, bool) and k >= 2 else None


def check_output(model: torch.nn.Module, X: torch.Tensor, out: torch.Tensor,
                 multi_output: bool = False) -> None:
    """Raise unless ``out = model(X)`` holds one score per sample, shape ``(n,)``, or (with
    ``multi_output``, for a model declaring ``num_classes = k``) ``k`` scores, ``(n, k)``.
    An ``(n, 1)`` output is always refused."""
    n, k = X.shape[0], num_classes(model)
    if tuple(out.shape) == (n,) or (multi_output and k is not None and tuple(out.shape) == (n, k)):
        return
    if k is not None and tuple(out.shape) == (n, k):
        fix = ("it has k scores per sample: score it with class labels (margins.multiclass_margins, or "
               "any margin given integer labels), or train `models.Pairwise(model)` on "
               "`data.class_pairs(X, labels, k)`")
    elif tuple(out.shape) == (n, 1):
        fix = "make `forward` return `out.squeeze(-1)`"
    else:
        fix = "make `forward` return one score per row of X"
    raise ValueError(
        f"{type(model).__name__} returns outputs of shape {tuple(out.shape)} for {n} samples; the "
        f"output must be shape ({n},), one score per sample (y * f would otherwise broadcast): {fix}.")


def _check_finite(model: torch.nn.Module, out: torch.Tensor, at: str) -> None:
    if not torch.isfinite(out).all():
        raise ValueError(f"{type(model).__name__} gives non-finite outputs (NaN or inf) at {at} on X: "
                         "check the parameters and the data before measuring margins.")


def _rel_err(fc: torch.Tensor, target: torch.Tensor) -> float:
    return float((fc - target).abs().max() / target.abs().max())


@torch.no_grad()
def check_homogeneous(model: torch.nn.Module, X: torch.Tensor, degree: SupportsFloat | None = None,
                      scales: Sequence[float] = SCALES, rtol: float = 1e-6,
                      multi_output: bool = False) -> float:
    """Measure the homogeneity degree of ``model`` on the data ``X`` and return it.

    ``f(X; cθ)`` is evaluated with every parameter scaled by ``c`` (``torch.func.functional_call``:
    the model is not modified) and compared with ``c^L f(X; θ)`` for ``L`` = ``degree`` or, by
    default, the model's declared ``model.degree``: largest error ≤ ``rtol`` times the largest
    output (raised to 100 machine epsilons for low-precision dtypes). The measured degree is the
    mean over ``scales`` of ``log(‖f(cθ)‖ / ‖f(θ)‖) / log c``; if every output is zero nothing
    can be measured and the declared degree is returned.

    ``multi_output=True`` accepts the ``(n, k)`` scores of a model declaring ``num_classes =
    k`` (never ``(n, 1)``); by default one score per sample is required.

    Raises TypeError if no degree is declared; ValueError if the output is not of shape
    ``(n,)`` (or ``(n, k)``), is not finite, or does not scale as ``c^L``. A passing check is
    cached per model, parameter tensors and data, so calling this before every margin costs
    one check per model.
    """
    name = type(model).__name__
    L = declared_degree(model) if degree is None else _as_degree(degree, name)
    if not all(c > 0 and c != 1 for c in scales):
        raise ValueError(f"scales must be positive and ≠ 1, got {scales!r}.")
    if X.shape[0] == 0:
        raise ValueError("X has no samples: the degree is measured on the data.")
    params = dict(model.named_parameters())
    key: _Key = (L, tuple(scales), rtol, multi_output, id(X), tuple(X.shape),
           tuple((id(p), tuple(p.shape), p.dtype, p.device) for p in params.values()))
    seen = _CHECKED.get(model, {})
    if key in seen:
        return seen[key]

    f = model(X)
    check_output(model, X, f, multi_output)
    _check_finite(model, f, "θ")
    tol = max(rtol, 100 * torch.finfo(f.dtype).eps)  # float32 rounds at ~1e-7 per operation
    scaled: list[tuple[float, torch.Tensor]] = []
    for c in scales:
        fc: torch.Tensor = functional_call(model, {k: c * p for k, p in params.items()}, (X,))
        _check_finite(model, fc, f"{c:g}·θ")
        scaled.append((c, fc))
    if not float(f.abs().max()) > 0:
        if any(float(fc.abs().max()) > 0 for _, fc in scaled):
            raise ValueError(f"{name} is not positively homogeneous: f(θ) = 0 on X but f(cθ) ≠ 0. "
                             + _HOW_TO_FIX)
        return L  # f = 0 on X at θ: consistent with every degree, so nothing to measure

    powers = [math.log(float(fc.norm() / f.norm())) / math.log(c) if fc.norm() > 0 else -math.inf
              for c, fc in scaled]
    measured = sum(powers) / len(powers)
    if max(_rel_err(fc, c**L * f) for c, fc in scaled) <= tol:
        _CHECKED.setdefault(model, {})[key] = measured
        return measured
    if math.isfinite(measured) and max(_rel_err(fc, c**measured * f) for c, fc in scaled) <= tol:
        hint = ""
        if abs(measured) < 1e-3:
            hint = (" The output does not move with the parameters torch.func.functional_call sees: "
                    "a forward that reads tensors outside `model.parameters()` (or a sliced "
                    "nn.ParameterList) hides them from this check and from the certificates' gradients.")
        raise ValueError(
            f"{name} declares degree {L:g} but f(cθ) = c^{measured:.2f} f(θ) on X (c in {tuple(scales)}): "
            f"declare the degree it has, `degree = {round(measured, 2):g}`, or fix the model." + hint)
    shown = ", ".join(f"{p:.2f} at c = {c:g}" for p, (c, _) in zip(powers, scaled))
    raise ValueError(
        f"{name} declares degree {L:g} but is not positively homogeneous on X: f(cθ) is not c^L f(θ) "
        f"for any single L (log(‖f(cθ)‖ / ‖f(θ)‖) / log c = {shown}). " + _HOW_TO_FIX)


# --- a network that cannot move ------------------------------------------------------------

#: Why a run whose output and gradient are both identically 0 stops (see :func:`dead_output`).
DEAD = ("its output is 0 on every sample and so is every gradient (every unit dead, or all "
        "parameters 0): no optimizer step can move it. Draw another seed, raise init_scale, "
        "or lower the learning rate that killed the units")


@torch.no_grad()
def dead_runs(outputs: torch.Tensor, grads: Iterable[torch.Tensor] = ()) -> list[int]:
    """The runs of a stack that can no longer move: ``outputs`` ``(K, n, …)`` identically 0
    on every sample, and every gradient in ``grads`` (tensors ``(K, …)``) too. A zero output
    alone is no reason (a linear model at θ = 0 has a non-zero gradient). One reduction
    and one synchronization in the common case, where some output is not 0."""
    K = outputs.shape[0]
    zero = outputs.reshape(K, -1).eq(0).all(dim=1)
    if not bool(zero.any()):
        return []
    for g in grads:
        zero &= g.reshape(K, -1).eq(0).all(dim=1)
    dead: list[int] = torch.nonzero(zero).reshape(-1).tolist()
    return dead


def dead_output(outputs: torch.Tensor, grads: Iterable[torch.Tensor] = ()) -> str | None:
    """Why one run cannot move (:data:`DEAD`) when its ``outputs`` on the data and all its
    ``grads`` are identically 0, else None. The training loop raises ``RunFailed`` with it,
    naming the run and the step."""
    dead = dead_runs(outputs.unsqueeze(0), [g.unsqueeze(0) for g in grads])
    return DEAD if dead else None


__all__ = ["check_homogeneous", "check_output", "declared_degree", "num_classes", "dead_output", "dead_runs",
           "DEAD", "SCALES"]
