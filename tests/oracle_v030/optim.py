"""Optimizers as thin ``torch.optim.Optimizer`` subclasses over :mod:`updates`.

Every parameter group carries a ``rule`` — ``steepest`` (with a norm), ``adam``,
``adam_proxy``, ``rmsprop`` or ``adagrad`` — so that hybrids such as Muon-Adam are just two
groups with different rules. All optimizers support a rescaled ("framed") loss: after
``rescale_gradients(c)`` the incoming gradients are taken to be ``c`` times larger and the
state is rescaled to match, so the trajectory is unchanged while the loss itself stays
representable (Lyu & Li 2019, App. on the loss "frame").
"""

from __future__ import annotations

import math
import warnings

import torch
from torch.optim.lr_scheduler import LambdaLR

from . import updates
from .norms import L1, L2, Linf, Norm, Spectral, as_matrix, matrix_indices


def _check_lr(lr):
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
        raise ValueError(f"Learning rate must be a finite number ≥ 0, got {lr!r}.")


def _check_beta(name, beta):
    if not (isinstance(beta, (int, float)) and 0.0 <= beta < 1.0):
        raise ValueError(f"{name} must lie in [0, 1), got {beta!r}.")


def _check_eps(eps):
    if not (isinstance(eps, (int, float)) and eps >= 0):
        raise ValueError(f"eps must be ≥ 0 (0 is allowed), got {eps!r}.")


def warn_dead_coordinates(stacklevel: int = 3) -> None:
    """The warning for a 0/0 step of an ε = 0 adaptive method (see ``updates.scaled_by_root``)."""
    warnings.warn(
        "eps = 0 and some coordinate has had an exactly zero gradient at every step "
        "(a constant-zero input feature or a dead unit): its step is set to 0, the "
        "eps -> 0 limit (an eps > 0 gives the same zero step, so it only hides this "
        "warning). The Adam theorem assumes non-zero first gradients: drop constant-zero "
        "features, or re-draw dead units.",
        RuntimeWarning,
        stacklevel=stacklevel,
    )


