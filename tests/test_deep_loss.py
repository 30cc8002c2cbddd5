"""Every optimizer with momentum or second moments trains to a loss below 1e-1000.

The loss is carried in a moving frame (:mod:`implicit_bias.frame`), and the optimizer's
state with it: when the loss falls by Δ nats per step faster than the state forgets
(β·e^Δ > 1), the state is e^{kΔ} times the current gradients after k steps, far past
float64's range. These runs make the loss fall by tens to thousands of nats per step on
20 separable points, so any state kept as plain float64 numbers overflows within a few
steps; they must train on to below 1e-1000 (log L < −1000 ln 10 ≈ −2303).

The rates are chosen from the exact dynamics (computed once in 80-bit floats, whose
range reaches 1e-4951): on the linear model the loss passes well below 1e-2000 in every
case. Sign methods whose momentum outlives the loss (Signum, Lion, and the two-layer
runs) oscillate by hundreds of nats, so the test asks that the loss *reaches* 1e-1000,
the smallest loss logged at every step, not that it ends there; every logged value
must be finite and no run may fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from implicit_bias import data
from implicit_bias.train import Run, train

LOG_1E_MINUS_1000 = -1000 * math.log(10)

# These runs are far outside Adam's theorem on purpose (the loss falls much faster than √v̂
# forgets), and implicit_bias.regime says so.
pytestmark = pytest.mark.filterwarnings("ignore:run .* left Adam's regime:RuntimeWarning")

LINEAR = {"kind": "linear"}
# f(x) = a·(W x): a matrix for Muon, a vector for Signum or Adam in the hybrids (degree 2).
TWO_LAYER = {"kind": "two_layer", "width": 4, "activation": "linear"}

CASES = [
    # optimizer, model, rate, steps, options; eps = 0 where ε would end the sign-like regime
    pytest.param("MomentumGD", LINEAR, 1e3, 100, {}, id="MomentumGD"),
    pytest.param("Muon", LINEAR, 1e3, 100, {}, id="Muon-linear"),
    pytest.param("Muon", TWO_LAYER, 30.0, 100, {}, id="Muon-two-layer"),
    pytest.param("TorchMuon", TWO_LAYER, 30.0, 100, {}, id="TorchMuon-two-layer"),
    pytest.param("Signum", LINEAR, 1e4, 200, {}, id="Signum"),
    pytest.param("Lion", LINEAR, 1e4, 200, {}, id="Lion"),
    pytest.param("Adam", LINEAR, 3e4, 200, {}, id="Adam"),
    # weight decay bounds ‖θ‖ and so the loss: without it AdamW is Adam
    pytest.param("AdamW", LINEAR, 3e4, 200, {"eps": 0.0, "weight_decay": 0.0}, id="AdamW"),
    pytest.param("RMSProp", LINEAR, 1e4, 100, {"eps": 0.0}, id="RMSProp"),
    pytest.param("AdaGrad", LINEAR, 1e5, 100, {"eps": 0.0}, id="AdaGrad"),
    pytest.param("MuonSignum", TWO_LAYER, 30.0, 100, {}, id="MuonSignum-two-layer"),
    pytest.param("MuonAdam", TWO_LAYER, 30.0, 100, {}, id="MuonAdam-two-layer"),
]


@pytest.fixture(scope="module")
def points():
    return data.gaussian(n=20, d=5, seed=0)


@pytest.mark.parametrize("optimizer,model,lr,steps,options", CASES)
def test_reaches_a_loss_below_1e_minus_1000(points, optimizer, model, lr, steps, options):
    run = Run(optimizer, lr, steps, model=model, options=options)
    (h,) = train(run, points, norms=("l2",), log_points=steps, progress=False)
    assert np.isfinite(h.log_loss).all() and np.isfinite(h.param_norm).all()
    assert h.log_loss.min() < LOG_1E_MINUS_1000, (
        f"{optimizer}: smallest log10 loss {h.log_loss.min() / math.log(10):.0f}, final "
        f"{h.log_loss[-1] / math.log(10):.0f}")
