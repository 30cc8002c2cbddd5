"""Normalized margins of homogeneous models, and directional convergence.

The normalized margin in a norm is ``γ(θ) = min_i q_i(θ) / ‖θ‖^L`` with ``L`` the
homogeneity degree; it is scale-invariant, so it measures the *direction* of θ. Margins
in different norms are not comparable with each other: compare optimizers within a norm.

Every margin here first checks its input (:func:`checked_margins`): finite data, labels ±1 of shape
``(n,)``, one output per sample, and the declared degree measured on the data once per
model (:mod:`implicit_bias.homogeneity`) — a wrong one would give a number, not an error.

Multiclass. A model declaring ``num_classes = k`` returns ``(n, k)`` scores; given integer
class labels, the margin of a sample is Lyu & Li's ``q_i = f_{y_i}(x_i) − max_{j≠y_i} f_j(x_i)``
(:func:`multiclass_margins`), homogeneous of the model's degree. Every function here (and
:mod:`implicit_bias.symmetry`, :mod:`implicit_bias.kkt`) accepts such a model with its
labels and scores it through :func:`as_pairs`: the binary model :class:`models.Pairwise` on the
``n(k − 1)`` pairs (sample, other class), whose smallest margin is ``min_i q_i``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import losses
from .data import check_class_labels, check_data, class_pairs
from .homogeneity import check_homogeneous, check_output, declared_degree, num_classes
from .norms import Norm, as_norm

#: The pairs of the last few (X, labels) seen, with references that keep their ids valid,
#: so that repeated margins of one data set reuse one pair tensor (and one homogeneity check).
_PAIRS_CACHE: dict = {}
_PAIRS_CACHE_SIZE = 8


def _norm(norm: Norm | str, params: list[torch.Tensor]) -> Norm:
    return as_norm(norm, params)


def params_of(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach() for p in model.parameters()]


def check_targets(X: object, y: object) -> None:
    """Raise unless ``X`` is a tensor of finite rows and ``y`` holds one label in {−1, +1}
    per row (:func:`~implicit_bias.data.check_data`)."""
    check_data(X, y)  # first: it refuses integers float64 cannot hold, so the advice below is lossless
    for name, a in (("X", X), ("y", y)):
        if not isinstance(a, torch.Tensor):
            raise TypeError(f"{name} must be a torch tensor, got {type(a).__name__}: use "
                            f"`torch.as_tensor({name}, dtype=torch.float64)`.")


def _check_dtype(model: torch.nn.Module, X: torch.Tensor) -> None:
    dtypes = {p.dtype for p in model.parameters()}
    if len(dtypes) == 1 and X.dtype not in dtypes:
        (dtype,) = dtypes
        fix = f"use `X.to({dtype})`"
        if not X.is_floating_point() and dtype.is_floating_point and not _exact(X, dtype):
            # never advise a cast that rounds integers: float64 holds them exactly (check_data)
            fix = (f"{dtype} cannot hold X's integers exactly; use `X.to(torch.float64)` and "
                   "`model.double()`")
        raise TypeError(f"X has dtype {X.dtype} but {type(model).__name__}'s parameters are {dtype}: {fix}.")


def _exact(X: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether every integer of ``X`` is exact in the floating ``dtype``."""
    bits = {torch.float64: 53, torch.float32: 24, torch.float16: 11, torch.bfloat16: 8}.get(dtype, 8)
    return X.numel() == 0 or max(abs(int(X.max())), abs(int(X.min()))) <= 2**bits


def as_pairs(model: torch.nn.Module, X: torch.Tensor,
             y: torch.Tensor) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """``(model, X, y)`` as they are for a binary model; for a model with ``num_classes = k``
    and integer labels ``y`` in ``[0, k)``: ``(Pairwise(model), Z, 1)`` with ``Z`` the
    ``n(k − 1)`` pairs of :func:`~implicit_bias.data.class_pairs`. The wrapper shares the
    model's parameters, so norms, rescalings and gradients are the model's own."""
    from .models import Pairwise

    k = num_classes(model)
    if k is None or isinstance(model, Pairwise):
        return model, X, y
    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("X and the class labels must be torch tensors.")
    if y.is_floating_point() and X.shape[0] == y.shape[0] and set(torch.unique(y).tolist()) <= {-1.0, 1.0} \
            and (y < 0).any():
        raise ValueError(f"{type(model).__name__} has {k} outputs: give class labels in [0, {k}) "
                         "(int64), not ±1.")
    key = (id(X), id(y), tuple(X.shape), X.dtype, X.device)
    hit = _PAIRS_CACHE.get(key)
    if hit is None or hit[0] is not X or hit[1] is not y:
        check_class_labels(y, k, X.shape[0])
        Z, ones = class_pairs(X, y, k, dtype=X.dtype)
        hit = (X, y, Z.to(X.device), ones.to(X.device))
        if len(_PAIRS_CACHE) >= _PAIRS_CACHE_SIZE:
            _PAIRS_CACHE.pop(next(iter(_PAIRS_CACHE)))
        _PAIRS_CACHE[key] = hit
    wrapper = model.__dict__.get("_pairwise")
    if wrapper is None:  # one wrapper per model (outside the module tree), so its check is cached
        wrapper = Pairwise(model)
        object.__setattr__(model, "_pairwise", wrapper)
    return wrapper, hit[2], hit[3]


