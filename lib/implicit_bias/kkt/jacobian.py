"""Per-sample margin gradients ``∇_θ (y_i f(x_i; θ))``, by ``torch.func``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.func import functional_call, grad, vmap


def margin_jacobian(model: torch.nn.Module, params: Sequence[torch.Tensor], X: torch.Tensor, y: torch.Tensor,
                    chunk_size: int | None = 256) -> torch.Tensor:
    """The ``k × p`` matrix of per-sample margin gradients ``∇_θ (y_i f(x_i; θ))`` at the
    parameters ``params`` (a list in ``model.parameters()`` order), flattened in C order.
    ``vmap`` over samples: O(k·p) memory, about a second for k = 350, p ≈ 17k."""
    names = [name for name, _ in model.named_parameters()]
    if len(names) != len(params):
        raise ValueError(f"Got {len(params)} parameter tensors for a model with {len(names)}.")

    def margin(ps: tuple[torch.Tensor, ...], x: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        f: torch.Tensor = functional_call(model, dict(zip(names, ps)), (x.unsqueeze(0),))
        return yi * f.reshape(())

    grads = vmap(grad(margin), in_dims=(None, 0, 0), chunk_size=chunk_size)(tuple(params), X, y)
    return torch.cat([g.reshape(X.shape[0], -1) for g in grads], dim=1)
