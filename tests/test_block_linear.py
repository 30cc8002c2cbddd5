"""The block linear model f(x) = ⟨W, X_W⟩ + ⟨u, x_u⟩ and exact max-margin solutions over named
parameter blocks: the hybrid norms against an independent cvxpy formulation, the batched
engine against the reference loop, and the checks that refuse a wrong model or layout."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch
from helpers import rel_err
from implicit_bias import data, homogeneity, kkt, maxmargin, models, norms
from implicit_bias.train import Run, train

BLOCKS = {"W": (4, 5), "u": (6,)}


@pytest.fixture(scope="module")
def draw():
    return data.small_gaussian(n=12, d=26, seed=3)


def test_block_linear_is_the_inner_product_with_the_concatenated_blocks(draw):
    X, _ = draw
    model = models.BlockLinear(26, BLOCKS, seed=1)
    assert [n for n, _ in model.named_parameters()] == ["W", "u"] and model.W.shape == (4, 5)
    expected = (X[:, :20].reshape(-1, 4, 5) * model.W).sum((1, 2)) + X[:, 20:] @ model.u
    torch.testing.assert_close(model(X), expected, rtol=1e-12, atol=1e-12)
    assert homogeneity.check_homogeneous(model, X) == pytest.approx(1.0)
    built = models.build({"kind": "block_linear", "blocks": {"W": [4, 5], "u": [6]}}, 26, seed=1)
    assert rel_err(built, model) == 0


def test_block_linear_refuses_blocks_that_do_not_fit_the_inputs():
    with pytest.raises(ValueError, match="hold 26 weights, but the inputs have 25"):
        models.BlockLinear(25, BLOCKS)
    with pytest.raises(ValueError, match="identifier"):
        models.BlockLinear(26, {"W.0": (4, 5), "u": 6})
    with pytest.raises(ValueError, match="hold 26 weights, but the inputs have 3"):
        Run("Muon", 0.1, 10, model={"kind": "block_linear", "blocks": BLOCKS}).build_model(3, torch.float64)


def _independent_hybrid(X, y, r: float, vector_norm):
    """max{r‖W‖_op, ‖u‖} max margin written directly in cvxpy (not through the library's norms)."""
    Z = (y[:, None] * X).numpy()
    W, u = cp.Variable((4, 5)), cp.Variable(6)
    margins = Z[:, :20] @ cp.reshape(W, 20, order="C") + Z[:, 20:] @ u
    norm = cp.maximum(r * cp.sigma_max(W), cp.norm(u, vector_norm))
    problem = cp.Problem(cp.Minimize(norm), [margins >= 1])
    problem.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    direction = np.r_[W.value.reshape(-1), u.value] / problem.value
    return direction, 1 / problem.value


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
@pytest.mark.parametrize("r,vector_norm", [(1.0, "inf"), (0.3, "inf"), (3.0, "inf"), (1.0, 2)])
def test_block_max_margin_matches_an_independent_formulation(draw, r, vector_norm):
    X, y = draw
    model = models.BlockLinear(26, BLOCKS)
    vector = norms.Linf() if vector_norm == "inf" else norms.L2()
    norm = norms.MaxNorm.named(model, [(norms.Spectral(), ["W"], r), (vector, ["u"], 1.0)])
    sol = maxmargin.max_margin(X, y, norm, blocks=BLOCKS)
    assert set(sol.direction) == {"W", "u"} and sol.direction["W"].shape == (4, 5)
    direction, margin = _independent_hybrid(X, y, r, vector_norm)
    assert sol.margin == pytest.approx(margin, rel=1e-6)
    np.testing.assert_allclose(maxmargin.flat_direction(sol.direction), direction, atol=1e-5)
    # the same problem from the model itself, and from the hybrid norm's name (r = 1, ℓ∞)
    assert maxmargin.max_margin(X, y, norm, blocks=model).margin == pytest.approx(sol.margin, rel=1e-9)
    if (r, vector_norm) == (1.0, "inf"):
        assert maxmargin.max_margin(X, y, "hybrid", blocks=BLOCKS).margin == pytest.approx(margin, rel=1e-6)


def test_one_block_is_the_plain_problem(draw):
    X, y = draw
    blocked = maxmargin.max_margin(X, y, "l2", blocks={"w": 26})
    plain = maxmargin.max_margin(X, y, "l2")
    np.testing.assert_allclose(blocked.direction["w"], plain.direction, atol=1e-9)


def test_exact_solution_is_a_kkt_point_of_its_hybrid_norm_and_not_of_another(draw):
    X, y = draw
    model = models.BlockLinear(26, BLOCKS)
    params = list(model.parameters())
    sol = maxmargin.max_margin(X, y, norms.hybrid(params, 0.3), blocks=BLOCKS)
    with torch.no_grad():
        model.W.copy_(torch.as_tensor(sol.direction["W"]))
        model.u.copy_(torch.as_tensor(sol.direction["u"]))
    own = kkt.kkt_certificate(model, X, y, norms.hybrid(params, 0.3), active_tol=1e-4).epsilon
    other = kkt.kkt_certificate(model, X, y, norms.hybrid(params, 3.0), active_tol=1e-4).epsilon
    assert own < 1e-5 and other > 0.05, (own, other)


def test_max_margin_refuses_a_model_that_is_not_linear_in_its_blocks(draw):
    X, y = draw
    net = models.TwoLayer(26, 3)
    with pytest.raises(ValueError, match="linear model"):
        maxmargin.max_margin(X, y, "l2", blocks=net)
    with pytest.raises(ValueError, match=r"X must be \(n, 26\)"):
        maxmargin.max_margin(X[:, :25], y, "l2", blocks=BLOCKS)
    with pytest.raises(ValueError, match="no parameter named"):
        norms.MaxNorm.named(["W", "u"], [(norms.Spectral(), ["V"], 1.0), (norms.Linf(), ["u"], 1.0)])


def test_block_linear_batched_engine_equals_the_reference_loop(draw):
    spec = {"kind": "block_linear", "blocks": BLOCKS}
    # 50 steps: Adam at ε = 0 and the polar factor amplify 1-ulp differences later on
    runs = [Run(name, 0.1, 50, schedule=0.5, model=spec, options=options) for name, options in
            (("MuonSignum", {}), ("MuonAdam", {"lr_adam": 0.3, "betas": (0.5, 0.5), "eps": 0.0}),
             ("Signum", {}))]
    batched = train(runs, draw, norms=(), progress=False)
    loop = train(runs, draw, norms=(), progress=False, engine="loop")
    assert batched[0].engine["name"] == "batched"
    for a, b in zip(batched, loop):
        assert rel_err(a.model, b.model) < 1e-10


def test_nearness_reads_cosines_and_margin_fractions(draw):
    X, y = draw
    model = models.BlockLinear(26, BLOCKS)
    solutions = {g: (norm, maxmargin.max_margin(X, y, norm, blocks=BLOCKS))
                 for g, norm in (("l2", norms.L2()), ("linf", norms.Linf()))}
    with torch.no_grad():  # θ = 3 × the ℓ2 solution: cosine 1 and the full margin, at any scale
        w = torch.as_tensor(maxmargin.flat_direction(solutions["l2"][1].direction))
        model.W.copy_(3 * w[:20].reshape(4, 5))
        model.u.copy_(3 * w[20:])
    near = maxmargin.nearness(model, X, y, solutions)
    assert near["cos"]["l2"] == pytest.approx(1.0, abs=1e-12)
    assert near["margin"]["l2"] == pytest.approx(1.0, rel=1e-6)
    assert near["cos"]["linf"] < 0.99 and near["margin"]["linf"] < 1
