"""The library chapter's verdict (a user's own norm, trained and certified end to end)
passes for steepest descent in that norm and fails for its mutant, normalized GD (whose
limit is the ℓ2 solution)."""

from __future__ import annotations

import cvxpy as cp
import pytest
import torch
from implicit_bias import data, max_margin, norms, optim
from implicit_bias.train import Run, train
from implicit_bias.verdicts import library


class GroupL21(norms.Norm):
    """Σ_g ‖w_g‖₂ over consecutive pairs of weights, as the chapter writes it."""

    name, size = "group_l21", 2

    def rows(self, xs):
        return torch.cat([x.reshape(-1) for x in xs]).reshape(-1, self.size)

    def unrows(self, R, like):
        return [r.reshape(x.shape) for r, x in zip(R.reshape(-1).split([x.numel() for x in like]), like)]

    def __call__(self, xs):
        return self.rows(xs).norm(dim=1).sum()

    def dual(self, gs):
        return self.rows(gs).norm(dim=1).max()

    def steepest(self, gs):
        G = self.rows(gs)
        j = G.norm(dim=1).argmax()
        U = torch.zeros_like(G)
        U[j] = G[j] / G[j].norm()
        return self.unrows(U, gs)

    def subgradient(self, xs):
        R = self.rows(xs)
        return self.unrows(R / R.norm(dim=1, keepdim=True).clamp_min(1e-300), xs)

    def value_expr(self, w, shapes):
        return cp.sum(cp.norm(cp.reshape(w, (-1, self.size), order="C"), 2, axis=1))

    def dual_expr(self, g, shapes):
        return cp.max(cp.norm(cp.reshape(g, (-1, self.size), order="C"), 2, axis=1))


class GroupDescent(optim.SteepestDescent):
    def __init__(self, params, lr):
        super().__init__(params, GroupL21(), lr)


@pytest.fixture(scope="module")
def draws():
    """The chapter's three data draws (generalized Rademacher, seeds 0, 1, 2), one rows dict each."""
    out = []
    for seed in range(3):
        X, y = data.generalized_rademacher(n=10, d=20, seed=seed)
        runs = [Run(opt, 1.0, 1000, schedule=0.5, model={"kind": "linear"})
                for opt in (GroupDescent, "NormalizedGD")]
        histories = train(runs, (X, y), norms=[GroupL21()], progress=False)
        assert histories[0].engine["name"] == "batched"  # a user's norm in the batched engine
        out.append(library.rows(histories, X, y, GroupL21(), max_margin(X, y, GroupL21())))
    return out


def test_steepest_descent_in_the_users_norm_passes(draws):
    v = library.user_norm(draws[0], own="GroupDescent")
    assert v, v.failures
    v = library.user_norm(draws, own="GroupDescent")
    assert v, v.failures


def test_normalized_gd_as_the_users_optimizer_fails(draws):
    assert library.user_norm(draws, own="GroupDescent")
    v = library.user_norm(draws, own="NormalizedGD")
    assert not v
    assert any("certificate" in f for f in v.failures) and any("larger margin" in f for f in v.failures)
    assert {f.split(":")[0] for f in v.failures} == {"draw 0", "draw 1", "draw 2"}
