"""Multiclass margins of multi-output networks (Lyu & Li's ``f_y − max_{j≠y} f_j``): the pairs
of ``data.class_pairs``, the ``models.Pairwise`` wrapper, normalized and function-level
margins, KKT certificates and training, checked against direct computations."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
import torch
from implicit_bias import data, homogeneity, margins, max_margin, models, symmetry
from implicit_bias.homogeneity import check_homogeneous
from implicit_bias.kkt import kkt_certificate
from implicit_bias.train import Run, train


class LinearMulticlass(models.HomogeneousModel):
    """``f(x) = W x`` with k outputs (degree 1): its margin problem is convex."""

    def __init__(self, W):
        super().__init__()
        self.W = torch.nn.Parameter(torch.as_tensor(W, dtype=torch.float64).clone())
        self.num_classes, self.degree = self.W.shape[0], 1.0

    def forward(self, X):
        return X @ self.W.T


@pytest.fixture(scope="module")
def digits():
    return data.digits_classes(n=40, num_classes=4)


def direct_margins(f, labels):
    own = f[torch.arange(len(labels)), labels]
    others = f.clone()
    others[torch.arange(len(labels)), labels] = -math.inf
    return own - others.max(1).values


def test_class_pairs_layout(digits):
    X, labels = digits
    Z, ones = data.class_pairs(X, labels, 4)
    assert Z.shape == (40 * 3, 64 + 4) and torch.equal(ones, torch.ones(120, dtype=torch.float64))
    coef = Z[:, 64:].reshape(40, 3, 4)
    assert torch.equal(Z[:, :64].reshape(40, 3, 64), X[:, None].expand(40, 3, 64))
    assert (coef.sum(-1) == 0).all() and (coef[torch.arange(40), :, labels] == 1).all()
    # every other class once per sample
    assert ((coef == -1).sum(1) == (torch.arange(4)[None] != labels[:, None]).to(torch.int64)).all()


@pytest.mark.parametrize("bad", [[0, 1, 5], [0, -1, 2], [0.5, 1, 2]])
def test_class_labels_refused(bad):
    with pytest.raises(ValueError, match="integers in|lie in"):
        data.class_pairs(torch.zeros(3, 2), torch.tensor(bad), 4)


@pytest.mark.parametrize("kind", ["two_layer", "conv"])
def test_multiclass_margin_is_min_over_pairs(digits, kind):
    X, labels = digits
    model = (models.TwoLayerMulticlass(64, 8, 4, seed=3) if kind == "two_layer"
             else models.ConvNet(channels=(3, 3), num_classes=4, seed=3))
    q = margins.multiclass_margins(model, X, labels)
    assert torch.allclose(q, direct_margins(model(X).detach(), labels), rtol=0, atol=1e-12)
    Z, ones = data.class_pairs(X, labels, 4)
    pair_q = models.Pairwise(model)(Z).detach().reshape(40, 3)
    assert torch.allclose(pair_q.min(1).values, q, rtol=0, atol=1e-12)
    params = [p.detach() for p in model.parameters()]
    for norm in ("l2", "linf", "spectral"):
        expected = float(q.min()) / float(margins._norm(norm, params)(params)) ** model.degree
        assert margins.normalized_margin(model, X, labels, norm) == pytest.approx(expected, rel=1e-12)
        pair_margin = margins.normalized_margin(models.Pairwise(model), Z, ones, norm)
        assert pair_margin == pytest.approx(expected, rel=1e-12)


def test_pairwise_shortcut_equals_general_path(digits):
    X, labels = digits
    model = models.TwoLayerMulticlass(64, 8, 4, seed=1)
    Z, _ = data.class_pairs(X, labels, 4)
    pair = models.Pairwise(model)
    perm = torch.randperm(Z.shape[0], generator=torch.Generator().manual_seed(0))
    assert torch.allclose(pair(Z)[perm], pair(Z[perm]), rtol=0, atol=1e-12)


def test_binary_labels_refused_for_multi_output(digits):
    X, _ = digits
    model = models.TwoLayerMulticlass(64, 8, 4)
    y = torch.where(torch.arange(40) % 2 == 0, 1.0, -1.0).to(torch.float64)
    with pytest.raises(ValueError, match="class labels"):
        margins.normalized_margin(model, X, y)


def test_homogeneity_accepts_k_outputs_only_when_asked(digits):
    X, _ = digits
    model = models.TwoLayerMulticlass(64, 8, 4)
    with pytest.raises(ValueError, match="Pairwise"):
        check_homogeneous(model, X)
    assert check_homogeneous(model, X, multi_output=True) == pytest.approx(3.0)

    class Column(models.HomogeneousModel):
        num_classes, degree = 4, 1.0

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(64, dtype=torch.float64))

        def forward(self, X):
            return (X @ self.w)[:, None]

    with pytest.raises(ValueError, match=r"squeeze"):
        check_homogeneous(Column(), X, multi_output=True)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_function_margin_closed_form_and_invariance(digits, norm):
    X, labels = digits
    model = models.TwoLayerMulticlass(64, 8, 4, seed=2)
    closed = symmetry.best_rescaling(model, norm)
    search = symmetry.best_rescaling(model, norm, method="search")
    params = [p.detach() for p in model.parameters()]
    n = margins._norm(norm, params)
    assert float(n(model.rescaled(params, closed))) <= float(n(model.rescaled(params, search))) * (1 + 1e-6)
    # the function margin does not depend on the parametrization
    before = symmetry.function_margin(model, X, labels, norm)
    s = torch.linspace(-1, 1, model.symmetry_size(), dtype=torch.float64)
    with torch.no_grad():
        for p, q in zip(model.parameters(), model.rescaled(params, s)):
            p.copy_(q)
    assert symmetry.function_margin(model, X, labels, norm) == pytest.approx(before, rel=1e-7)


def test_certificate_of_exact_multiclass_solution():
    # a small separable 3-class linear problem: at its exact ℓ2 max-margin W the certificate is ~0
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 6))
    labels = np.argmax(X @ rng.standard_normal((6, 3)), axis=1)
    Zm, ym = data.multiclass_pairs(X, labels, 3)
    solution = max_margin(Zm.reshape(len(Zm), -1), ym, "l2")  # the Frobenius norm of W
    model = LinearMulticlass(np.asarray(solution.direction).reshape(3, 6))
    Xt, lt = torch.as_tensor(X), torch.as_tensor(labels)
    assert margins.normalized_margin(model, Xt, lt, "l2") == pytest.approx(solution.margin, rel=1e-6)
    cert = kkt_certificate(model, Xt, lt, "l2", active_tol=1e-6)
    assert cert.epsilon < 1e-6 and len(cert.multipliers) == 12 * 2
    # a perturbed W is not a KKT point
    noisy = LinearMulticlass(model.W.detach() + 0.05 * torch.as_tensor(rng.standard_normal((3, 6))))
    assert kkt_certificate(noisy, Xt, lt, "l2", active_tol=1e-6).epsilon > 1e-3


def test_training_pairs_batched_equals_loop(digits):
    X, labels = digits
    pairs = data.class_pairs(X, labels, 4)
    factory = models.pairwise_factory(models.TwoLayerMulticlass, d=64, width=8, num_classes=4)
    runs = [Run(opt, lr, 30, schedule=0.5, seed=s, model=factory)
            for s in (0, 1) for opt, lr in (("NormalizedGD", 1.0), ("SignGD", 0.005))]
    batched = train(runs, pairs, norms=("l2",), progress=False)
    loop = train(runs, pairs, norms=("l2",), progress=False, engine="loop")
    assert batched[0].engine["name"] == "batched"
    for a, b in zip(batched, loop):
        assert np.allclose(a.log_loss, b.log_loss, rtol=1e-10, atol=0)
    assert batched[0].log_loss[-1] != batched[2].log_loss[-1]  # each seed its own initialization


def test_unwrapped_multi_output_model_refused_by_train(digits):
    X, labels = digits
    Z, ones = data.class_pairs(X, labels, 4)
    run = Run("NormalizedGD", 1.0, 5, model=lambda d: models.TwoLayerMulticlass(d, 8, 4))
    with pytest.raises(ValueError, match="Pairwise"):
        train([run], (Z, ones), progress=False)


def _write_idx(path, array, code):
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def test_images_uses_mnist_when_the_variable_is_set(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, 0x08)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(20, dtype=np.uint8) % 10, 0x08)
    monkeypatch.setenv(data.MNIST_ENV, str(tmp_path))
    X, labels, source = data.images(n=15)
    assert X.shape == (15, 784) and labels.dtype == torch.int64 and "MNIST" in source
    monkeypatch.delenv(data.MNIST_ENV)
    X, labels, source = data.images(n=15)
    assert X.shape == (15, 64) and "digits" in source


def test_degree_of_multiclass_two_layer(digits):
    X, _ = digits
    for act, degree in (("relu", 2.0), ("relu2", 3.0)):
        model = models.TwoLayerMulticlass(64, 8, 4, activation=act)
        assert homogeneity.check_homogeneous(model, X, multi_output=True) == pytest.approx(degree)
