"""Every update rule, written once, as a small pure transform over stacked parameters.

A rule maps the gradients of K runs to their step directions: every tensor has a leading
run dimension ``(K, …)`` and every number (β, ε, a weight decay) is a plain number shared
by the runs or a ``(K,)`` tensor with one value per run. It reads its state and returns a
new state; it never touches its inputs. The caller moves the parameters,
``θ ← θ − η_t · direction``. The ``torch.optim`` classes of :mod:`implicit_bias.optim` are
the K = 1 case; the batched engine (:mod:`implicit_bias.batched`) steps K runs at once.

Each rule declares its state entries under torch's names (``momentum_buffer``,
``exp_avg``, ``exp_avg_sq``, …) with their *order* in the gradient. The gradients come in
the units of a framed loss ``e^F L`` (:mod:`implicit_bias.frame`); when F moves by Δ an
entry of order k grows by ``e^{kΔ}``. An entry is an :class:`Entry`, tensors times a
per-run factor ``e^ℓ`` kept as its logarithm: :func:`rescale` adds ``kΔ`` to ℓ, one
operation however far F moved, and folds the factor into the tensors whenever that is
representable. So a state whose memory outlasts the loss (momentum, second moments while
the loss falls faster than they forget) never overflows; it is just far larger than the
current gradients, as it truly is. A new rule is one function registered here with
:func:`register`, plus its optimizer class or table row.

The pieces the rules share are here too: the moving average, the bias correction, the
division by a root with 0/0 := 0, ε in the units of the framed gradients.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from . import registry
from .norms import column

Tensors = list[torch.Tensor]
#: A hyperparameter or factor: one number, or a ``(K,)`` tensor with one per run.
Scalar = float | torch.Tensor
#: A rule: ``update(grads, state, hyper, steps, params)`` (see :class:`Rule`).
RuleFn = Callable[..., "Update"]

#: A factor ``e^ℓ`` is folded into an entry's tensors when its largest value times it stays
#: below ``e^FOLD`` (float64 overflows near e^709); :func:`fold_limit` scales it to other
#: dtypes (float32 overflows near e^88).
FOLD = 600.0


def fold_limit(dtype: torch.dtype) -> float:
    """:data:`FOLD` for ``dtype``: the same fraction of its exponent range as 600 of float64's
    (about 75 for float32)."""
    return FOLD * math.log(torch.finfo(dtype).max) / math.log(torch.finfo(torch.float64).max)


class Entry(NamedTuple):
    """A state entry: ``tensors[i] · e^{logs[i]}`` with ``logs[i]`` a ``(K,)`` tensor of
    per-run log-factors, or ``logs = None`` when every factor is 1 (the common case, and
    exactly the plain tensors)."""

    tensors: Tensors
    logs: list | None = None

    def values(self) -> Tensors:
        """The entry in the gradients' units (may overflow to inf: for reading only)."""
        if self.logs is None:
            return list(self.tensors)
        return [x * column(torch.exp(lg), x) for x, lg in zip(self.tensors, self.logs, strict=True)]


class Update(NamedTuple):
    """What a rule returns: the step directions, the new state entries (:class:`Entry`),
    and whether an ε = 0 division met 0/0 (a coordinate whose gradient has always been
    zero)."""

    directions: Tensors
    state: dict
    dead: bool = False


# --- the checks a hyperparameter declares ------------------------------------------------


def _is_number(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def check_beta(name: str, beta: float) -> None:
    if not (_is_number(beta) and 0.0 <= beta < 1.0):
        raise ValueError(f"{name} must lie in [0, 1), got {beta!r}.")


def check_betas(name: str, betas: tuple[float, float] | list[float]) -> None:
    """A pair ``(β1, β2)`` (as Adam's and Lion's), each in [0, 1)."""
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"{name} must be a pair (beta1, beta2) of numbers in [0, 1), got {betas!r}.")
    for i, beta in enumerate(betas, 1):
        check_beta(f"beta{i}", beta)


def check_nonnegative(name: str, x: float) -> None:
    if not (_is_number(x) and x >= 0):
        raise ValueError(f"{name} must be ≥ 0 (0 is allowed) and finite, got {x!r}.")