@torch.no_grad()
def multiclass_margins(model: torch.nn.Module, X: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lyu & Li's multiclass margins ``q_i = f_{y_i}(x_i) − max_{j≠y_i} f_j(x_i)`` of a model
    with ``num_classes = k`` (scores of shape ``(n, k)``), after the checks of
    :func:`checked_margins` (degree, finite data, labels in ``[0, k)``)."""
    k = num_classes(model)
    if k is None:
        raise TypeError(f"{type(model).__name__} declares no `num_classes` ≥ 2: it is not a "
                        "multi-output model.")
    checked_margins(model, X, labels)
    labels = torch.as_tensor(check_class_labels(labels, k, X.shape[0]), device=X.device)
    f: torch.Tensor = model(X)
    own = f.gather(1, labels[:, None]).squeeze(1)
    others = f.scatter(1, labels[:, None], -torch.inf)
    return own - others.amax(1)


class NotSeparatingError(ValueError):
    """The model does not separate the data (its smallest margin is ≤ 0), where what was
    asked needs a separating model: a certificate's control, a function-level gain, a
    nearby search. A run cut short (``IMPLICIT_BIAS_MAX_STEPS``) often ends here."""


def checked_margins(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The per-sample margins ``q_i = y_i f(x_i; θ)`` and the degree ``L``, after checking the
    data (finite rows, labels ±1 of shape ``(n,)``, X in the model's dtype), the output shape
    and (once per model: :func:`~implicit_bias.homogeneity.check_homogeneous`) the declared
    degree. A multi-output model with class labels gives the margins of its ``n(k − 1)``
    pairs (:func:`as_pairs`): their minimum is the smallest multiclass margin."""
    model, X, y = as_pairs(model, X, y)
    degree = declared_degree(model)
    check_targets(X, y)
    _check_dtype(model, X)
    check_homogeneous(model, X, degree)
    f = model(X)
    check_output(model, X, f)
    return y * f, degree


@torch.no_grad()
def normalized_margin(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor,
                      norm: Norm | str = "l2") -> float:
    """``min_i y_i f(x_i; θ) / ‖θ‖^L`` for ``norm`` (a :class:`Norm` or a name)."""
    params = _nonzero(params_of(model))
    q, degree = checked_margins(model, X, y)
    return float(q.min() / _norm(norm, params)(params) ** degree)


@torch.no_grad()
def smoothed_margin(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, norm: Norm | str = "l2",
                    loss: str = "logistic") -> float:
    """Lyu & Li's smoothed margin ``ℓ^{-1}(L(θ)) / ‖θ‖^L``: smooth in θ and a lower bound on
    the normalized margin. For the exponential loss it is within ``log(n) / ‖θ‖^L`` of it;
    for the logistic loss that holds only once the loss is small."""
    params = _nonzero(params_of(model))
    q, degree = checked_margins(model, X, y)
    log_l = losses.log_loss(q, loss)
    return float(losses.inverse_loss_from_log(log_l, loss) / _norm(norm, params)(params) ** degree)


def _nonzero(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """``params``, unless all are 0: then ``q / ‖θ‖^L`` is 0/0, a NaN, not a margin."""
    if not any(bool(p.ne(0).any()) for p in params):
        raise ValueError("the model's parameters are all zero: no direction, no margin. Train it (or "
                         "initialize it with init_scale > 0) before measuring its margin.")
    return params


def _flat(x: torch.Tensor | Sequence[torch.Tensor] | torch.nn.Module) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().reshape(-1)
    if hasattr(x, "parameters"):
        x = list(x.parameters())
    return torch.cat([t.detach().reshape(-1) for t in x])


def direction_cosine(a: torch.Tensor | Sequence[torch.Tensor] | torch.nn.Module,
                     b: torch.Tensor | Sequence[torch.Tensor] | torch.nn.Module) -> float:
    """Cosine between two parameter vectors (tensors, lists of tensors or models): the
    directional-convergence check ``cos(θ_t, θ_final)`` of the papers."""
    a, b = _flat(a), _flat(b)
    if a.shape != b.shape:
        raise ValueError(f"direction_cosine: sizes differ ({a.numel()} vs {b.numel()}).")
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        raise ValueError("direction_cosine: a zero vector has no direction.")
    return float(a @ b / (na * nb))
