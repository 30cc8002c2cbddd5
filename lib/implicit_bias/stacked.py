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
        self._graph = None

    @property
    def size(self) -> int:
        return self.params[0].shape[0]

    def run_params(self, k: int) -> list[torch.Tensor]:
        """Run k's parameters (views into the stack)."""
        return [p[k] for p in self.params]

    def _call(self, params, X):
        def one(p, x):
            return functional_call(self.template, dict(zip(self.names, p)), (x,))
        return vmap(one, in_dims=(0, None if X.dim() == self.input_dim else 0))(params, X)

    def outputs(self, X) -> torch.Tensor:
        """``f_k(X)`` for every run, shape ``(K, n)``, with nothing kept for a backward."""
        with torch.no_grad():
            return self._call(self.params, X)

    def forward(self, X) -> torch.Tensor:
        leaves = [p.detach().requires_grad_(True) for p in self.params]
        with torch.enable_grad():
            f = self._call(leaves, X)
        self._graph = (leaves, f)
        return f.detach()

    def backward(self, df) -> list[torch.Tensor]:
        leaves, f = self._graph
        self._graph = None
        return list(torch.autograd.grad(f, leaves, grad_outputs=df))


class LinearStack(Stack):
    """``f_k(x) = ⟨w_k, x⟩``: the outputs and the gradients are one matrix product each."""

    def __init__(self, runs):
        super().__init__(runs)
        self.input_dim = 1 + runs[0].w.dim()

    def outputs(self, X):
        w = self.params[0].reshape(self.size, -1)
        if X.dim() == self.input_dim:
            return (X.reshape(X.shape[0], -1) @ w.T).T
        return torch.bmm(X.reshape(*X.shape[:2], -1), w.unsqueeze(-1)).squeeze(-1)

    def forward(self, X):
        self._X = X
        return self.outputs(X)

    def backward(self, df):
        X, self._X = self._X, None
        w = self.params[0]
        if X.dim() == self.input_dim:
            g = df @ X.reshape(X.shape[0], -1)
        else:
            g = torch.bmm(df.unsqueeze(1), X.reshape(*X.shape[:2], -1)).squeeze(1)
        return [g.reshape(w.shape)]


class TwoLayerStack(Stack):
    """``f_k(x) = Σ_j a_kj σ(w_kj·x)``, with a hand-written backward pass that reuses the
    forward's memory."""

    def __init__(self, runs):
        super().__init__(runs)
        self.act = runs[0].act
        self._square = isinstance(self.act, models.ReLUPower) and self.act.degree == 2.0

    def _hidden(self, X):
        W = self.params[0]  # (K, h, d)
        # X is broadcast over the runs (no copy): one (n, d) × (d, h) product per run.
        return torch.matmul(X, W.transpose(1, 2))  # (K, n, h)

    def outputs(self, X):
        with torch.no_grad():
            s = self.act(self._hidden(X))
            return torch.bmm(s, self.params[1].unsqueeze(-1)).squeeze(-1)

    def forward(self, X):
        z = self._hidden(X)
        if self._square:
            # σ = r², σ' = 2r with r = relu(z): keep r (in z's memory) as the slope / 2.
            slope = z.clamp_(min=0)
            value = slope * slope
        else:
            value, slope = self.act.value_and_slope(z)
        self._cache = (X, value, slope)
        return torch.bmm(value, self.params[1].unsqueeze(-1)).squeeze(-1)

    def backward(self, df):
        X, value, slope = self._cache
        self._cache = None
        a = self.params[1]
        grad_a = torch.bmm(df.unsqueeze(1), value).squeeze(1)  # (K, h)
        # ∂/∂(w_j·x) = df · a_j · σ'(w_j·x), in the slope's memory.
        a_factor = 2.0 * a if self._square else a
        hidden = slope.mul_(df.unsqueeze(-1)).mul_(a_factor.unsqueeze(1))  # (K, n, h)
        if X.dim() == 2:
            grad_W = torch.matmul(hidden.transpose(1, 2), X)
        else:
            grad_W = torch.bmm(hidden.transpose(1, 2), X)
        return [grad_W, grad_a]


def stack(runs: list[models.HomogeneousModel]) -> Stack:
    """The fastest stack for these models (all of one class and shape)."""
    first = runs[0]
    if any(type(m) is not type(first) for m in runs):
        raise TypeError("stack: every model must be of one class.")
    if type(first) is models.Linear:
        return LinearStack(runs)
    if type(first) is models.TwoLayer:
        return TwoLayerStack(runs)
    return Stack(runs)


__all__ = ["Stack", "LinearStack", "TwoLayerStack", "stack"]