class RuleOptimizer(torch.optim.Optimizer):
    """Base class: dispatches each parameter group to the update rule it names."""

    def __init__(self, params, defaults):
        super().__init__(params, defaults)
        for group in self.param_groups:
            group.setdefault("grad_scale", 1.0)
            _check_lr(group["lr"])
            for key in ("momentum", "beta1", "beta2"):
                if key in group:
                    _check_beta(key, group[key])
            if "eps" in group:
                _check_eps(group["eps"])
            if group["rule"] == "steepest":
                if not isinstance(group["norm"], Norm):
                    raise TypeError(f"norm must be an implicit_bias.norms.Norm, got {group['norm']!r}.")
                group["norm"].check(group["params"])
        self._warned_dead = False

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            getattr(self, "_" + group["rule"])(group)
        return loss

    @staticmethod
    def _eps(group):
        """ε in the units of the (rescaled) gradients. The scale e^F overflows to inf once
        the loss is below ~1e-308; ε = 0 must then stay 0 (0·inf would be NaN)."""
        return group["eps"] * group["grad_scale"] if group["eps"] > 0 else 0.0

    def _grads(self, group):
        return [p.grad if p.grad is not None else torch.zeros_like(p) for p in group["params"]]

    def _buffer(self, p, name):
        state = self.state[p]
        if name not in state:
            state[name] = torch.zeros_like(p)
        return state[name]

    def _count(self, p):
        state = self.state[p]
        state["step"] = state.get("step", 0) + 1
        return state["step"]

    def _steepest(self, group):
        beta = group["momentum"]
        direction = []
        for p, g in zip(group["params"], self._grads(group)):
            if beta > 0:
                g = updates.ema(self._buffer(p, "momentum_buffer"), g, beta)
                self.state[p]["momentum_buffer"] = g
            direction.append(g)
        step = updates.steepest_step(group["norm"], direction, group["normalized"], group["grad_scale"])
        for p, u in zip(group["params"], step):
            p.add_(u, alpha=-group["lr"])

    def _adam(self, group):
        betas = (group["beta1"], group["beta2"])
        eps = self._eps(group)
        for p, g in zip(group["params"], self._grads(group)):
            m = updates.ema(self._buffer(p, "exp_avg"), g, betas[0])
            v = updates.ema(self._buffer(p, "exp_avg_sq"), g * g, betas[1])
            self.state[p].update(exp_avg=m, exp_avg_sq=v)
            d, dead = updates.adam_direction(m, v, self._count(p), betas, eps)
            self._warn_dead(dead)
            p.add_(d, alpha=-group["lr"])

    def _rmsprop(self, group):
        eps = self._eps(group)
        for p, g in zip(group["params"], self._grads(group)):
            v = updates.ema(self._buffer(p, "square_avg"), g * g, group["beta2"])
            self.state[p]["square_avg"] = v
            d, dead = updates.scaled_by_root(g, v, eps)
            self._warn_dead(dead)
            p.add_(d, alpha=-group["lr"])

    def _adagrad(self, group):
        eps = self._eps(group)
        for p, g in zip(group["params"], self._grads(group)):
            acc = self._buffer(p, "sum") + g * g
            self.state[p]["sum"] = acc
            d, dead = updates.scaled_by_root(g, acc, eps)
            self._warn_dead(dead)
            p.add_(d, alpha=-group["lr"])

    def _adam_proxy(self, group):
        for p, g in zip(group["params"], self._grads(group)):
            samples = getattr(p, "grad_sample", None)
            if samples is None or samples.shape[1:] != p.shape:
                raise RuntimeError(
                    "AdamProxy divides by the per-sample gradients: set p.grad_sample (shape "
                    "(batch, *p.shape)) before step(). implicit_bias.train.train does this; "
                    "by hand, use train.per_sample_gradients.")
            d, dead = updates.adam_proxy_direction(g, samples)
            self._warn_dead(dead)
            p.add_(d, alpha=-group["lr"])

    def _warn_dead(self, dead):
        if dead and not self._warned_dead:
            self._warned_dead = True
            warn_dead_coordinates(stacklevel=4)

    @torch.no_grad()
    def root_second_moments(self) -> list[torch.Tensor]:
        """The denominators' ``√v̂`` before ε, one tensor per parameter of the adaptive
        groups (Adam: bias-corrected ``√v̂``; RMSProp: ``√v``; AdaGrad: ``√G``), in the
        units of the gradients the optimizer receives (scaled by ``grad_scale`` under a
        framed loss). A coordinate is in the sign-like regime while ``√v̂ ≫ ε`` and
        GD-like once ``√v̂ ≪ ε`` (Wang et al. 2021). Empty for steepest-descent groups and
        before the first step."""
        out = []
        for group in self.param_groups:
            key = {"adam": "exp_avg_sq", "rmsprop": "square_avg", "adagrad": "sum"}.get(group["rule"])
            for p in group["params"] if key else ():
                state = self.state.get(p, {})
                if key not in state:
                    continue
                v = state[key]
                if group["rule"] == "adam":
                    v = v / (1.0 - group["beta2"] ** state["step"])
                out.append(v.sqrt())
        return out

    @torch.no_grad()
    def rescale_gradients(self, ratio: float) -> None:
        """From now on the gradients are ``ratio`` times larger (the loss was multiplied
        by ``ratio``); rescale first moments by ``ratio`` and second moments by
        ``ratio²`` so the trajectory does not change. Raises ``FloatingPointError`` if the
        rescaled state overflows (the loss fell faster than the state's memory decays)."""
        if not (math.isfinite(ratio) and ratio > 0):
            raise ValueError(f"rescale ratio must be finite and positive, got {ratio}.")
        for group in self.param_groups:
            group["grad_scale"] *= ratio
            for p in group["params"]:
                state = self.state.get(p, {})
                for key in ("momentum_buffer", "exp_avg"):
                    if key in state:
                        state[key] = state[key] * ratio
                for key in ("exp_avg_sq", "square_avg", "sum"):
                    if key in state:
                        # Two products: ratio**2 itself overflows a Python float above 1e154.
                        state[key] = state[key] * ratio * ratio
                for key, value in state.items():
                    if torch.is_tensor(value) and value.is_floating_point() and not value.isfinite().all():
                        raise FloatingPointError(
                            f"Rescaling the optimizer state ({key}) by {ratio:.3g} overflowed: the "
                            "loss fell faster than the optimizer's memory decays, beyond float64's "
                            "range. Lower the learning rate or use a decaying schedule.")


def _params_list(params):
    params = list(params)
    if params and isinstance(params[0], dict):
        raise TypeError(
            "This optimizer builds its own parameter groups; pass a plain list of parameters."
        )
    return params


# --- steepest descent family -------------------------------------------------


class SteepestDescent(RuleOptimizer):
    """(Momentum) steepest descent w.r.t. ``norm``: ``m ← β m + (1−β) g``, then
    ``θ ← θ − η_t u`` with ``u = norm.steepest(m)`` (normalized) or ``‖m‖_* u``.

    Gronich & Vardi 2026 (Thm 3.3): with ``∫η = ∞`` and ``η(t) = o(t^{1/L−1})`` the limit
    direction is a KKT direction of ``norm``'s margin problem."""

    def __init__(self, params, norm: Norm, lr: float, momentum: float = 0.0, normalized: bool = True):
        super().__init__(params, dict(rule="steepest", norm=norm, lr=lr, momentum=momentum,
                                      normalized=bool(normalized)))


