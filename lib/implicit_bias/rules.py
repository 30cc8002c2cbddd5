"""Every update rule, written once, as a small pure transform over stacked parameters.

A rule maps the gradients of K runs to their step directions: every tensor has a leading
run dimension ``(K, …)`` and every number (β, ε, a weight decay) is a plain number shared
by the runs or a ``(K,)`` tensor with one value per run. It reads its state and returns a
new state; it never touches its inputs. The caller moves the parameters,
``θ ← θ − η_t · direction``. The ``torch.optim`` classes of :mod:`implicit_bias.optim` are
the K = 1 case; the batched engine (:mod:`implicit_bias.engine`) steps K runs at once.

Each rule declares its state entries under torch's names (``momentum_buffer``,
``exp_avg``, ``exp_avg_sq``, …) with their *order* in the gradient: under a rescaled
("framed") loss the gradients grow by a factor c, and an entry of order k is multiplied
by c^k (:func:`rescale`), so the trajectory does not change. A new rule is one function
registered here with :func:`register`, plus its optimizer class or table row.

The pieces the rules share are here too: the moving average, the bias correction, the
division by a root with 0/0 := 0, ε in the units of the framed gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from .norms import column

Tensors = list[torch.Tensor]


class Update(NamedTuple):
    """What a rule returns: the step directions, the new state entries, and whether an
    ε = 0 division met 0/0 (a coordinate whose gradient has always been zero)."""

    directions: Tensors
    state: dict
    dead: bool = False


@dataclass(frozen=True)
class Rule:
    """A registered rule: ``update(grads, state, hyper, steps, params) -> Update``.

    ``state`` maps each state entry to its order in the gradient; ``numbers`` are the
    parameter-group entries that may differ from run to run (stacked as ``(K,)`` vectors,
    a tuple such as ``betas`` element by element); ``options`` are entries that must be
    equal for runs to share one batched update (a norm, ``normalized``). ``hyper`` holds
    both, plus ``grad_scale`` (the framed loss's factor) and, for rules that ask for it,
    ``grad_samples`` (per-sample gradients, ``(K, batch, …)`` each)."""

    name: str
    update: Callable
    state: dict = field(default_factory=dict)
    numbers: tuple = ()
    options: tuple = ()
    per_sample: bool = False


RULES: dict[str, Rule] = {}


def register(name: str, state=None, numbers=(), options=(), per_sample: bool = False):
    """Decorator: register ``fn`` as the rule ``name`` (see :class:`Rule`)."""

    def wrap(fn):
        if name in RULES:
            raise ValueError(f"A rule named {name!r} is already registered.")
        RULES[name] = Rule(name, fn, dict(state or {}), tuple(numbers), tuple(options), per_sample)
        return fn

    return wrap


def get(name: str) -> Rule:
    if name not in RULES:
        raise ValueError(f"Unknown update rule {name!r}; registered: {sorted(RULES)}. "
                         "Register a new one with implicit_bias.rules.register.")
    return RULES[name]


# --- shared pieces --------------------------------------------------------------------


def buffer(state: dict, name: str, like: Tensors) -> Tensors:
    """State entry ``name``, zeros on the first step."""
    return state.get(name) or [torch.zeros_like(x) for x in like]


def ema(avg: Tensors, xs: Tensors, beta, squared: bool = False) -> Tensors:
    """Exponential moving average ``β·avg + (1 − β)·x`` (momentum, Adam's moments), of
    ``x²`` with ``squared``. One β for every run (the optimizers' K = 1 case) takes two
    passes over memory, as ``torch.optim`` does."""
    out = []
    for a, x in zip(avg, xs, strict=True):
        if not torch.is_tensor(beta):
            new = a * beta
            out.append(new.addcmul_(x, x, value=1.0 - beta) if squared else new.add_(x, alpha=1.0 - beta))
            continue
        b = column(beta, x)
        out.append(a * b + (x * x if squared else x) * (1.0 - b))
    return out


def bias_correction(beta, steps) -> list:
    """``1 − β^t`` for each tensor's own step count t (``steps``)."""
    factors = {t: 1.0 - _power(beta, t) for t in set(steps)}
    return [factors[t] for t in steps]


def _power(beta, t: int):
    return beta**t if torch.is_tensor(beta) else math.pow(beta, t)


def eps_in_gradient_units(eps, grad_scale):
    """ε in the units of the framed gradients, ``ε · e^F``. The scale e^F overflows to inf
    once the loss is below ~1e−308; ε = 0 must then stay 0 (0·inf would be NaN)."""
    if torch.is_tensor(eps) or torch.is_tensor(grad_scale):
        eps, grad_scale = torch.as_tensor(eps), torch.as_tensor(grad_scale)
        return torch.where(eps > 0, eps * grad_scale, torch.zeros_like(eps * 1.0))
    return eps * grad_scale if eps > 0 else 0.0


def scaled_by_root(xs: Tensors, accs: Tensors, eps, x_scales=None, acc_scales=None) -> tuple[Tensors, bool]:
    """``(x / c_x) / (√(acc / c_acc) + ε)`` with 0/0 := 0 (RMSProp, AdaGrad and Adam's
    shared shape; ``c_x``, ``c_acc``: per-tensor factors such as Adam's bias corrections,
    folded into the denominator so that each tensor takes few passes over memory).

    Returns the directions and whether any 0/0 occurred."""
    out, dead_any = [], False
    for i, (x, acc) in enumerate(zip(xs, accs, strict=True)):
        denom = acc.sqrt()
        if acc_scales is not None:
            denom.div_(column(acc_scales[i], acc) ** 0.5)
        denom.add_(column(eps, acc))
        if x_scales is not None:
            denom.mul_(column(x_scales[i], acc))
        if not torch.is_tensor(eps) and eps > 0:  # nothing can be 0/0
            out.append(x / denom)
            continue
        dead = denom == 0
        if bool(dead.any()):
            dead_any = True
            out.append(torch.where(dead, torch.zeros_like(x), x / torch.where(dead, 1.0, denom)))
        else:
            out.append(x / denom)
    return out, dead_any


def decoupled_decay(directions: Tensors, params: Tensors, weight_decay) -> Tensors:
    """``d + λθ``: the step ``θ ← θ − η(d + λθ)`` decays the weights apart from the
    gradient statistics (Loshchilov & Hutter 2019)."""
    if not torch.is_tensor(weight_decay) and weight_decay == 0:
        return directions
    return [d + column(weight_decay, p) * p for d, p in zip(directions, params, strict=True)]


def _any_positive(x) -> bool:
    return bool((x > 0).any()) if torch.is_tensor(x) else x > 0


class StateOverflow(FloatingPointError):
    """Rescaling a state entry overflowed; ``runs`` are the positions (along the run
    dimension) of the runs whose entry is no longer finite."""

    def __init__(self, entry: str, runs: list[int]):
        super().__init__(
            f"rescaling the optimizer state ({entry}) to the new loss frame overflowed: the loss "
            "fell faster than the optimizer's memory decays, beyond float64's range. Lower the "
            "learning rate or use a decaying schedule.")
        self.entry, self.runs = entry, runs


def rescale(rule: Rule, state: dict, ratio) -> dict:
    """The state under a loss multiplied by ``ratio`` (a number or one per run): each entry
    times ``ratio^order``. Raises :class:`StateOverflow` if an entry overflows."""
    out = {}
    for name, tensors in state.items():
        order = rule.state.get(name)
        if order is None:
            out[name] = tensors
            continue
        scaled = []
        for x in tensors:
            c = column(ratio, x)
            for _ in range(order):  # one product per order: ratio**2 overflows above 1e154
                x = x * c
            bad = ~x.reshape(x.shape[0], -1).isfinite().all(dim=1)
            if bool(bad.any()):
                raise StateOverflow(name, bad.nonzero()[:, 0].tolist())
            scaled.append(x)
        out[name] = scaled
    return out


# --- the rules ---------------------------------------------------------------------------


@register("steepest", state={"momentum_buffer": 1}, numbers=("momentum",),
          options=("norm", "normalized"))
def steepest(grads, state, hyper, steps, params) -> Update:
    """(Momentum) steepest descent for ``hyper['norm']``: ``m ← β m + (1−β) g``, then the
    unit-norm ``u`` with ``<u, m> = ‖m‖_*`` (normalized) or ``‖m‖_* · u``, the gradient
    scale of a framed loss divided out (for ℓ2: plain gradient descent)."""
    new = {}
    if _any_positive(hyper["momentum"]):
        grads = new["momentum_buffer"] = ema(buffer(state, "momentum_buffer", grads), grads,
                                             hyper["momentum"])
    norm = hyper["norm"]
    u = norm.steepest_stacked(grads)
    if not hyper["normalized"]:
        scale = norm.dual_stacked(grads) / hyper["grad_scale"]
        u = [x * column(scale, x) for x in u]
    return Update(u, new)


ADAM_STATE = {"exp_avg": 1, "exp_avg_sq": 2}


@register("adam", state=ADAM_STATE, numbers=("betas", "eps"))
def adam(grads, state, hyper, steps, params) -> Update:
    """Adam (Kingma & Ba 2015): ``m̂ / (√v̂ + ε)`` with bias correction; ε may be 0."""
    b1, b2 = hyper["betas"]
    m = ema(buffer(state, "exp_avg", grads), grads, b1)
    v = ema(buffer(state, "exp_avg_sq", grads), grads, b2, squared=True)
    eps = eps_in_gradient_units(hyper["eps"], hyper["grad_scale"])
    u, dead = scaled_by_root(m, v, eps, bias_correction(b1, steps), bias_correction(b2, steps))
    return Update(u, {"exp_avg": m, "exp_avg_sq": v}, dead)


@register("adamw", state=ADAM_STATE, numbers=("betas", "eps", "weight_decay"))
def adamw(grads, state, hyper, steps, params) -> Update:
    """AdamW: Adam's direction plus the decoupled weight decay ``λθ``."""
    step = adam(grads, state, hyper, steps, params)
    return step._replace(directions=decoupled_decay(step.directions, params, hyper["weight_decay"]))


@register("lion", state={"exp_avg": 1}, numbers=("betas", "weight_decay"))
def lion(grads, state, hyper, steps, params) -> Update:
    """Lion (Chen et al. 2023): ``sign(β1 m + (1−β1) g)``, then ``m ← β2 m + (1−β2) g``,
    plus the decoupled weight decay. Without decay it is steepest descent for ℓ∞ on an
    interpolated momentum."""
    b1, b2 = hyper["betas"]
    m = buffer(state, "exp_avg", grads)
    u = [torch.sign(x) for x in ema(m, grads, b1)]
    return Update(decoupled_decay(u, params, hyper["weight_decay"]), {"exp_avg": ema(m, grads, b2)})


@register("rmsprop", state={"square_avg": 2}, numbers=("beta2", "eps"))
def rmsprop(grads, state, hyper, steps, params) -> Update:
    """RMSProp: ``v ← β2 v + (1−β2) g²``, direction ``g / (√v + ε)``."""
    v = ema(buffer(state, "square_avg", grads), grads, hyper["beta2"], squared=True)
    u, dead = scaled_by_root(grads, v, eps_in_gradient_units(hyper["eps"], hyper["grad_scale"]))
    return Update(u, {"square_avg": v}, dead)


@register("adagrad", state={"sum": 2}, numbers=("eps",))
def adagrad(grads, state, hyper, steps, params) -> Update:
    """AdaGrad: ``G ← G + g²``, direction ``g / (√G + ε)``."""
    acc = [a + g * g for a, g in zip(buffer(state, "sum", grads), grads, strict=True)]
    u, dead = scaled_by_root(grads, acc, eps_in_gradient_units(hyper["eps"], hyper["grad_scale"]))
    return Update(u, {"sum": acc}, dead)


@register("adam_proxy", per_sample=True)
def adam_proxy(grads, state, hyper, steps, params) -> Update:
    """AdamProxy (Baek, Song & Yun 2025), the β2 → 1 limit of per-sample Adam:
    ``∇L / sqrt(Σ_i ∇L_i²)`` coordinate-wise over the batch's per-sample gradients. The
    direction does not depend on the loss's scale, so it needs no state."""
    sums = [(s * s).sum(dim=1) for s in hyper["grad_samples"]]
    u, dead = scaled_by_root(grads, sums, 0.0)
    return Update(u, {}, dead)


__all__ = ["RULES", "Rule", "Update", "StateOverflow", "register", "get", "rescale", "ema", "bias_correction",
           "scaled_by_root", "eps_in_gradient_units", "decoupled_decay", "buffer"]
