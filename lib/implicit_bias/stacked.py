"""K models of one architecture as one: parameters stacked along a leading run dimension.

A :class:`Stack` holds ``K`` copies of a homogeneous model whose parameters differ
(different seeds, different optimizers) and evaluates all of them at once:
``forward(X)`` returns the outputs ``(K, n)`` and ``backward(df)`` the gradients of
``Σ_k ⟨df_k, f_k⟩``, one stacked tensor per parameter. ``X`` is either shared by every
run, shape ``(n, …)``, or one batch per run, shape ``(K, b, …)``.

The linear and two-layer models, the book's workhorses, have hand-written backward
passes: their first layer is one matrix product for all K runs together, and nothing is
recorded for autograd. Other models go through ``torch.func`` (``vmap`` of the model's
own ``forward``) and autograd.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch.func import functional_call, vmap

from . import models


class Stack:
    """The generic stack: ``vmap`` of the model's forward, autograd for the backward."""

    def __init__(self, runs: list[models.HomogeneousModel]):
        self.template = runs[0]
        self.names = [name for name, _ in self.template.named_parameters()]
        self.params = [torch.stack([dict(m.named_parameters())[name].detach() for m in runs])
                       for name in self.names]
        self.degree = self.template.degree
        self.input_dim = 2  # X of this many dimensions is shared by all runs; one more: per run
        self._graph: tuple[list[torch.Tensor], torch.Tensor] | None = None

    @property
    def size(self) -> int:
        return self.params[0].shape[0]

    def run_params(self, k: int) -> list[torch.Tensor]:
        """Run k's parameters (views into the stack)."""
        return [p[k] for p in self.params]

    def _call(self, params: Sequence[torch.Tensor], X: torch.Tensor) -> torch.Tensor:
        def one(p: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = functional_call(self.template, dict(zip(self.names, p)), (x,))
            return out
        f: torch.Tensor = vmap(one, in_dims=(0, None if X.dim() == self.input_dim else 0))(params, X)
        return f

    def outputs(self, X: torch.Tensor) -> torch.Tensor:
        """``f_k(X)`` for every run, shape ``(K, n)``, with nothing kept for a backward."""
        with torch.no_grad():
            return self._call(self.params, X)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        leaves = [p.detach().requires_grad_(True) for p in self.params]
        with torch.enable_grad():
            f = self._call(leaves, X)
        self._graph = (leaves, f)
        return f.detach()

    def backward(self, df: torch.Tensor) -> list[torch.Tensor]:
        assert self._graph is not None, "backward() needs a forward() first"
        leaves, f = self._graph
        self._graph = None
        return list(torch.autograd.grad(f, leaves, grad_outputs=df))


class LinearStack(Stack):
    """``f_k(x) = ⟨θ_k, x⟩`` (:class:`~implicit_bias.models.Linear`, and
    :class:`~implicit_bias.models.BlockLinear` with its blocks concatenated): the outputs and
    the gradients are one matrix product each."""

    _X: torch.Tensor | None  # the input of the last forward(), until its backward()

    def __init__(self, runs: list[models.HomogeneousModel]):
        super().__init__(runs)
        first = runs[0]
        self.input_dim = 1 + first.w.dim() if type(first) is models.Linear else 2
        self._sizes = [p[0].numel() for p in self.params]

    def _weights(self) -> torch.Tensor:
        """``θ_k`` flat, a row per run (a view for one block, a copy for several)."""
        if len(self.params) == 1:
            return self.params[0].reshape(self.size, -1)
        return torch.cat([p.reshape(self.size, -1) for p in self.params], dim=1)

    def outputs(self, X: torch.Tensor) -> torch.Tensor:
        w = self._weights()
        if X.dim() == self.input_dim:
            return (X.reshape(X.shape[0], -1) @ w.T).T
        return torch.bmm(X.reshape(*X.shape[:2], -1), w.unsqueeze(-1)).squeeze(-1)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        self._X = X
        return self.outputs(X)

    def backward(self, df: torch.Tensor) -> list[torch.Tensor]:
        X, self._X = self._X, None
        assert X is not None, "backward() needs a forward() first"
        if X.dim() == self.input_dim:
            g = df @ X.reshape(X.shape[0], -1)
        else:
            g = torch.bmm(df.unsqueeze(1), X.reshape(*X.shape[:2], -1)).squeeze(1)
        return [part.reshape(p.shape) for part, p in zip(g.split(self._sizes, dim=1), self.params)]


class TwoLayerStack(Stack):
    """``f_k(x) = Σ_j a_kj σ(w_kj·x)``, with a hand-written backward pass.

    The backward pass never forms the (K, n, h) hidden-unit gradient: with ``df`` the
    output gradient and ``S = σ'(XWᵀ)``, ``M_k = S_kᵀ (df_k ⊙ X)`` is one product per run,
    ``∇W = a ⊙ M``, and, since σ is positively homogeneous of degree q (Euler:
    ``σ(z) = z σ'(z) / q``), ``∇a = Σ_d W ⊙ M / q``. The (K, n, h) arrays live in buffers
    kept from step to step."""

    #: The last forward()'s input, activations, slopes (None for ReLU) and slope factor,
    #: until its backward().
    _cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, float] | None

    def __init__(self, runs: list[models.HomogeneousModel]):
        super().__init__(runs)
        self.act = cast(models.TwoLayer, runs[0]).act  # stack() builds this for TwoLayer models only
        # Euler's identity needs the declared degree to be the activation's true one: used
        # only for the built-in activations (a new one gets ∇a from its values).
        self._euler = type(self.act) in (models.ReLU, models.ReLUPower, models.Quadratic)
        self._buffers: dict[str, torch.Tensor] = {}

    def _buffer(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        like = self.params[0]
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape:
            buf = self._buffers[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf

    def _hidden(self, X: torch.Tensor, name: str) -> torch.Tensor:
        """``X W_kᵀ`` for every run, shape ``(K, n, h)``, into the buffer ``name``."""
        W = self.params[0]  # (K, h, d)
        K, h = W.shape[:2]
        Xs = X.expand(K, *X.shape) if X.dim() == 2 else X  # a shared X is not copied
        return torch.bmm(Xs, W.mT, out=self._buffer(name, (K, Xs.shape[1], h)))

    def _value_and_slope(self, z: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """σ(z) and σ'(z) / c with the factor c, reusing z's memory where the activation
        allows (the slope is only formed in the backward pass when it is cheap to)."""
        act = self.act
        if type(act) is models.ReLU:
            r = z.clamp_(min=0)
            return r, None, 1.0  # the slope, sign(r), is formed by the backward pass
        if type(act) is models.ReLUPower and act.degree == 2.0:
            r = z.clamp_(min=0)
            return torch.mul(r, r, out=self._buffer(name, r.shape)), r, 2.0
        if type(act) is models.Quadratic:
            return torch.mul(z, z, out=self._buffer(name, z.shape)), z, 2.0
        value, slope = act.value_and_slope(z)
        return value, slope, 1.0

    def outputs(self, X: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            value, _, _ = self._value_and_slope(self._hidden(X, "z_out"), "v_out")
            return torch.bmm(value, self.params[1].unsqueeze(-1)).squeeze(-1)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        value, slope, factor = self._value_and_slope(self._hidden(X, "z"), "v")
        self._cache = (X, value, slope, factor)
        return torch.bmm(value, self.params[1].unsqueeze(-1)).squeeze(-1)

    def backward(self, df: torch.Tensor) -> list[torch.Tensor]:
        assert self._cache is not None, "backward() needs a forward() first"
        X, value, slope, factor = self._cache
        self._cache = None
        W, a = self.params
        if slope is None:  # ReLU: σ' = sign(σ)
            slope = torch.sign(value, out=self._buffer("v", value.shape))
        if X.dim() == 2:  # a shared X: df_k ⊙ X for every run, into a buffer kept from step to step
            dfX = torch.mul(df.unsqueeze(-1), X, out=self._buffer("dfX", (*df.shape, X.shape[1])))
        else:
            dfX = df.unsqueeze(-1) * X
        M = torch.bmm(slope.mT, dfX)  # (K, h, d)
        if factor != 1.0:
            M.mul_(factor)
        grad_W = a.unsqueeze(-1) * M
        if self._euler:
            grad_a = (W * M).sum(-1) / self.act.degree
        else:
            grad_a = torch.bmm(df.unsqueeze(1), value).squeeze(1)
        return [grad_W, grad_a]


def stack(runs: list[models.HomogeneousModel]) -> Stack:
    """The fastest stack for these models (all of one class and shape)."""
    first = runs[0]
    if any(type(m) is not type(first) for m in runs):
        raise TypeError("stack: every model must be of one class.")
    if type(first) in (models.Linear, models.BlockLinear):
        return LinearStack(runs)
    if type(first) is models.TwoLayer:
        return TwoLayerStack(runs)
    return Stack(runs)


__all__ = ["Stack", "LinearStack", "TwoLayerStack", "stack"]