class NormalizedGD(SteepestDescent):
    """Normalized gradient descent: steepest descent for ℓ2."""

    def __init__(self, params, lr: float, momentum: float = 0.0):
        super().__init__(params, L2(), lr, momentum=momentum)


class MomentumGD(SteepestDescent):
    """Gradient descent with EMA momentum, normalized by default (ℓ2; Thm 3.3).
    With ``normalized=False`` it equals ``torch.optim.SGD(lr=lr·(1−β), momentum=β)``."""

    def __init__(self, params, lr: float, momentum: float = 0.9, normalized: bool = True):
        super().__init__(params, L2(), lr, momentum=momentum, normalized=normalized)


class SignGD(SteepestDescent):
    """Sign descent: steepest descent for ℓ∞."""

    def __init__(self, params, lr: float):
        super().__init__(params, Linf(), lr)


class Signum(SteepestDescent):
    """Sign of the momentum (Bernstein et al. 2018): momentum steepest descent for ℓ∞."""

    def __init__(self, params, lr: float, momentum: float = 0.9):
        super().__init__(params, Linf(), lr, momentum=momentum)


class CoordinateDescent(SteepestDescent):
    """Greedy coordinate descent: steepest descent for ℓ1."""

    def __init__(self, params, lr: float):
        super().__init__(params, L1(), lr)


class SpectralDescent(SteepestDescent):
    """Steepest descent for the max-spectral norm: the exact polar factor of each
    parameter's gradient (a vector is a 1×n matrix, so it is ℓ2-normalized)."""

    def __init__(self, params, lr: float):
        super().__init__(params, Spectral(), lr)


class Muon(SteepestDescent):
    """Muon: the polar factor of the momentum, per parameter (Gronich & Vardi 2026,
    Cor 3.4). ``polar='svd'`` (default) is exact; ``'newton_schulz'`` is Keller Jordan's
    5-step quintic iteration (``ns_dtype=torch.bfloat16`` reproduces ``torch.optim.Muon``)."""

    def __init__(self, params, lr: float, momentum: float = 0.9, polar: str = "svd",
                 ns_steps: int = 5, ns_dtype: torch.dtype | None = None):
        super().__init__(params, Spectral(polar, ns_steps, ns_dtype), lr, momentum=momentum)


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

    def __init__(self, params, lr: float, momentum: float = 0.9, nesterov: bool = True,
                 weight_decay: float = 0.0, ns_steps: int = 5):
        _check_lr(lr)
        _check_beta("momentum", momentum)
        self._originals = _params_list(params)
        self._shadows = [torch.nn.Parameter(as_matrix(p.detach()).clone()) for p in self._originals]
        groups = [dict(params=[s], lr=lr / math.sqrt(max(1.0, s.shape[0] / s.shape[1])))
                  for s in self._shadows]
        super().__init__(groups, lr=lr, momentum=momentum, nesterov=nesterov,
                         weight_decay=weight_decay, ns_steps=ns_steps)
        self._residual = 1.0  # the part of the frame's scale not yet moved into the buffers

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none=set_to_none)
        for p in self._originals:
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for p, s in zip(self._originals, self._shadows):
            s.copy_(as_matrix(p))
            s.grad = None if p.grad is None else as_matrix(p.grad) / self._residual
        super().step()
        for p, s in zip(self._originals, self._shadows):
            p.copy_(s.reshape(p.shape))
        return loss

    @torch.no_grad()
    def rescale_gradients(self, ratio: float) -> None:
        """The gradients are now ``ratio`` times larger (framed loss). torch casts the
        momentum to bfloat16, where scaling by anything but a power of two changes the
        rounding; so only the power-of-two part of the accumulated ratio goes into the
        momentum buffers (exactly), and the rest, kept in [1/√2, √2], divides the incoming
        gradients. The trajectory is then the same as without the frame."""
        if not (math.isfinite(ratio) and ratio > 0):
            raise ValueError(f"rescale ratio must be finite and positive, got {ratio}.")
        self._residual *= ratio
        k = round(math.log2(self._residual))
        self._residual /= 2.0**k
        for state in self.state.values():
            if "momentum_buffer" in state:
                state["momentum_buffer"].mul_(2.0**k)
                if not state["momentum_buffer"].isfinite().all():
                    raise FloatingPointError(
                        f"Rescaling the momentum by 2^{k} overflowed; lower the learning rate.")


# --- adaptive family -----------------------------------------------------------


