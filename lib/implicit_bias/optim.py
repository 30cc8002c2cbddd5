"""Optimizers as ``torch.optim.Optimizer`` subclasses over the rules of :mod:`rules`.

Every parameter group names a registered ``rule`` (``steepest`` with a norm, ``adam``,
``adamw``, ``lion``, ``rmsprop``, ``adagrad``, ``adam_proxy``, or a user's own); its step
is that rule at K = 1, the very code the batched engine runs for K runs. So a hybrid such
as Muon-Adam is two groups with different rules.

They behave like ``torch.optim``: parameters whose ``grad`` is None are skipped;
``add_param_group`` works; the state has torch's names (``momentum_buffer``, ``exp_avg``,
``exp_avg_sq``, ``step``); ``state_dict()`` loads with ``torch.load(weights_only=True)``
(a norm is stored by its name and restored from the live optimizer); Adam-like groups
carry ``betas`` as torch's do, so schedulers such as ``OneCycleLR`` can cycle them. (A
hybrid such as Muon-Adam has ``momentum`` in one group and ``betas`` in the other, which
torch's ``OneCycleLR`` cannot cycle together: give it ``cycle_momentum=False``.)

**Parameter groups are geometry.** Each group is stepped on its own: a steepest-descent
group's norm is taken over that group's parameters only. One group (the default) is
steepest descent for the norm of all parameters; with groups ``G_1, G_2, …`` at rates
``η_1, η_2, …`` the step is steepest descent for the weighted max norm
``max_g ‖θ_g‖ / η_g`` (:class:`norms.MaxNorm`) — the structure of the hybrid optimizers,
which is exactly how Muon-Signum and Muon-Adam are built. Keep parameters in one group
to keep one geometry.

All optimizers support a rescaled ("framed") loss: after ``rescale_gradients(c)`` the
incoming gradients are taken to be ``c`` times larger and each state entry is rescaled by
``c`` to its order (:func:`rules.rescale`), so the trajectory is unchanged while the loss
itself stays representable (Lyu & Li 2019, App. on the loss "frame").
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast, overload

import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.optimizer import ParamsT

from . import registry, rules
from .norms import L1, L2, Linf, Norm, Spectral, as_matrix, as_norm, matrix_indices
from .warn import user_stacklevel

#: ``betas`` as a caller may give them (a group stores the tuple).
_Betas = tuple[float, float] | list[float]


def _check_lr(lr: float) -> None:
    if not (rules._is_number(lr) and lr >= 0):
        hint = ": pass float(lr)" if torch.is_tensor(lr) else ""
        raise ValueError(f"Learning rate must be a finite number ≥ 0, got {lr!r}{hint}.")


def _check_flag(name: str, x: bool) -> None:
    if not isinstance(x, bool):
        raise TypeError(f"{name} must be True or False, got {x!r}.")


def _pair(betas: _Betas) -> tuple[float, ...]:
    """``betas`` as the tuple a group stores (checked by the rule's knob, :func:`check_group`)."""
    rules.check_betas("betas", betas)
    return tuple(betas)


def check_group(group: dict[str, Any]) -> None:
    """Validate a parameter group's rule and numbers (clear errors before any step): each of
    the rule's knobs (:class:`rules.Knob`) by its own check."""
    rule = rules.get(group.get("rule"))
    _check_lr(group["lr"])
    _knob_defaults(group)
    for key in rule.options:
        if key not in group:
            raise ValueError(f"A '{rule.name}' parameter group needs '{key}'.")
    for key, knob in rule.knobs.items():
        if knob.check is not None:
            knob.check(key, group[key])
    if "normalized" in group:
        _check_flag("normalized", group["normalized"])
    if "norm" in rule.options:
        if not isinstance(group["norm"], Norm):
            raise TypeError(f"norm must be an implicit_bias.norms.Norm, got {group['norm']!r}.")
        group["norm"].check(group["params"])


def _knob_defaults(group: dict[str, Any]) -> None:
    """A group without one of its rule's knobs takes the knob's default, as torch's groups
    take the optimizer's defaults (and its checkpoints from before a knob existed load)."""
    for key, knob in rules.get(group.get("rule")).knobs.items():
        group.setdefault(key, knob.default)


def warn_dead_coordinates() -> None:
    """The warning for a 0/0 step of an ε = 0 adaptive method (see ``rules.scaled_by_root``),
    pointing at the user's line (:func:`warn.user_stacklevel`)."""
    warnings.warn(
        "eps = 0 and some coordinate has had an exactly zero gradient at every step "
        "(a constant-zero input feature or a dead unit): its step is set to 0, the "
        "eps -> 0 limit (an eps > 0 gives the same zero step, so it only hides this "
        "warning). The Adam theorem assumes non-zero first gradients: drop constant-zero "
        "features, or re-draw dead units.",
        RuntimeWarning,
        stacklevel=user_stacklevel(),
    )


def _one(xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Tensors as a stack of one run (the rules' K = 1 case)."""
    return [x.unsqueeze(0) for x in xs]


#: torch.optim's implementation flags, taken by every optimizer here as torch's are: the
#: value each may take, and why another is refused. ``foreach`` and ``fused`` choose how
#: torch computes the same update, so any value is accepted (the update here is already
#: one pass per group, and the batched engine stacks runs).
TORCH_FLAGS: dict[str, tuple[object, str | None]] = {
    "foreach": (None, None),
    "fused": (None, None),
    "capturable": (False, "CUDA-graph capture is not supported"),
    "differentiable": (False, "steps are taken under torch.no_grad(): differentiating through an "
                              "optimizer step is not supported"),
    "maximize": (False, "the theorems are about minimizing a loss: minimize its negative instead"),
    "amsgrad": (False, "AMSGrad is not implemented (its running max of v̂ changes the limit the "
                       "theorems describe)"),
    "weight_decay": (0.0, "this optimizer has no weight decay: torch's weight_decay here would be a "
                          "coupled L2 penalty λθ added to the gradient, which changes the margin problem. "
                          "Use AdamW (decoupled), or add the penalty to your loss"),
}


def _torch_flags(name: str, flags: dict[str, object]) -> None:
    for flag, value in flags.items():
        default, why = TORCH_FLAGS[flag]
        if why is not None and value != default and not (default is False and value is None):
            raise ValueError(f"{name}({flag}={value!r}) is not supported: {why}.")


class RuleOptimizer(torch.optim.Optimizer):
    """Base class: steps each parameter group with the rule it names (K = 1).

    Every subclass takes torch's flags (:data:`TORCH_FLAGS`) as keywords, as torch's
    optimizers do: at their defaults they change nothing, ``foreach`` and ``fused`` are
    accepted at any value, and any other value is refused with the reason."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_takes_torch_flags", False):
            return
        own = set(inspect.signature(init).parameters)  # a flag it takes itself keeps its meaning
        taken = [f for f in TORCH_FLAGS if f not in own]

        @functools.wraps(init)
        def __init__(self: RuleOptimizer, *args: Any, **kw: Any) -> None:
            flags = {f: kw.pop(f) for f in taken if f in kw}
            _torch_flags(cls.__name__, flags)
            init(self, *args, **kw)

        vars(__init__)["_takes_torch_flags"] = True  # a function attribute (mypy knows of none)
        cls.__init__ = __init__  # type: ignore[method-assign]  # replacing the subclass's __init__ is the point

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self._warned_dead = False
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # load_state_dict comes through here, as torch's own optimizers do
        for group in self.param_groups:
            if "rule" in group:
                _knob_defaults(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """As torch's, and the group joins the optimizer's loss frame and is validated."""
        frame = self.param_groups[0]["frame"] if self.param_groups else 0.0
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group.setdefault("frame", frame)
        try:
            check_group(group)
        except (ValueError, TypeError):
            self.param_groups.pop()
            raise

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._step_group(group, params)
        return loss

    def _step_group(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        rule = rules.get(group["rule"])
        grads = cast(list[torch.Tensor], [p.grad for p in params])  # step() passes those with a grad
        _check_finite(grads, group, params)
        states = [self.state[p] for p in params]
        steps = [s.get("step", 0) + 1 for s in states]
        state = {name: _entry(states, params, name) for name in rule.state if any(name in s for s in states)}
        hyper = {key: group[key] for key in rule.numbers + rule.options}
        hyper["frame"] = group["frame"]
        if rule.per_sample:
            hyper["grad_samples"] = _one(_grad_samples(params))
        update = rule.update(_one(grads), state, hyper, steps, _one(params))
        for s, t in zip(states, steps):
            s["step"] = t
        for name, e in update.state.items():
            store_entry(states, name, e)
        torch._foreach_add_(params, [d[0] for d in update.directions], alpha=-group["lr"])
        if update.dead and not self._warned_dead:
            self._warned_dead = True
            warn_dead_coordinates()

    @torch.no_grad()
    def moments(self, group: dict, p: torch.Tensor) -> dict[str, tuple[torch.Tensor, float]]:
        """Parameter ``p``'s moments as its group's rule declares them (:class:`rules.Moment`):
        ``{'first': (m̂, ℓ), 'second': (v̂, ℓ)}``, each bias-corrected where the rule corrects
        it, its value ``x · e^ℓ`` in the gradients' units (ℓ: the log-factor kept where the
        state outgrew float64). Only the moments that are in the state yet."""
        rule, state = rules.get(group["rule"]), self.state.get(p, {})
        return {which: (m.corrected(state[m.entry], group, state["step"]),
                        float(state.get(_log_key(m.entry), 0.0)))
                for which, m in rule.moments.items() if m.entry in state}

    @torch.no_grad()
    def root_second_moments(self) -> list[torch.Tensor]:
        """The denominators' ``√v̂`` before ε, one tensor per parameter of the adaptive
        groups (Adam: bias-corrected ``√v̂``; RMSProp: ``√v``; AdaGrad: ``√G``), in the
        units of the gradients the optimizer receives (those of ``e^F L`` under a framed
        loss; inf where that overflows). A coordinate is in the sign-like regime while
        ``√v̂ ≫ ε`` and GD-like once ``√v̂ ≪ ε`` (Wang et al. 2021). Empty for
        steepest-descent groups and before the first step."""
        out: list[torch.Tensor] = []
        for group in self.param_groups:
            for p in group["params"]:
                second = self.moments(group, p).get("second")
                if second is not None:
                    v, log = second
                    out.append((v * math.exp(log) if log else v).sqrt())
        return out

    @torch.no_grad()
    def reframe(self, delta: float) -> None:
        """The loss's frame moved by ``delta``: from now on the gradients are ``e^delta``
        times larger (those of ``e^{F + delta} L``). Each state entry's factor follows its
        order in the gradient (:func:`rules.rescale`): one operation for any ``delta``, and
        the trajectory does not change."""
        if not math.isfinite(delta):
            raise ValueError(f"the frame must move by a finite amount, got {delta}.")
        for group in self.param_groups:
            group["frame"] += delta
            rule = rules.get(group["rule"])
            for p in group["params"]:
                state = self.state.get(p, {})
                entries = {name: _entry([state], [p], name) for name in rule.state if name in state}
                for name, e in rules.rescale(rule, entries, delta).items():
                    store_entry([state], name, e)

    def rescale_gradients(self, ratio: float) -> None:
        """:meth:`reframe` by ``log ratio`` (the loss was multiplied by ``ratio``)."""
        if not (math.isfinite(ratio) and ratio > 0):
            raise ValueError(f"rescale ratio must be finite and positive, got {ratio}.")
        self.reframe(math.log(ratio))

    def state_dict(self) -> dict[str, Any]:
        """torch's, with each group's norm stored by its ``repr`` (a plain string), so the
        file loads with ``torch.load(weights_only=True)``."""
        out = super().state_dict()
        for group in out["param_groups"]:
            if isinstance(group.get("norm"), Norm):
                group["norm"] = repr(group["norm"])
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's; the norms stay this optimizer's own (a checkpoint of another norm is refused)."""
        norms_ = [group.get("norm") for group in self.param_groups]
        for norm, saved in zip(norms_, state_dict["param_groups"]):
            stored = saved.get("norm")
            if norm is not None and stored is not None and stored != repr(norm) and stored is not norm:
                raise ValueError(f"This checkpoint was saved with norm {stored}; "
                                 f"this optimizer uses {norm!r}.")
        super().load_state_dict(state_dict)
        for group, norm in zip(self.param_groups, norms_):
            if norm is not None:
                group["norm"] = norm


def _log_key(name: str) -> str:
    return f"{name}_log_factor"


def _entry(states: Sequence[dict[str, Any]], params: Sequence[torch.Tensor], name: str) -> rules.Entry:
    """A rule's state entry from per-parameter states (torch's layout): tensors under
    ``name`` and, where a factor e^ℓ is kept, its log under ``<name>_log_factor``."""
    tensors = _one([s[name] if name in s else torch.zeros_like(p) for s, p in zip(states, params)])
    if not any(_log_key(name) in s for s in states):
        return rules.Entry(tensors)
    zero = torch.zeros(1, dtype=tensors[0].dtype, device=tensors[0].device)
    return rules.Entry(tensors, [s.get(_log_key(name), zero) for s in states])


def store_entry(states: Sequence[dict[str, Any]], name: str, e: rules.Entry) -> None:
    """Write a rule's state entry into per-parameter states (the inverse of :func:`_entry`)."""
    for i, s in enumerate(states):
        s[name] = e.tensors[i][0]
        if e.logs is None:
            s.pop(_log_key(name), None)
        else:
            s[_log_key(name)] = e.logs[i]


def state_value(state: dict[str, Any], name: str) -> torch.Tensor:
    """A state entry of one parameter in the gradients' units (its tensor times its factor;
    inf where that overflows float64)."""
    x: torch.Tensor = state[name]
    return x * torch.exp(state[_log_key(name)]) if _log_key(name) in state else x


def _check_finite(grads: list[torch.Tensor], group: dict[str, Any], params: Sequence[torch.Tensor]) -> None:
    norms_ = torch._foreach_norm(grads)
    if not bool(torch.stack(norms_).isfinite().all()):
        i = next(i for i, n in enumerate(norms_) if not bool(n.isfinite()))
        raise FloatingPointError(
            f"The gradient of parameter {i} (shape {tuple(params[i].shape)}) of a '{group['rule']}' "
            "group has NaN or inf entries: the step would be silently wrong (a sign of NaN is 0). "
            "Check the data and the loss for non-finite values, or lower the learning rate.")


def _grad_samples(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    samples = [getattr(p, "grad_sample", None) for p in params]
    if any(s is None or s.shape[1:] != p.shape for s, p in zip(samples, params)):
        raise RuntimeError(
            "AdamProxy divides by the per-sample gradients: set p.grad_sample (shape "
            "(batch, *p.shape)) before step(). implicit_bias.train.train does this; "
            "by hand, use train.per_sample_gradients.")
    return cast(list[torch.Tensor], samples)  # none is None (checked above)


def _params_list(params: ParamsT) -> list[torch.Tensor]:
    listed = [params] if torch.is_tensor(params) else list(params)
    if listed and isinstance(listed[0], dict):
        raise TypeError(
            "This optimizer builds its own parameter groups; pass a plain list of parameters "
            "(and add_param_group for more)."
        )
    return cast(list[torch.Tensor], listed)  # parameter groups are refused above


# --- steepest descent family -------------------------------------------------


class SteepestDescent(RuleOptimizer):
    """(Momentum) steepest descent w.r.t. ``norm`` (a :class:`norms.Norm`, a user's own
    included, or a registered name): ``m ← β m + (1−β) g``, then
    ``θ ← θ − η_t u`` with ``u = norm.steepest(m)`` (normalized) or ``‖m‖_* u``.

    Gronich & Vardi 2026 (Thm 3.3): with ``∫η = ∞`` and ``η(t) = o(t^{1/L−1})`` the limit
    direction is a KKT direction of ``norm``'s margin problem.

    ``weight_decay`` λ is decoupled, ``θ ← θ − η_t (u + λθ)`` (as AdamW's and
    ``torch.optim.Muon``'s, not ``torch.optim.SGD``'s coupled penalty): normalized, a limit
    point is then a KKT point of ``min L(θ) s.t. ‖θ‖ ≤ 1/λ`` in ``norm`` (see
    :func:`kkt.constrained_certificate`)."""

    def __init__(self, params: ParamsT, norm: Norm | str, lr: float, momentum: float = 0.0,
                 normalized: bool = True, weight_decay: float = 0.0) -> None:
        if isinstance(norm, str):
            params = _params_list(params)
            norm = as_norm(norm, params)
        super().__init__(params, dict(rule="steepest", norm=norm, lr=lr, momentum=momentum,
                                      normalized=normalized, weight_decay=weight_decay))


class NormalizedGD(SteepestDescent):
    """Normalized gradient descent: steepest descent for ℓ2."""

    def __init__(self, params: ParamsT, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(params, L2(), lr, momentum=momentum, weight_decay=weight_decay)


class MomentumGD(SteepestDescent):
    """Gradient descent with EMA momentum, normalized by default (ℓ2; Thm 3.3).
    With ``normalized=False`` it equals ``torch.optim.SGD(lr=lr·(1−β), momentum=β)``."""

    def __init__(self, params: ParamsT, lr: float, momentum: float = 0.9, normalized: bool = True,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, L2(), lr, momentum=momentum, normalized=normalized,
                         weight_decay=weight_decay)


class SignGD(SteepestDescent):
    """Sign descent: steepest descent for ℓ∞."""

    def __init__(self, params: ParamsT, lr: float, weight_decay: float = 0.0) -> None:
        super().__init__(params, Linf(), lr, weight_decay=weight_decay)


class Signum(SteepestDescent):
    """Sign of the momentum (Bernstein et al. 2018): momentum steepest descent for ℓ∞."""

    def __init__(self, params: ParamsT, lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> None:
        super().__init__(params, Linf(), lr, momentum=momentum, weight_decay=weight_decay)


class CoordinateDescent(SteepestDescent):
    """Greedy coordinate descent: steepest descent for ℓ1."""

    def __init__(self, params: ParamsT, lr: float, weight_decay: float = 0.0) -> None:
        super().__init__(params, L1(), lr, weight_decay=weight_decay)


class SpectralDescent(SteepestDescent):
    """Steepest descent for the max-spectral norm: the exact polar factor of each
    parameter's gradient (a vector is a 1×n matrix, so it is ℓ2-normalized)."""

    def __init__(self, params: ParamsT, lr: float, weight_decay: float = 0.0) -> None:
        super().__init__(params, Spectral(), lr, weight_decay=weight_decay)


class Muon(SteepestDescent):
    """Muon: the polar factor of the momentum, per parameter (Gronich & Vardi 2026,
    Cor 3.4). ``polar='svd'`` (default) is exact; ``'newton_schulz'`` is Keller Jordan's
    5-step quintic iteration (``ns_dtype=torch.bfloat16`` reproduces ``torch.optim.Muon``)."""

    def __init__(self, params: ParamsT, lr: float, momentum: float = 0.9, polar: str = "svd",
                 ns_steps: int = 5, ns_dtype: torch.dtype | None = None, weight_decay: float = 0.0) -> None:
        super().__init__(params, Spectral(polar, ns_steps, ns_dtype), lr, momentum=momentum,
                         weight_decay=weight_decay)


class TorchMuon(torch.optim.Muon):
    """``torch.optim.Muon`` itself (Newton–Schulz in bfloat16, Nesterov by default), made
    to run on every parameter of our models so that it can be compared with :class:`Muon`.

    Three adaptations, none of which touches torch's update: vectors and scalars are handed
    to torch as 1×n matrices (shadow copies that are written back after each step, since
    torch rejects non-2-D parameters); torch's rate adjustment ``sqrt(max(1, rows/cols))``
    is divided out per parameter, so every layer steps with the same ``η_t`` as our Muon;
    ``weight_decay`` defaults to 0 (the theorem has none; torch's default is 0.1). It also
    supports the framed loss (:meth:`rescale_gradients`). With ``nesterov=False`` it equals
    ``Muon(polar='newton_schulz', ns_dtype=torch.bfloat16)`` up to bfloat16 rounding."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.9,
                 nesterov: bool = True, weight_decay: float = 0.0, ns_steps: int = 5) -> None:
        _check_lr(lr)
        rules.check_beta("momentum", momentum)
        rules.check_nonnegative("weight_decay", weight_decay)
        _check_flag("nesterov", nesterov)
        if not (isinstance(ns_steps, numbers.Integral) and not isinstance(ns_steps, bool) and ns_steps >= 1):
            raise ValueError(f"ns_steps (Newton–Schulz iterations) must be a positive integer, "
                             f"got {ns_steps!r}.")
        self._originals: list[torch.Tensor] = _params_list(params)
        self._shadows: list[torch.nn.Parameter] = [
            torch.nn.Parameter(as_matrix(p.detach()).clone()) for p in self._originals]
        groups = [dict(params=[s], lr=lr / math.sqrt(max(1.0, s.shape[0] / s.shape[1])))
                  for s in self._shadows]
        super().__init__(groups, lr=lr, momentum=momentum, nesterov=nesterov,
                         weight_decay=weight_decay, ns_steps=ns_steps)
        self._log2: float = 0.0  # log2 of the part of the frame's factor not yet in the buffers

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none=set_to_none)
        for p in self._originals:
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._settle()
        whole = round(self._log2)
        residual = 2.0 ** (self._log2 - whole)  # in [1/√2, √2]
        shift = torch.tensor(-whole, dtype=torch.int64)
        for p, s in zip(self._originals, self._shadows):
            s.copy_(as_matrix(p))
            s.grad = None if p.grad is None else torch.ldexp(as_matrix(p.grad) / residual, shift)
        super().step()  # type: ignore[no-untyped-call]  # torch.optim.Muon.step has no annotations
        for p, s in zip(self._originals, self._shadows):
            p.copy_(s.reshape(p.shape))
        return loss

    def state_dict(self) -> dict[str, Any]:
        """torch's, plus (log2 of) the part of the frame's factor not yet in the buffers."""
        return {**super().state_dict(), "grad_log2_residual": self._log2}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self._log2 = float(state_dict.pop("grad_log2_residual", 0.0))
        super().load_state_dict(state_dict)

    @torch.no_grad()
    def reframe(self, delta: float) -> None:
        """The gradients are now ``e^delta`` times larger (framed loss). torch casts the
        momentum to bfloat16, where scaling by anything but a power of two changes the
        rounding; so only whole powers of two go into the momentum buffers (exactly, by
        ``ldexp``), as far as they stay below 2^60 (torch takes their norm in bfloat16), and the
        rest divides the incoming
        gradients (which underflow to 0 when the buffers outweigh them beyond float64's
        range, as they do). The trajectory is then the same as without the frame."""
        if not math.isfinite(delta):
            raise ValueError(f"the frame must move by a finite amount, got {delta}.")
        self._log2 += delta / math.log(2.0)
        self._settle()

    def _settle(self) -> None:
        """Move the whole powers of two of the residual factor into the buffers, as far as
        they stay below 2^60 (and above 2^-60): torch squares them in bfloat16."""
        k = round(self._log2)
        bufs = [state["momentum_buffer"] for state in self.state.values() if "momentum_buffer" in state]
        tops = [float(b.abs().max()) for b in bufs]
        top = max([t for t in tops if t > 0], default=0.0)
        if top > 0:
            room = math.floor(60 - math.log2(top)) if k > 0 else math.ceil(-60 - math.log2(top))
            k = min(k, room) if k > 0 else max(k, room)
        if k == 0:
            return
        shift = torch.tensor(k, dtype=torch.int64)
        for b in bufs:
            b.copy_(torch.ldexp(b, shift))
        self._log2 -= k

    def rescale_gradients(self, ratio: float) -> None:
        """:meth:`reframe` by ``log ratio``."""
        if not (math.isfinite(ratio) and ratio > 0):
            raise ValueError(f"rescale ratio must be finite and positive, got {ratio}.")
        self.reframe(math.log(ratio))


# --- adaptive family -----------------------------------------------------------


def _warn_if_beta1_above_beta2(betas: _Betas, stacklevel: int = 3) -> None:
    if betas[0] > betas[1]:
        warnings.warn(
            f"beta1 = {betas[0]} > beta2 = {betas[1]}: the Adam implicit-bias theorem assumes "
            "beta1 ≤ beta2.", UserWarning, stacklevel=stacklevel)


class Adam(RuleOptimizer):
    """Adam with bias correction; matches ``torch.optim.Adam``, its defaults too. ``eps``
    may be exactly 0: the theorem of Gronich & Vardi 2026 (Thm 3.6, the ℓ∞ limit) needs it,
    so pass ``eps=0.0`` for it (the book does)."""

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: _Betas = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        super().__init__(params, dict(rule="adam", lr=lr, betas=_pair(betas), eps=eps))
        _warn_if_beta1_above_beta2(betas)


class AdamW(RuleOptimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): ``θ ← θ − η(m̂/(√v̂ + ε)
    + λθ)``. Matches ``torch.optim.AdamW`` (its defaults too)."""

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: _Betas = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(params, dict(rule="adamw", lr=lr, betas=_pair(betas), eps=eps,
                                      weight_decay=weight_decay))


class Lion(RuleOptimizer):
    """Lion (Chen et al. 2023): ``θ ← θ − η(sign(β1 m + (1−β1) g) + λθ)``, then
    ``m ← β2 m + (1−β2) g``. Without weight decay, sign descent (ℓ∞ steepest descent) on
    an interpolated momentum."""

    def __init__(self, params: ParamsT, lr: float, betas: _Betas = (0.9, 0.99),
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, dict(rule="lion", lr=lr, betas=_pair(betas), weight_decay=weight_decay))


class AdamProxy(RuleOptimizer):
    """AdamProxy (Baek, Song & Yun 2025), the β2 → 1 limit of per-sample Adam:
    ``θ ← θ − η_t ∇L(θ) / sqrt(Σ_i ∇L_i(θ)²)`` coordinate-wise, where the sum runs over the
    samples of the batch. It needs per-sample gradients: before each ``step()`` every
    parameter must carry ``p.grad_sample`` (shape ``(batch, *p.shape)``, the Opacus
    convention) besides ``p.grad``; :func:`implicit_bias.train.train` sets both. The step is
    invariant to the scale of the loss, so a framed loss needs no state rescaling. On
    linear separable data its limit is the max margin of the data-adaptive Mahalanobis
    norm of :func:`implicit_bias.maxmargin.adaptive_mahalanobis`."""

    #: The training loop hands this optimizer per-sample gradients (``p.grad_sample``).
    needs_per_sample_gradients = True

    def __init__(self, params: ParamsT, lr: float) -> None:
        super().__init__(params, dict(rule="adam_proxy", lr=lr))


class RMSProp(RuleOptimizer):
    """RMSProp: ``v ← β₂ v + (1−β₂) g²``, ``θ ← θ − η g / (√v + ε)``; equals
    ``torch.optim.RMSprop(alpha=β₂)``, its defaults too, and its ``momentum`` μ (the step is
    then the buffer ``b ← μ b + g / (√v + ε)``; torch's ``OneCycleLR`` cycles it as it does
    torch's). With ε > 0 its limit is ℓ2 (Wang et al. 2021)."""

    def __init__(self, params: ParamsT, lr: float = 1e-2, beta2: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0) -> None:
        super().__init__(params, dict(rule="rmsprop", lr=lr, beta2=beta2, eps=eps, momentum=momentum))


class AdaGrad(RuleOptimizer):
    """AdaGrad: ``G ← G + g²``, ``θ ← θ − η g / (√G + ε)``; equals ``torch.optim.Adagrad``,
    its defaults too."""

    def __init__(self, params: ParamsT, lr: float = 1e-2, eps: float = 1e-10) -> None:
        super().__init__(params, dict(rule="adagrad", lr=lr, eps=eps))


# --- hybrids ---------------------------------------------------------------------


class Hybrid(RuleOptimizer):
    """One rule on the matrix parameters (≥ 2-D, :func:`norms.matrix_indices`), another on
    the rest (vectors, scalars): two parameter groups built from two templates. A group
    added later without a ``rule`` is split the same way. ``defaults`` holds what both
    groups share (torch's schedulers read it: a shared ``momentum`` lets ``OneCycleLR``
    cycle it)."""

    def __init__(self, params: Iterable[torch.Tensor], matrix_group: dict[str, Any],
                 rest_group: dict[str, Any], defaults: dict[str, Any] | None = None) -> None:
        self._templates = (matrix_group, rest_group)
        super().__init__(self._split(_params_list(params)), dict(defaults or {}))

    def _split(self, params: list[torch.Tensor]) -> list[dict[str, Any]]:
        mats, rest = matrix_indices(params)
        return [dict(template, params=[params[i] for i in idx])
                for template, idx in zip(self._templates, (mats, rest)) if idx]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if "rule" in param_group:
            return super().add_param_group(param_group)
        params = param_group["params"]
        params = [params] if torch.is_tensor(params) else list(params)
        options = {k: v for k, v in param_group.items() if k != "params"}
        for group in self._split(params):
            super().add_param_group({**group, **options})


class MuonSignum(Hybrid):
    """Muon (exact polar factor) on matrix parameters, Signum on the others (vectors,
    scalars), sharing the momentum β. ``lr`` is Muon's base rate; ``lr_signum`` defaults to
    it. Limit: KKT of ``max{‖W‖_msp, ‖u‖_∞}`` (Gronich & Vardi 2026, Cor 3.5)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, lr_signum: float | None = None,
                 momentum: float = 0.9, weight_decay: float = 0.0) -> None:
        lr_signum = lr if lr_signum is None else lr_signum
        common = dict(rule="steepest", momentum=momentum, normalized=True, weight_decay=weight_decay)
        super().__init__(params, dict(common, norm=Spectral(), lr=lr),
                         dict(common, norm=Linf(), lr=lr_signum), defaults={"momentum": momentum})


class MuonAdam(Hybrid):
    """Muon on matrix parameters, Adam on the others. ``lr`` is Muon's base rate η^M_0,
    ``lr_adam`` Adam's η^A_0 (default: equal). Limit: KKT of
    ``max{(η^A_0/η^M_0)‖W‖_msp, ‖u‖_∞}`` (Gronich & Vardi 2026, Thm 3.7)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, lr_adam: float | None = None,
                 momentum: float = 0.9, betas: _Betas = (0.9, 0.99), eps: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        lr_adam = lr if lr_adam is None else lr_adam
        # with weight decay the Adam half is AdamW (decoupled); without, plain Adam as before
        adam = dict(rule="adamw", weight_decay=weight_decay) if weight_decay else dict(rule="adam")
        super().__init__(
            params,
            dict(rule="steepest", norm=Spectral(), lr=lr, momentum=momentum, normalized=True,
                 weight_decay=weight_decay),
            dict(adam, lr=lr_adam, betas=_pair(betas), eps=eps))
        _warn_if_beta1_above_beta2(betas)


OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    cls.__name__: cls
    for cls in (NormalizedGD, MomentumGD, SignGD, Signum, CoordinateDescent, SpectralDescent,
                Muon, TorchMuon, Adam, AdamW, Lion, AdamProxy, RMSProp, AdaGrad, MuonSignum, MuonAdam)
}


def from_rule(name: str, class_name: str | None = None) -> type[RuleOptimizer]:
    """A ``torch.optim`` class for the registered rule ``name``: ``Cls(params, lr, **knobs)``,
    each knob (:class:`rules.Knob`) defaulting to the rule's default and checked by its check,
    the rule's docstring as its own. Every rule that names an ``optimizer`` gets its class
    here when this module is imported (in :data:`OPTIMIZERS`, and as an attribute of this
    module); for a rule registered later, ``register(from_rule("my_rule", "MyOpt"))``."""
    rule = rules.get(name)
    class_name = class_name or rule.optimizer or name

    def __init__(self: RuleOptimizer, params: ParamsT, lr: float, **options: Any) -> None:
        unknown = sorted(set(options) - set(rule.knobs))
        if unknown:
            raise TypeError(f"{class_name}() got unknown hyperparameters {unknown}; the rule "
                            f"'{name}' has {list(rule.knobs)}.")
        knobs = {key: options.get(key, knob.default) for key, knob in rule.knobs.items()}
        if isinstance(knobs.get("betas"), list):
            knobs["betas"] = tuple(knobs["betas"])
        RuleOptimizer.__init__(self, params, dict(rule=name, lr=lr, **knobs))

    # a function takes any attribute; mypy knows none of them
    __init__.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("lr", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=float),
        *(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=knob.default)
          for key, knob in rule.knobs.items())])
    return type(class_name, (RuleOptimizer,), {
        "__init__": __init__, "__doc__": rule.update.__doc__, "__module__": __name__,
        "needs_per_sample_gradients": rule.per_sample,
        "__qualname__": class_name})


@registry.entry
def register(name: str, cls: type) -> None:
    """Add an optimizer class to :data:`OPTIMIZERS`, so that ``Run(optimizer=name)`` trains
    it, as every registry does (:mod:`implicit_bias.registry`): ``register(cls)`` or
    ``@register`` (under its class name), ``register(name, cls)``, ``@register(name)``. A
    :class:`RuleOptimizer` over registered rules is stepped by the batched engine; any
    other ``torch.optim.Optimizer`` is trained by the reference loop."""
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise TypeError(f"register takes a torch.optim.Optimizer subclass, got {cls!r}.")
    if not (isinstance(name, str) and name):
        raise ValueError(f"register: an optimizer's name must be a non-empty string, got {name!r}.")
    OPTIMIZERS[name] = cls


def make(name: str | type[torch.optim.Optimizer], params: ParamsT, lr: float,
         **options: Any) -> torch.optim.Optimizer:
    """Build an optimizer from its name (a key of :data:`OPTIMIZERS`) or its class."""
    if isinstance(name, type):
        given: Callable[..., torch.optim.Optimizer] = name  # each class has its own knobs
        return given(params, lr, **options)
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)} "
                         "or register your own with implicit_bias.optim.register.")
    cls: Callable[..., torch.optim.Optimizer] = OPTIMIZERS[name]  # each class has its own knobs
    return cls(params, lr, **options)


def power_schedule(optimizer: torch.optim.Optimizer, exponent: float) -> LambdaLR:
    """``η_t = η_0 · t^{−a}`` for steps t = 1, 2, … (each group's own η_0), as a
    standard ``LambdaLR``. The normalized-steepest-descent theorems need ``a ≤ 1``
    (``∫η = ∞``); the momentum ones also ``a > 1 − 1/L``."""
    if not (isinstance(exponent, (int, float)) and math.isfinite(exponent) and exponent >= 0):
        raise ValueError(f"schedule exponent must be a finite number ≥ 0, got {exponent!r}.")
    return LambdaLR(optimizer, lambda t: (t + 1.0) ** (-exponent))


# The classes of the rules that name one (a new optimizer is one rule in rules.py).
for _rule in list(rules.RULES.values()):
    if _rule.optimizer and _rule.optimizer not in OPTIMIZERS:
        globals()[_rule.optimizer] = register(from_rule(_rule.name))