def check_positive(name: str, x: float) -> None:
    if not (_is_number(x) and x > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {x!r}.")


@dataclass(frozen=True)
class Knob:
    """A rule's hyperparameter: its default (the value an optimizer class generated from
    the rule uses when none is given) and the check a value must pass
    (``check(name, value)`` raises ``ValueError``)."""

    default: object = None
    check: Callable | None = None


@dataclass(frozen=True)
class Moment:
    """Where a rule keeps a moment of the gradient (``first``: m, ``second``: v): its state
    entry, and the knob whose bias correction ``1 − β^t`` divides it, as ``(knob, index)``
    (Adam's ``('betas', 1)`` for v) or None (RMSProp's and AdaGrad's v have none)."""

    entry: str
    correction: tuple[str, int] | None = None

    def corrected(self, value: torch.Tensor, group: Mapping[str, Any], step: int) -> torch.Tensor:
        """The moment's value (in the gradients' units) divided by its bias correction."""
        if self.correction is None:
            return value
        knob, index = self.correction
        return value / (1.0 - float(group[knob][index]) ** step)


@dataclass(frozen=True)
class Rule:
    """A registered rule: ``update(grads, state, hyper, steps, params) -> Update``.

    ``state`` maps each state entry to its order in the gradient; ``knobs`` are the
    hyperparameters it reads from a parameter group (name → :class:`Knob`), numbers that may
    differ from run to run (stacked as ``(K,)`` vectors, a tuple such as ``betas`` element
    by element); ``numbers`` are their names. ``options`` are entries that must be equal for
    runs to share one batched update (a norm, ``normalized``). ``hyper`` holds both, plus
    ``frame`` (F: the gradients are those of ``e^F L``) and, for rules that ask for it,
    ``grad_samples`` (per-sample gradients, ``(K, batch, …)`` each). ``optimizer``: the name
    of the ``torch.optim`` class :mod:`implicit_bias.optim` generates for the rule (None:
    its class is written by hand there, or it has none). ``moments``: its first and second
    moments (:class:`Moment`), which :mod:`implicit_bias.regime` and
    ``RuleOptimizer.root_second_moments`` read. ``gated``: state entries kept only while a
    knob is non-zero (the momentum buffer at ``momentum`` = 0 is not kept, as in torch)."""

    name: str
    update: Callable
    state: dict = field(default_factory=dict)
    numbers: tuple = ()
    options: tuple = ()
    per_sample: bool = False
    knobs: dict = field(default_factory=dict)
    optimizer: str | None = None
    moments: dict[str, Moment] = field(default_factory=dict)
    gated: dict[str, str] = field(default_factory=dict)


RULES: dict[str, Rule] = {}


@registry.entry
def register(name: str, fn: RuleFn, *, state: Mapping[str, float] | None = None, numbers: Sequence[str] = (),
             options: Sequence[str] = (), per_sample: bool = False, knobs: dict[str, Knob] | None = None,
             optimizer: str | None = None, moments: Mapping[str, Moment] | None = None,
             gated: Mapping[str, str] | None = None) -> None:
    """Register ``fn`` as the rule ``name`` (see :class:`Rule`), as every registry does
    (:mod:`implicit_bias.registry`): ``@register(name, **spec)`` on the update function, or
    ``register(name, fn, **spec)``. Its hyperparameters are ``knobs`` (name → :class:`Knob`:
    a default and a check); a name only listed in ``numbers`` is a knob with neither."""
    if name in RULES:
        raise ValueError(f"A rule named {name!r} is already registered.")
    if not callable(fn):
        raise TypeError(f"rule {name!r}: the update must be a function, got {fn!r}.")
    declared = {**{n: Knob() for n in numbers}, **dict(knobs or {})}
    kept = dict(state or {})
    for moment in (moments or {}).values():
        if moment.entry not in kept:
            raise ValueError(f"rule {name!r}: moment entry {moment.entry!r} is not in its state.")
    RULES[name] = Rule(name, fn, kept, tuple(declared), tuple(options), per_sample, declared,
                       optimizer, dict(moments or {}), dict(gated or {}))


def get(name: str | None) -> Rule:
    if name is None or name not in RULES:
        raise ValueError(f"Unknown update rule {name!r}; registered: {sorted(RULES)}. "
                         "Register a new one with implicit_bias.rules.register.")
    return RULES[name]


# --- shared pieces --------------------------------------------------------------------


def entry(state: dict, name: str, like: Tensors) -> Entry:
    """State entry ``name``, zeros on the first step."""
    return state.get(name) or Entry([torch.zeros_like(x) for x in like])


def _exp(x: Scalar) -> Scalar:
    """``e^x`` of a number (inf past float64's range, as torch's) or of a tensor."""
    if torch.is_tensor(x):
        return torch.exp(x)
    return math.exp(x) if x < 709.0 else math.inf


def ema(avg: Entry, xs: Tensors, beta: Scalar, squared: bool = False, weight: Scalar | None = None) -> Entry:
    """Exponential moving average ``β·avg + w·x`` with ``w = 1 − β`` (momentum, Adam's
    moments; AdaGrad's sum is ``β = w = 1``), of ``|x|²`` with ``squared``. The new entry's
    factor is the larger of the old one and 1 (the gradients' units), so neither term can
    overflow; the smaller one may underflow, which is what it amounts to. One β for every
    run (the optimizers' K = 1 case) takes two passes over memory, as ``torch.optim``."""
    w = 1.0 - beta if weight is None else weight
    if avg.logs is None:
        out = []
        for a, x in zip(avg.tensors, xs, strict=True):
            if torch.is_tensor(beta) or torch.is_tensor(w):
                out.append(a * column(beta, x) + (x * x.conj() if squared else x) * column(w, x))
                continue
            new = a * beta
            out.append(new.addcmul_(x, x.conj(), value=w) if squared else new.add_(x, alpha=w))
        return Entry(out)
    tensors, logs = [], []
    for a, x, lg in zip(avg.tensors, xs, avg.logs, strict=True):
        top = lg.clamp(min=0.0)
        tensors.append(a * column(beta * torch.exp(lg - top), a)
                       + (x * x.conj() if squared else x) * column(w * torch.exp(-top), x))
        logs.append(top)
    return settled(Entry(tensors, logs))


def settled(e: Entry) -> Entry:
    """The same entry with every factor folded into its tensor where the result stays below
    ``e^FOLD``, and the tensor scaled to largest value 1 where it does not."""
    if e.logs is None:
        return e
    tensors, logs = [], []
    for x, lg in zip(e.tensors, e.logs, strict=True):
        top = x.reshape(x.shape[0], -1).abs().amax(dim=1)
        top = torch.where(top > 0, top, torch.ones_like(top))
        log = lg + torch.log(top)  # the factor of x / top
        fold = log < fold_limit(x.dtype)
        unit = x / column(top, x)  # first: e^log / top itself may overflow
        tensors.append(unit * column(torch.where(fold, torch.exp(torch.where(fold, log, 0.0)), 1.0), x))
        logs.append(torch.where(fold, torch.zeros_like(log), log))
    if all(not bool(lg.any()) for lg in logs):
        return Entry(tensors)
    return Entry(tensors, logs)


def aligned(e: Entry) -> tuple[Tensors, torch.Tensor | None]:
    """The entry's tensors at one factor per run, and its log (None when 1): what a rule
    that couples tensors (a norm over all of them) needs."""
    if e.logs is None:
        return list(e.tensors), None
    top = torch.stack(e.logs).amax(dim=0)
    return [x * column(torch.exp(lg - top), x) for x, lg in zip(e.tensors, e.logs, strict=True)], top


def log_factors(e: Entry, like: Tensors) -> list:
    """Each tensor's per-run log-factor (0 when the entry has none)."""
    return e.logs if e.logs is not None else [0.0] * len(like)


def bias_correction(beta: Scalar, steps: list[int]) -> list:
    """``1 − β^t`` for each tensor's own step count t (``steps``)."""
    factors = {t: 1.0 - _power(beta, t) for t in set(steps)}
    return [factors[t] for t in steps]


def _power(beta: Scalar, t: int) -> Scalar:
    return beta**t if torch.is_tensor(beta) else math.pow(beta, t)


def eps_in_gradient_units(eps: Scalar, log_scale: Scalar) -> Scalar:
    """ε in units of ``e^{log_scale}`` (the framed gradients: ``log_scale = F``), ``ε e^F``;
    inf past float64's range. ε = 0 stays 0 (0·inf would be NaN)."""
    if torch.is_tensor(eps) or torch.is_tensor(log_scale):
        eps, log_scale = torch.as_tensor(eps), torch.as_tensor(log_scale)
        return torch.where(eps > 0, eps * torch.exp(log_scale), torch.zeros_like(eps * 1.0))
    return eps * _exp(log_scale) if eps > 0 else 0.0


def scaled_by_root(xs: Tensors, accs: Tensors, eps: Scalar | list[Scalar], x_scales: list | None = None,
                   acc_scales: list | None = None, root_factors: list | None = None) -> tuple[Tensors, bool]:
    """``(x / c_x) / (r·√(acc / c_acc) + ε)`` with 0/0 := 0, tensor by tensor (RMSProp,
    AdaGrad and Adam's shared shape). ``c_x``, ``c_acc`` (Adam's bias corrections) and ``r``
    (the ratio of the two entries' factors) are per-tensor numbers or ``(K,)`` tensors,
    folded into the denominator so that each tensor takes few passes over memory; ``eps``
    is one value or a list of per-tensor values.

    Returns the directions and whether any 0/0 occurred."""
    out, dead_any = [], False
    for i, (x, acc) in enumerate(zip(xs, accs, strict=True)):
        e = eps[i] if isinstance(eps, list) else eps
        denom = acc.sqrt()
        if root_factors is not None:
            denom.mul_(column(root_factors[i], acc))
        if acc_scales is not None:
            denom.div_(column(acc_scales[i], acc) ** 0.5)
        denom.add_(column(e, acc))
        if x_scales is not None:
            denom.mul_(column(x_scales[i], acc))
        if not torch.is_tensor(e) and e > 0:  # nothing can be 0/0
            out.append(x / denom)
            continue
        dead = denom == 0
        if bool(dead.any()):
            dead_any = True
            out.append(torch.where(dead, torch.zeros_like(x), x / torch.where(dead, 1.0, denom)))
        else:
            out.append(x / denom)
    return out, dead_any


def decoupled_decay(directions: Tensors, params: Tensors, weight_decay: Scalar) -> Tensors:
    """``d + λθ``: the step ``θ ← θ − η(d + λθ)`` decays the weights apart from the
    gradient statistics (Loshchilov & Hutter 2019)."""
    if not torch.is_tensor(weight_decay) and weight_decay == 0:
        return directions
    return [d + column(weight_decay, p) * p for d, p in zip(directions, params, strict=True)]


def _any_positive(x: Scalar) -> bool:
    return bool((x > 0).any()) if torch.is_tensor(x) else x > 0


def rescale(rule: Rule, state: dict, delta: Scalar) -> dict:
    """The state after the frame F moved by ``delta`` (a number, or a ``(K,)`` tensor with one
    per run): each entry's log-factor grows by its order times ``delta``, one operation
    however large ``delta`` is, and then settles (:func:`settled`). It cannot overflow."""
    out = {}
    for name, e in state.items():
        order = rule.state.get(name)
        if order is None:
            out[name] = e
            continue
        K = e.tensors[0].shape[0]
        step = torch.as_tensor(delta, dtype=e.tensors[0].dtype, device=e.tensors[0].device).expand(K) * order
        logs = [lg + step for lg in e.logs] if e.logs is not None else [step.clone() for _ in e.tensors]
        out[name] = settled(Entry(e.tensors, logs))
    return out


# --- the rules ---------------------------------------------------------------------------


@register("steepest", state={"momentum_buffer": 1},
          knobs={"momentum": Knob(0.0, check_beta), "weight_decay": Knob(0.0, check_nonnegative)},
          options=("norm", "normalized"), gated={"momentum_buffer": "momentum"})
def steepest(grads: Tensors, state: dict[str, Entry], hyper: dict[str, Any], steps: list[int],
             params: Tensors) -> Update:
    """(Momentum) steepest descent for ``hyper['norm']``: ``m ← β m + (1−β) g``, then the
    unit-norm ``u`` with ``<u, m> = ‖m‖_*`` (normalized) or ``‖m‖_* · u``, in the units of
    the plain loss (for ℓ2: plain gradient descent), plus the decoupled weight decay ``λθ``
    (``weight_decay``; 0: none): normalized, its fixed points lie on the norm's sphere of
    radius 1/λ."""
    new, log = {}, None
    if _any_positive(hyper["momentum"]):
        m = new["momentum_buffer"] = ema(entry(state, "momentum_buffer", grads), grads, hyper["momentum"])
        grads, log = aligned(m)
    norm = hyper["norm"]
    u = norm.steepest_stacked(grads)
    if not hyper["normalized"]:
        frame = hyper["frame"]
        scale = norm.dual_stacked(grads) * _exp(-frame if log is None else log - frame)
        u = [x * column(scale, x) for x in u]
    # a caller's hyperparameters from before the knob: no decay
    return Update(decoupled_decay(u, params, hyper.get("weight_decay", 0.0)), new)


ADAM_STATE = {"exp_avg": 1, "exp_avg_sq": 2}


ADAM_KNOBS = {"betas": Knob((0.9, 0.999), check_betas), "eps": Knob(1e-8, check_nonnegative)}
#: Adam's m and v, each divided by its bias correction (β1 and β2 of ``betas``).
ADAM_MOMENTS = {"first": Moment("exp_avg", ("betas", 0)), "second": Moment("exp_avg_sq", ("betas", 1))}


@register("adam", state=ADAM_STATE, knobs=ADAM_KNOBS, moments=ADAM_MOMENTS)
def adam(grads: Tensors, state: dict[str, Entry], hyper: dict[str, Any], steps: list[int],
         params: Tensors) -> Update:
    """Adam (Kingma & Ba 2015): ``m̂ / (√v̂ + ε)`` with bias correction; ε may be 0."""
    b1, b2 = hyper["betas"]
    m = ema(entry(state, "exp_avg", grads), grads, b1)
    v = ema(entry(state, "exp_avg_sq", grads), grads, b2, squared=True)
    frame = hyper["frame"]
    eps: Scalar | list[Scalar]
    if m.logs is None and v.logs is None:
        eps, roots = eps_in_gradient_units(hyper["eps"], frame), None
    else:  # m = M e^{ℓ1}, v = V e^{ℓ2}: m̂/(√v̂ + ε) = M̂ / (e^{ℓ2/2 − ℓ1} √V̂ + ε e^{F − ℓ1})
        l1, l2 = log_factors(m, grads), log_factors(v, grads)
        eps = [eps_in_gradient_units(hyper["eps"], frame - a) for a in l1]
        roots = [_exp(b / 2 - a) for a, b in zip(l1, l2, strict=True)]
    c1, c2 = bias_correction(b1, steps), bias_correction(b2, steps)
    u, dead = scaled_by_root(m.tensors, v.tensors, eps, c1, c2, roots)
    return Update(u, {"exp_avg": m, "exp_avg_sq": v}, dead)


@register("adamw", state=ADAM_STATE, knobs={**ADAM_KNOBS, "weight_decay": Knob(0.01, check_nonnegative)},
          moments=ADAM_MOMENTS)
def adamw(grads: Tensors, state: dict[str, Entry], hyper: dict[str, Any], steps: list[int],
          params: Tensors) -> Update:
    """AdamW: Adam's direction plus the decoupled weight decay ``λθ``."""
    step = adam(grads, state, hyper, steps, params)
    return step._replace(directions=decoupled_decay(step.directions, params, hyper["weight_decay"]))


@register("lion", state={"exp_avg": 1},
          knobs={"betas": Knob((0.9, 0.99), check_betas), "weight_decay": Knob(0.0, check_nonnegative)})
def lion(grads: Tensors, state: dict[str, Entry], hyper: dict[str, Any], steps: list[int],
         params: Tensors) -> Update:
    """Lion (Chen et al. 2023): ``sign(β1 m + (1−β1) g)``, then ``m ← β2 m + (1−β2) g``,
    plus the decoupled weight decay. Without decay it is steepest descent for ℓ∞ on an
    interpolated momentum."""
    b1, b2 = hyper["betas"]
    m = entry(state, "exp_avg", grads)
    u = [torch.sign(x) for x in ema(m, grads, b1).tensors]  # a positive factor keeps the sign
    return Update(decoupled_decay(u, params, hyper["weight_decay"]), {"exp_avg": ema(m, grads, b2)})


def _by_root(grads: Tensors, acc: Entry, hyper: dict[str, Any]) -> tuple[Tensors, bool]:
    """``g / (√acc + ε)`` for an entry ``acc`` with a factor: ``g / (e^{ℓ/2}√A + ε e^F)``."""
    eps = eps_in_gradient_units(hyper["eps"], hyper["frame"])
    roots = None if acc.logs is None else [torch.exp(lg / 2) for lg in acc.logs]
    return scaled_by_root(grads, acc.tensors, eps, root_factors=roots)


@register("rmsprop", state={"square_avg": 2, "momentum_buffer": 0},
          knobs={"beta2": Knob(0.99, check_beta), "eps": Knob(1e-8, check_nonnegative),
                 "momentum": Knob(0.0, check_beta)},
          moments={"second": Moment("square_avg")}, gated={"momentum_buffer": "momentum"})
def rmsprop(grads: Tensors, state: dict[str, Entry], hyper: dict[str, Any], steps: list[int],
            params: Tensors) -> Update:
    """RMSProp: ``v ← β2 v + (1−β2) g²``, direction ``g / (√v + ε)``; with torch's
    ``momentum`` μ > 0, the buffer ``b ← μ b + g / (√v + ε)`` (a direction: order 0)."""
    v = ema(entry(state, "square_avg", grads), grads, hyper["beta2"], squared=True)
    u, dead = _by_root(grads, v, hyper)
    new = {"square_avg": v}
    if _any_positive(hyper["momentum"]):
        new["momentum_buffer"] = ema(entry(state, "momentum_buffer", u), u, hyper["momentum"], weight=1.0)
        u = new["momentum_buffer"].tensors
    return Update(u, new, dead)


@register("adagrad", state={"sum": 2}, knobs={"eps": Knob(1e-10, check_nonnegative)},
          moments={"second": Moment("sum")})
def adagrad(grads: Tensors, state: dict[str, Entry], hyper: dict[str, Any], steps: list[int],
            params: Tensors) -> Update:
    """AdaGrad: ``G ← G + g²``, direction ``g / (√G + ε)``."""
    acc = ema(entry(state, "sum", grads), grads, 1.0, squared=True, weight=1.0)
    u, dead = _by_root(grads, acc, hyper)
    return Update(u, {"sum": acc}, dead)


@register("adam_proxy", per_sample=True)
def adam_proxy(grads: Tensors, state: dict[str, Entry], hyper: dict[str, Any], steps: list[int],
               params: Tensors) -> Update:
    """AdamProxy (Baek, Song & Yun 2025), the β2 → 1 limit of per-sample Adam:
    ``∇L / sqrt(Σ_i ∇L_i²)`` coordinate-wise over the batch's per-sample gradients. The
    direction does not depend on the loss's scale, so it needs no state."""
    sums = [(s * s.conj()).sum(dim=1) for s in hyper["grad_samples"]]
    u, dead = scaled_by_root(grads, sums, 0.0)
    return Update(u, {}, dead)



@register("adam_clip", state=ADAM_STATE, knobs={**ADAM_KNOBS, "clip": Knob(1.0, check_positive)},
          optimizer="ClippedAdam", moments=ADAM_MOMENTS)
def adam_clip(grads: Tensors, state: dict[str, Entry], hyper: dict[str, Any], steps: list[int],
              params: Tensors) -> Update:
    """Adam with its step clipped coordinate-wise at ``clip`` (the update clipping of
    Adafactor, and of Sophia's clipped ratio): ``clamp(m̂ / (√v̂ + ε), −clip, clip)``. With
    ``clip`` ≥ 1 and β1 ≤ β2 it is Adam (its steps stay below Kingma & Ba's bound, about 1);
    smaller, it steps like sign descent wherever Adam would take a full step."""
    step = adam(grads, state, hyper, steps, params)
    c = hyper["clip"]
    clipped = [torch.minimum(torch.maximum(u, -column(c, u)), column(c, u)) if torch.is_tensor(c)
               else u.clamp(-c, c) for u in step.directions]
    return step._replace(directions=clipped)

__all__ = ["RULES", "Rule", "Knob", "Moment", "Entry", "Update", "register", "get", "check_beta",
           "check_betas", "check_nonnegative", "check_positive", "ADAM_KNOBS", "ADAM_MOMENTS",
           "rescale", "ema", "settled", "aligned", "entry", "bias_correction", "scaled_by_root",
           "eps_in_gradient_units", "decoupled_decay", "FOLD", "fold_limit"]