class Adam(RuleOptimizer):
    """Adam with bias correction; ``eps`` may be exactly 0 (the ℓ∞ regime of Gronich &
    Vardi 2026, Thm 3.6). With ``eps > 0`` it matches ``torch.optim.Adam``."""

    def __init__(self, params, lr: float, betas=(0.9, 0.99), eps: float = 0.0):
        b1, b2 = betas
        _check_beta("beta1", b1)
        _check_beta("beta2", b2)
        if b1 > b2:
            warnings.warn(
                f"beta1 = {b1} > beta2 = {b2}: the Adam implicit-bias theorem assumes "
                "beta1 ≤ beta2.", UserWarning, stacklevel=2)
        super().__init__(params, dict(rule="adam", lr=lr, beta1=b1, beta2=b2, eps=eps))


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

    def __init__(self, params, lr: float):
        super().__init__(params, dict(rule="adam_proxy", lr=lr))


class RMSProp(RuleOptimizer):
    """RMSProp: ``v ← β₂ v + (1−β₂) g²``, ``θ ← θ − η g / (√v + ε)``; equals
    ``torch.optim.RMSprop(alpha=β₂)``. With ε > 0 its limit is ℓ2 (Wang et al. 2021)."""

    def __init__(self, params, lr: float, beta2: float = 0.99, eps: float = 1e-8):
        super().__init__(params, dict(rule="rmsprop", lr=lr, beta2=beta2, eps=eps))


class AdaGrad(RuleOptimizer):
    """AdaGrad: ``G ← G + g²``, ``θ ← θ − η g / (√G + ε)``; equals ``torch.optim.Adagrad``."""

    def __init__(self, params, lr: float, eps: float = 1e-10):
        super().__init__(params, dict(rule="adagrad", lr=lr, eps=eps))


# --- hybrids ---------------------------------------------------------------------


def _split_groups(params, matrix_group: dict, rest_group: dict):
    params = _params_list(params)
    mats, rest = matrix_indices(params)
    groups = []
    if mats:
        groups.append(dict(matrix_group, params=[params[i] for i in mats]))
    if rest:
        groups.append(dict(rest_group, params=[params[i] for i in rest]))
    return groups


class MuonSignum(RuleOptimizer):
    """Muon (exact polar factor) on matrix parameters, Signum on the others (vectors,
    scalars), sharing the momentum β. ``lr`` is Muon's base rate; ``lr_signum`` defaults to
    it. Limit: KKT of ``max{‖W‖_msp, ‖u‖_∞}`` (Gronich & Vardi 2026, Cor 3.5)."""

    def __init__(self, params, lr: float, lr_signum: float | None = None, momentum: float = 0.9):
        lr_signum = lr if lr_signum is None else lr_signum
        common = dict(rule="steepest", momentum=momentum, normalized=True)
        super().__init__(
            _split_groups(params, dict(common, norm=Spectral(), lr=lr),
                          dict(common, norm=Linf(), lr=lr_signum)), {})


class MuonAdam(RuleOptimizer):
    """Muon on matrix parameters, Adam on the others. ``lr`` is Muon's base rate η^M_0,
    ``lr_adam`` Adam's η^A_0 (default: equal). Limit: KKT of
    ``max{(η^A_0/η^M_0)‖W‖_msp, ‖u‖_∞}`` (Gronich & Vardi 2026, Thm 3.7)."""

    def __init__(self, params, lr: float, lr_adam: float | None = None, momentum: float = 0.9,
                 betas=(0.9, 0.99), eps: float = 0.0):
        lr_adam = lr if lr_adam is None else lr_adam
        super().__init__(
            _split_groups(
                params,
                dict(rule="steepest", norm=Spectral(), lr=lr, momentum=momentum, normalized=True),
                dict(rule="adam", lr=lr_adam, beta1=betas[0], beta2=betas[1], eps=eps)), {})


OPTIMIZERS = {
    cls.__name__: cls
    for cls in (NormalizedGD, MomentumGD, SignGD, Signum, CoordinateDescent, SpectralDescent,
                Muon, TorchMuon, Adam, AdamProxy, RMSProp, AdaGrad, MuonSignum, MuonAdam)
}


def make(name: str, params, lr: float, **options) -> RuleOptimizer:
    """Build a named optimizer (a key of :data:`OPTIMIZERS`)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}.")
    return OPTIMIZERS[name](params, lr, **options)


def power_schedule(optimizer: torch.optim.Optimizer, exponent: float) -> LambdaLR:
    """``η_t = η_0 · t^{−a}`` for steps t = 1, 2, … (each group's own η_0), as a
    standard ``LambdaLR``. The normalized-steepest-descent theorems need ``a ≤ 1``
    (``∫η = ∞``); the momentum ones also ``a > 1 − 1/L``."""
    if not (isinstance(exponent, (int, float)) and math.isfinite(exponent) and exponent >= 0):
        raise ValueError(f"schedule exponent must be a finite number ≥ 0, got {exponent!r}.")
    return LambdaLR(optimizer, lambda t: (t + 1.0) ** (-exponent))
