"""Bias-free homogeneous models: ``f(x; cθ) = c^L f(x; θ)`` with ``L = model.degree``.

Every binary model maps inputs of shape ``(n, d)`` to outputs of shape ``(n,)``, has no
biases (a bias breaks homogeneity), and is built in float64 by default with a seeded
initialization so runs are reproducible on the CPU. A multi-output model (``num_classes =
k``: :class:`TwoLayerMulticlass`, :class:`ConvNet`) maps to ``(n, k)`` scores; its multiclass
margin ``q_i = f_{y_i}(x_i) − max_{j≠y_i} f_j(x_i)`` (Lyu & Li 2020) is the smallest of
``k − 1`` pairwise margins, each homogeneous of the same degree, and :class:`Pairwise`
turns it into a binary model on those pairs, so every margin, certificate and training
loop of the library applies unchanged.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from . import registry
from .config import DTYPE
from .norms import L2, Linf, MaxNorm, Norm, Spectral

Tensors = Sequence[torch.Tensor]

class Activation(nn.Module):
    """A positively homogeneous activation ``σ(cz) = c^q σ(z)`` (c > 0), ``q = degree``.

    ``value_and_slope(z)`` returns ``σ(z)`` and ``σ'(z)`` together (the batched engine's
    hand-written backward pass uses it; the slope at a kink is autograd's choice, 0). The
    built-in activations write it out; a new one gets it from autograd of ``forward``."""

    degree: float = 1.0
    smooth: bool = False

    if TYPE_CHECKING:  # nn.Module.__call__ returns Any: an activation maps a tensor to a tensor
        def __call__(self, z: torch.Tensor) -> torch.Tensor: ...

    def value_and_slope(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            x = z.detach().requires_grad_(True)
            value = self(x)
            (slope,) = torch.autograd.grad(value.sum(), x)  # elementwise: the sum's gradient
        return value.detach(), slope


class ReLU(Activation):
    degree, smooth = 1.0, False

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(z)

    def value_and_slope(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.relu(z)
        return r, (r > 0).to(z.dtype)


class ReLUPower(Activation):
    """``max(z, 0)^q``; C¹ for ``q > 1`` (the squared ReLU, q = 2, is the default smooth one)."""

    def __init__(self, q: float = 2.0):
        super().__init__()
        if not (_is_real(q) and math.isfinite(q) and q >= 1):
            raise ValueError(f"ReLUPower needs a finite q ≥ 1 to be homogeneous and monotone, got {q!r}.")
        self.degree, self.smooth = float(q), q > 1

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(z) ** self.degree

    def value_and_slope(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.relu(z)
        if self.degree == 2.0:  # the default: two products instead of two powers
            return r * r, 2.0 * r
        # (r > 0): at q = 1, r^0 would be 1 where z ≤ 0
        return r**self.degree, self.degree * r ** (self.degree - 1.0) * (r > 0)

    def extra_repr(self) -> str:
        return f"q={self.degree:g}"


class Quadratic(Activation):
    """``z²`` (degree 2, smooth)."""

    degree, smooth = 2.0, True

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * z

    def value_and_slope(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z * z, 2.0 * z


class Identity(Activation):
    """``z`` (a linear network)."""

    degree, smooth = 1.0, True

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def value_and_slope(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z, torch.ones_like(z)


ACTIVATIONS: dict[str, type[Activation]] = {"relu": ReLU, "relu2": ReLUPower, "squared_relu": ReLUPower,
                                            "quadratic": Quadratic, "linear": Identity}

#: What :func:`make_activation` takes: an activation, its name, or ``('relu_power', q)`` (or
#: the list JSON makes of it).
ActivationSpec = Activation | str | tuple[str, float] | list[str | float]


def make_activation(spec: ActivationSpec) -> Activation:
    """An activation from a name (``relu``, ``relu2``/``squared_relu``, ``quadratic``,
    ``linear``), from ``('relu_power', q)`` (or the list JSON makes of it), or an
    :class:`Activation` instance."""
    if isinstance(spec, Activation):
        check_activation(spec)
        return spec
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and spec[0] == "relu_power":
        return ReLUPower(cast(float, spec[1]))  # ReLUPower checks it is a number
    if isinstance(spec, str) and spec in ACTIVATIONS:
        return ACTIVATIONS[spec]()
    raise ValueError(
        f"{spec!r} is not a positively homogeneous activation this library knows. "
        f"Use one of {sorted(ACTIVATIONS)} or ('relu_power', q); activations such as tanh, "
        "sigmoid or GELU make the model non-homogeneous, so its normalized margin is undefined."
    )


#: Where an activation instance is checked: ``σ(cz) = c^q σ(z)`` for these z and c.
_CHECK_Z = torch.linspace(-3.0, 3.0, 13, dtype=torch.float64)
_CHECK_C = (0.5, 2.0, 3.0)


def check_activation(act: Activation) -> None:
    """Raise unless ``act`` is positively homogeneous of its declared ``degree`` q on a grid
    of inputs, and its ``value_and_slope`` (if its own) agrees with ``forward``: a subclass
    wrapping tanh, or an overwritten ``degree``, would otherwise give a model whose
    margins, certificates and batched training are silently wrong."""
    name, q = type(act).__name__, act.degree
    if not (_is_real(q) and math.isfinite(q) and q > 0):
        raise ValueError(f"{name}.degree must be a finite number q > 0 (σ(cz) = c^q σ(z)), got {q!r}.")
    dtype = next((p.dtype for p in act.parameters()), torch.float64)
    z = _CHECK_Z.to(dtype)
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    with torch.no_grad():
        f = act(z)
        for c in _CHECK_C:
            fc = act(c * z)
            if not torch.allclose(fc, c**q * f, rtol=tol, atol=tol * float(f.abs().max())):
                raise ValueError(
                    f"{name} declares degree {q:g} but σ({c:g}z) ≠ {c:g}^{q:g} σ(z) (largest error "
                    f"{float((fc - c**q * f).abs().max()):.3g} on z in [-3, 3]): it is not positively "
                    "homogeneous of that degree. Declare the degree it has, or use a homogeneous "
                    "activation (ReLU and its powers; tanh, sigmoid or GELU make the model "
                    "non-homogeneous, so its normalized margin is undefined).")
        if type(act).value_and_slope is not Activation.value_and_slope:  # the batched engine's backward
            z = z[z != 0]  # at a kink any subgradient will do
            value, slope = act.value_and_slope(z)
            _, auto = Activation.value_and_slope(act, z)
            if not all(torch.allclose(a, b, rtol=tol, atol=tol) for a, b in ((value, act(z)), (slope, auto))):
                raise ValueError(f"{name}.value_and_slope(z) disagrees with its forward and autograd's "
                                 "slope on z in [-3, 3]: fix it, or delete it to inherit the autograd one.")


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _size(name: str, value: object) -> int:
    """A dimension or width: a positive integer."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1:
        return int(value)
    raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _check_init(seed: int, init_scale: float, dtype: torch.dtype) -> None:
    """The arguments every model shares."""
    if not (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        raise TypeError(f"seed must be an integer, got {seed!r}.")
    if not (_is_real(init_scale) and math.isfinite(init_scale) and init_scale >= 0):
        raise ValueError(f"init_scale must be a finite number ≥ 0, got {init_scale!r}.")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch dtype such as torch.float64, got {dtype!r}.")


def _init(shape: Sequence[int], fan_in: int, generator: torch.Generator, scale: float,
          dtype: torch.dtype) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape, generator=generator, dtype=dtype) * scale / math.sqrt(fan_in))


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


class HomogeneousModel(nn.Module):
    """Base class: ``degree`` is the homogeneity degree L in the parameters.

    A model with rescaling symmetries (maps of θ that leave ``f`` unchanged) describes them
    by ``symmetry_size(group)`` and ``rescaled(params, s, group)``: log-scales ``s`` of that
    size act on the parameter list, ``s = 0`` is the identity, and ``f`` is the same at every
    ``s``. ``group`` is ``'neuron'`` (every hidden unit on its own) or ``'layer'`` (one scale
    per layer). The default is no symmetry; :mod:`implicit_bias.symmetry` uses these to
    score functions rather than parametrizations."""

    degree: float

    if TYPE_CHECKING:  # nn.Module.__call__ returns Any: a model maps inputs to outputs
        def __call__(self, X: torch.Tensor) -> torch.Tensor: ...

    def margins(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample margins ``q_i = y_i f(x_i; θ)``."""
        return y * self(X)

    def symmetry_size(self, group: str = "neuron") -> int:
        return 0

    def rescaled(self, params: Tensors, s: torch.Tensor, group: str = "neuron") -> list[torch.Tensor]:
        return list(params)

    def best_log_scales(self, params: Tensors, norm: Norm, group: str = "neuron") -> torch.Tensor | None:
        """The log-scales ``s`` that minimize ``‖T_s θ‖`` in closed form, where the model has
        one for ``norm``; None (this default): :func:`symmetry.best_rescaling` searches."""
        return None


def _two_layer_log_scales(W: torch.Tensor, a: torch.Tensor, q: float, norm: Norm) -> torch.Tensor | None:
    """The best per-neuron log-scales of ``Σ_j a_j σ(w_j·x)`` in closed form for ℓ2, ℓ∞ and
    the hybrid norm (papers.md §7); None for another norm. With ``A_j = ‖w_j‖``,
    ``B_j = |a_j|``: ℓ2 balances ``c_j^{2+2q} = q B_j²/A_j²``; ℓ∞ ``c_j^{1+q} = B_j/A_j``; the
    hybrid ``max{r‖DW‖₂, max_j |a_j| d_j^{−q}}`` is smallest at ``d_j = (|a_j|/t)^{1/q}`` with
    ``t = (r K)^{q/(1+q)}``, ``K = ‖diag(|a|^{1/q}) W‖₂``."""
    if not (W.norm(dim=1) > 0).all() or not (a != 0).all():
        return None
    if type(norm) is L2:
        return torch.log(q * a**2 / (W**2).sum(1)) / (2 + 2 * q)
    if type(norm) is Linf:
        return torch.log(a.abs() / W.abs().amax(1)) / (1 + q)
    blocks = norm.blocks if isinstance(norm, MaxNorm) else []
    if (len(blocks) == 2 and blocks[0][1] == [0] and blocks[1][1] == [1]
            and type(blocks[0][0]) is Spectral and type(blocks[1][0]) is Linf and blocks[1][2] == 1.0):
        r = blocks[0][2]
        K = torch.linalg.matrix_norm(a.abs() ** (1 / q) * W.T, ord=2)  # ‖diag(|a|^{1/q}) W‖₂
        t = (r * K) ** (q / (1 + q))
        return torch.log(a.abs() / t) / q
    return None


class Linear(HomogeneousModel):
    """``f(x) = ⟨w, x⟩`` (degree 1). ``d`` may be a shape such as ``(a, b)``: then ``w`` is
    an a×b matrix and the inputs are a×b matrices, so the spectral norm of ``w`` is a
    genuine matrix norm."""

    def __init__(self, d: int | Sequence[int], seed: int = 0, init_scale: float = 1.0,
                 dtype: torch.dtype = DTYPE):
        super().__init__()
        _check_init(seed, init_scale, dtype)
        shape: tuple[int, ...]
        if isinstance(d, numbers.Integral):
            shape = (_size("d", d),)
        elif isinstance(d, (tuple, list, torch.Size)) and len(d) > 0:
            shape = tuple(_size("each dimension of d", k) for k in d)
        else:
            raise ValueError(f"d must be a positive integer or a shape such as (a, b), got {d!r}.")
        self.w = _init(shape, math.prod(shape), _generator(seed), init_scale, dtype)
        self.degree = 1.0

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return X.reshape(X.shape[0], -1) @ self.w.reshape(-1)


class BlockLinear(HomogeneousModel):
    """``f(x) = Σ_k ⟨θ_k, x_k⟩`` over named parameter blocks (degree 1), e.g. a matrix and a
    vector: ``BlockLinear(26, blocks={"W": (4, 5), "u": (6,)})`` is
    ``f(x) = ⟨W, X_W⟩ + ⟨u, x_u⟩``. An input ``x`` of size ``d = Σ_k |θ_k|`` is the blocks'
    inputs flattened (C order) and concatenated in the order of ``blocks``, the order of
    ``named_parameters()``.

    The model of the hybrid theorem where it can be tested exactly (papers.md §7): smooth,
    homogeneous, and linear, so its margin problem in any norm is convex and the KKT point of
    Gronich & Vardi's Cor 3.5 and Thm 3.7 *is* the max-margin solution
    (:func:`implicit_bias.maxmargin.max_margin` with ``blocks=``). Muon moves the matrix
    ``W``; Signum or Adam the vector ``u``; the hybrid norm ``max{r‖W‖_op, ‖u‖_∞}`` prices
    one against the other, so ``r`` changes the predictor, not a split of it."""

    def __init__(self, d: int, blocks: dict[str, int | Sequence[int]], seed: int = 0, init_scale: float = 1.0,
                 dtype: torch.dtype = DTYPE):
        super().__init__()
        _check_init(seed, init_scale, dtype)
        self.shapes = block_shapes(blocks)
        total = sum(math.prod(s) for s in self.shapes.values())
        if _size("d", d) != total:
            raise ValueError(f"BlockLinear: the blocks {dict(self.shapes)} hold {total} weights, "
                             f"but the inputs have {d} features; they must match.")
        g = _generator(seed)
        for name, shape in self.shapes.items():
            self.register_parameter(name, _init(shape, total, g, init_scale, dtype))
        self.degree = 1.0

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return X.reshape(X.shape[0], -1) @ torch.cat([p.reshape(-1) for p in self.parameters()])


def block_shapes(blocks: object) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` checked: names that can name a parameter, shapes of positive sizes
    (an integer is a vector's length)."""
    if not isinstance(blocks, dict) or not blocks:
        raise ValueError(f"blocks must be a non-empty dict {{name: shape}}, got {blocks!r}.")
    out: dict[str, tuple[int, ...]] = {}
    for name, shape in blocks.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"a block's name must be a Python identifier, got {name!r}.")
        shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
        out[name] = tuple(_size(f"each dimension of block {name!r}", k) for k in shape)
    return out


class DiagonalLinear(HomogeneousModel):
    """Depth-D diagonal linear network ``f(x) = Σ_j Π_l w_l[j] x[j]`` (degree D)."""

    def __init__(self, d: int, depth: int = 2, seed: int = 0, init_scale: float = 1.0,
                 dtype: torch.dtype = DTYPE):
        super().__init__()
        _check_init(seed, init_scale, dtype)
        d, depth = _size("d", d), _size("depth", depth)
        g = _generator(seed)
        self.layers = nn.ParameterList(
            [_init((d,), 1, g, init_scale, dtype) for _ in range(depth)])
        self.degree = float(depth)

    def symmetry_size(self, group: str = "neuron") -> int:
        _check_group(group)
        return (len(self.layers) - 1) * (self.layers[0].numel() if group == "neuron" else 1)

    def rescaled(self, params: Tensors, s: torch.Tensor, group: str = "neuron") -> list[torch.Tensor]:
        # layer l < D−1 times e^{s_l}, the last layer times e^{−Σ s_l}: every product unchanged
        s = s.reshape(len(params) - 1, -1)
        return [p * torch.exp(g) for p, g in zip(params, [*s, -s.sum(0)])]

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        # Index one by one: a slice of a ParameterList bypasses torch.func.functional_call,
        # which would silently drop those layers from the margin gradients of `kkt`.
        w: torch.Tensor = self.layers[0]  # ParameterList items are untyped
        for i in range(1, len(self.layers)):
            w = w * self.layers[i]
        return X @ w


def _hidden_layer(d: int, width: int, activation: ActivationSpec, seed: int, init_scale: float,
                  dtype: torch.dtype) -> tuple[Activation, nn.Parameter, torch.Generator, int]:
    """The two-layer nets' shared start, checked: the activation and the hidden layer ``W``
    (width × d), drawn first from the seed's generator, which is returned for the rest of
    the model's parameters, with the width."""
    _check_init(seed, init_scale, dtype)
    d, width = _size("d", d), _size("width", width)
    g = _generator(seed)
    return make_activation(activation), _init((width, d), d, g, init_scale, dtype), g, width


class TwoLayer(HomogeneousModel):
    """``f(x) = Σ_j a_j σ(w_j·x)``, bias-free; degree ``1 + q`` for a degree-q activation
    (3 for the squared ReLU). Parameters: ``W`` (width × d) and ``a`` (width)."""

    def __init__(self, d: int, width: int, activation: ActivationSpec = "relu2", seed: int = 0,
                 init_scale: float = 1.0, dtype: torch.dtype = DTYPE):
        super().__init__()
        self.act, self.W, g, width = _hidden_layer(d, width, activation, seed, init_scale, dtype)
        self.a = _init((width,), width, g, init_scale, dtype)
        self.degree = 1.0 + self.act.degree

    def symmetry_size(self, group: str = "neuron") -> int:
        _check_group(group)
        return self.W.shape[0] if group == "neuron" else 1

    def rescaled(self, params: Tensors, s: torch.Tensor, group: str = "neuron") -> list[torch.Tensor]:
        # (w_j, a_j) → (c_j w_j, a_j / c_j^q): σ(c z) = c^q σ(z) for c > 0
        W, a = params
        return [W * torch.exp(s)[:, None], a * torch.exp(-self.act.degree * s)]

    def best_log_scales(self, params: Tensors, norm: Norm, group: str = "neuron") -> torch.Tensor | None:
        # the closed forms hold for this rescaling symmetry: a subclass that changes it searches
        if group != "neuron" or type(self).rescaled is not TwoLayer.rescaled:
            return None
        W, a = params
        return _two_layer_log_scales(W, a, self.act.degree, norm)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.act(X @ self.W.T) @ self.a


class TwoLayerWithVectorUnit(HomogeneousModel):
    """``f(x) = Σ_j a_j σ(w_j·x) + b σ(v·x)``: a two-layer net (``W``, ``a``) plus one more
    unit whose input weights ``v`` are a vector, not a row of the matrix ``W``.

    Muon-Adam hands ``W`` to Muon and ``a, v, b`` to Adam. On a plain two-layer net the
    ratio ``r`` of the hybrid norm ``max{r‖W‖_msp, ‖u‖_∞}`` only re-splits the same function
    between the layers (papers.md §7); here the matrix and the vector unit are two branches
    of one layer, no rescaling trades one for the other, so ``r`` decides how much of ``f``
    each branch carries. Degree ``1 + q``."""

    def __init__(self, d: int, width: int, activation: ActivationSpec = "relu2", seed: int = 0,
                 init_scale: float = 1.0, dtype: torch.dtype = DTYPE):
        super().__init__()
        self.act, self.W, g, width = _hidden_layer(d, width, activation, seed, init_scale, dtype)
        self.a = _init((width,), width + 1, g, init_scale, dtype)
        self.v = _init((d,), d, g, init_scale, dtype)
        self.b = _init((1,), width + 1, g, init_scale, dtype)
        self.degree = 1.0 + self.act.degree

    def symmetry_size(self, group: str = "neuron") -> int:
        _check_group(group)
        return self.W.shape[0] + 1 if group == "neuron" else 1

    def rescaled(self, params: Tensors, s: torch.Tensor, group: str = "neuron") -> list[torch.Tensor]:
        W, a, v, b = params
        q = self.act.degree
        if group == "layer":
            s = s.expand(W.shape[0] + 1)
        return [W * torch.exp(s[:-1])[:, None], a * torch.exp(-q * s[:-1]), v * torch.exp(s[-1]),
                b * torch.exp(-q * s[-1])]

    def branches(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two branches' outputs ``(Σ_j a_j σ(w_j·x), b σ(v·x))``; ``f`` is their sum."""
        return self.act(X @ self.W.T) @ self.a, self.act(X @ self.v) * self.b

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        matrix, vector = self.branches(X)
        return matrix + vector


class MLP(HomogeneousModel):
    """Bias-free fully connected network ``widths = [d, h_1, …, h_k, 1]``; the output layer
    is linear. Degree: ``L_1 = q``, ``L_{l+1} = q (L_l + 1)``, output ``L_k + 1``."""

    def __init__(self, widths: Sequence[int], activation: ActivationSpec = "relu2", seed: int = 0,
                 init_scale: float = 1.0, dtype: torch.dtype = DTYPE):
        super().__init__()
        _check_init(seed, init_scale, dtype)
        widths = list(widths)
        if len(widths) < 2 or widths[-1] != 1:
            raise ValueError(f"widths must be [d, h_1, ..., 1] ending in 1, got {widths}.")
        widths = [_size("every width", w) for w in widths]
        self.act = make_activation(activation)
        g = _generator(seed)
        self.weights = nn.ParameterList(
            [_init((o, i), i, g, init_scale, dtype) for i, o in zip(widths[:-1], widths[1:])])
        degree = 0.0
        for _ in widths[1:-1]:
            degree = self.act.degree * (degree + 1.0)
        self.degree = degree + 1.0

    def symmetry_size(self, group: str = "neuron") -> int:
        _check_group(group)
        hidden = [w.shape[0] for w in self.weights][:-1]
        return sum(hidden) if group == "neuron" else len(hidden)

    def rescaled(self, params: Tensors, s: torch.Tensor, group: str = "neuron") -> list[torch.Tensor]:
        # hidden unit j of layer l: incoming row × c, outgoing column × c^{−q}
        hidden = [w.shape[0] for w in params][:-1]
        if group == "layer":
            s = torch.cat([s[i].expand(h) for i, h in enumerate(hidden)])
        scales = [*torch.split(s, hidden), None]
        out: list[torch.Tensor] = []
        prev: torch.Tensor | None = None
        for w, row in zip(params, scales):
            if row is not None:
                w = w * torch.exp(row)[:, None]
            if prev is not None:
                w = w * torch.exp(-self.act.degree * prev)[None, :]
            out.append(w)
            prev = row
        return out

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        h = X
        last = len(self.weights) - 1
        for i in range(last):  # indexed, not sliced: see DiagonalLinear.forward
            h = self.act(h @ self.weights[i].T)
        head: torch.Tensor = self.weights[last]  # ParameterList items are untyped
        return (h @ head.T).squeeze(-1)


class TwoLayerMulticlass(HomogeneousModel):
    """``f(x) = A σ(W x)`` with ``k = num_classes`` outputs, bias-free: the two-layer net with
    an output matrix ``A`` (k × width) in place of the vector ``a``. Degree ``1 + q``. Hidden
    unit j rescales as ``(w_j, A[:, j]) → (c w_j, A[:, j] / c^q)``."""

    def __init__(self, d: int, width: int, num_classes: int = 10, activation: ActivationSpec = "relu2",
                 seed: int = 0, init_scale: float = 1.0, dtype: torch.dtype = DTYPE):
        super().__init__()
        k = _size("num_classes", num_classes)
        if k < 2:
            raise ValueError(f"num_classes must be at least 2, got {k}.")
        self.act, self.W, g, width = _hidden_layer(d, width, activation, seed, init_scale, dtype)
        self.A = _init((k, width), width, g, init_scale, dtype)
        self.num_classes, self.degree = k, 1.0 + self.act.degree

    def symmetry_size(self, group: str = "neuron") -> int:
        _check_group(group)
        return self.W.shape[0] if group == "neuron" else 1

    def rescaled(self, params: Tensors, s: torch.Tensor, group: str = "neuron") -> list[torch.Tensor]:
        W, A = params
        return [W * torch.exp(s)[:, None], A * torch.exp(-self.act.degree * s)[None, :]]

    def best_log_scales(self, params: Tensors, norm: Norm, group: str = "neuron") -> torch.Tensor | None:
        """ℓ2 and ℓ∞ in closed form: the two-layer forms with ``B_j`` the ℓ2 or ℓ∞ norm of the
        output column ``A[:, j]``."""
        if group != "neuron" or type(self).rescaled is not TwoLayerMulticlass.rescaled:
            return None
        W, A = params
        if type(norm) not in (L2, Linf):
            return None
        columns = A.norm(dim=0) if type(norm) is L2 else A.abs().amax(0)
        return _two_layer_log_scales(W, columns, self.act.degree, norm)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.act(X.reshape(X.shape[0], -1) @ self.W.T) @ self.A.T


class ConvNet(HomogeneousModel):
    """A small bias-free convolutional net for ``side × side`` grey images given as rows of
    ``side²`` pixels: conv 3×3 (``channels[0]`` maps, stride 1) → σ → conv 3×3
    (``channels[1]`` maps, stride 2) → linear head to ``num_classes`` scores. Both
    convolutions are zero-padded and bias-free, so the net is homogeneous of degree
    ``q + 2`` (4 for the squared ReLU, 3 for ReLU).

    Symmetries: a map of the first convolution times c, the matching input channel of the
    second divided by c^q; a map of the second convolution times c, the head's columns
    reading it divided by c (nothing nonlinear sits between them)."""

    def __init__(self, side: int = 8, channels: Sequence[int] = (8, 8), num_classes: int = 10,
                 activation: ActivationSpec = "relu2", seed: int = 0, init_scale: float = 1.0,
                 dtype: torch.dtype = DTYPE):
        super().__init__()
        _check_init(seed, init_scale, dtype)
        side, k = _size("side", side), _size("num_classes", num_classes)
        c1, c2 = (_size("channels", c) for c in channels)
        if k < 2:
            raise ValueError(f"num_classes must be at least 2, got {k}.")
        self.act = make_activation(activation)
        g = _generator(seed)
        self.side, self.out_side = side, (side + 1) // 2
        self.conv1 = _init((c1, 1, 3, 3), 9, g, init_scale, dtype)
        self.conv2 = _init((c2, c1, 3, 3), 9 * c1, g, init_scale, dtype)
        self.head = _init((k, c2 * self.out_side**2), c2 * self.out_side**2, g, init_scale, dtype)
        self.num_classes, self.degree = k, self.act.degree + 2.0

    def symmetry_size(self, group: str = "neuron") -> int:
        _check_group(group)
        return self.conv1.shape[0] + self.conv2.shape[0] if group == "neuron" else 2

    def rescaled(self, params: Tensors, s: torch.Tensor, group: str = "neuron") -> list[torch.Tensor]:
        c1, c2 = self.conv1.shape[0], self.conv2.shape[0]
        if group == "layer":
            s = torch.cat([s[0].expand(c1), s[1].expand(c2)])
        s1, s2 = s[:c1], s[c1:]
        k1, k2, head = params
        q = self.act.degree
        k1 = k1 * torch.exp(s1)[:, None, None, None]
        k2 = k2 * torch.exp(s2)[:, None, None, None] * torch.exp(-q * s1)[None, :, None, None]
        per_map = torch.exp(-s2).repeat_interleave(self.out_side**2)  # the head reads maps channel-major
        return [k1, k2, head * per_map[None, :]]

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        h = X.reshape(X.shape[0], 1, self.side, self.side)
        h = self.act(F.conv2d(h, self.conv1, padding=1))
        h = F.conv2d(h, self.conv2, stride=2, padding=1)
        return h.reshape(h.shape[0], -1) @ self.head.T


class Pairwise(HomogeneousModel):
    """A ``k``-output model as a binary one on (sample, other class) pairs.

    Its input is a row ``[x, e_y − e_j]`` (:func:`implicit_bias.data.class_pairs`) and its
    output the pairwise margin ``f_y(x) − f_j(x)``, homogeneous of the inner model's degree;
    with every label +1, ``min`` over the pairs of a sample is its multiclass margin
    ``q_i = f_{y_i}(x_i) − max_{j≠y_i} f_j(x_i)`` (Lyu & Li 2020), so normalized margins,
    function-level rebalancing (the inner model's symmetries), KKT certificates (one
    multiplier per pair) and training (the exponential or logistic loss summed over the
    n(k − 1) pairs) all work unchanged. The parameters are the inner model's.

    When the rows come as :func:`~implicit_bias.data.class_pairs` lays them out (the
    ``k − 1`` pairs of a sample next to each other), the inner model is evaluated once per
    sample, not once per pair."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        k = getattr(model, "num_classes", None)
        if not (isinstance(k, numbers.Integral) and int(k) >= 2):
            raise ValueError(f"Pairwise needs a model with `num_classes` ≥ 2 outputs, got "
                             f"{type(model).__name__} with num_classes = {k!r}.")
        self.model, self.num_pairs = model, int(k) - 1
        self.degree = cast(float, model.degree)  # the inner model's (a module attribute)

    def symmetry_size(self, group: str = "neuron") -> int:
        return cast(HomogeneousModel, self.model).symmetry_size(group)  # its symmetries, if it has them

    def rescaled(self, params: Tensors, s: torch.Tensor, group: str = "neuron") -> list[torch.Tensor]:
        return cast(HomogeneousModel, self.model).rescaled(params, s, group)

    def best_log_scales(self, params: Tensors, norm: Norm, group: str = "neuron") -> torch.Tensor | None:
        inner = getattr(self.model, "best_log_scales", None)
        return None if inner is None else cast(torch.Tensor | None, inner(params, norm, group))

    def scores(self, X: torch.Tensor) -> torch.Tensor:
        """The inner model's ``(n, k)`` scores."""
        scores: torch.Tensor = self.model(X)  # an nn.Module's call is untyped
        return scores

    def forward(self, Z: torch.Tensor) -> torch.Tensor:
        k = self.num_pairs + 1
        x, coef = Z[:, :-k], Z[:, -k:]
        g, m = self.num_pairs, Z.shape[0]
        if g > 1 and m > g and m % g == 0 and not _is_batched(Z):
            xs = x.reshape(m // g, g, -1)
            if torch.equal(xs, xs[:, :1].expand_as(xs)):  # each sample's pairs share x
                f: torch.Tensor = self.model(xs[:, 0]).repeat_interleave(g, dim=0)
                return (f * coef).sum(-1)
        inner: torch.Tensor = self.model(x)  # an nn.Module's call is untyped
        return (inner * coef).sum(-1)


def _is_batched(t: torch.Tensor) -> bool:
    """Inside ``torch.func.vmap`` a tensor's values cannot steer Python control flow."""
    return bool(torch._C._functorch.is_batchedtensor(t))


def pairwise_factory(cls: type[nn.Module], **options: object) -> Callable[[int | tuple[int, ...]], Pairwise]:
    """A ``Run(model=...)`` factory for a multi-output model class (:class:`TwoLayerMulticlass`,
    :class:`ConvNet`, …) trained on :func:`~implicit_bias.data.class_pairs`: it returns
    ``Pairwise(cls(**options, seed=s))`` with ``s`` drawn from torch's generator, which
    :meth:`Run.build_model` seeds with the run's seed — so every seed gets its own
    initialization, reproducibly. ``options`` may hold ``d`` (for :class:`TwoLayerMulticlass`);
    the factory's ``input_dim`` argument (``d + k``, pairs included) is not used."""
    def factory(input_dim: int | tuple[int, ...]) -> Pairwise:
        seed = int(torch.randint(0, 2**31 - 1, ()))
        return Pairwise(cls(**options, seed=seed))

    # a readable name in labels and messages (a store refuses it: it does not import back)
    factory.__qualname__ = f"pairwise_factory({cls.__name__}, {options})"
    return factory


GROUPS = ("neuron", "layer")


def _check_group(group: str) -> None:
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}.")


def example_input_dim(spec: dict[str, Any]) -> int:
    """An input size a model config accepts (to check the config before any data is seen):
    a block model's total size, else 2."""
    blocks = spec.get("blocks") if isinstance(spec, dict) else None
    return sum(math.prod(s) for s in block_shapes(blocks).values()) if blocks is not None else 2


def build(spec: dict[str, Any], d: int | tuple[int, ...], seed: int = 0,
          dtype: torch.dtype = DTYPE) -> HomogeneousModel:
    """A model from a small config dict, e.g. ``{'kind': 'two_layer', 'width': 64,
    'activation': 'relu2'}``; kinds: ``linear``, ``diagonal``, ``two_layer``, ``mlp``,
    ``two_layer_vector_unit``, ``block_linear`` (with ``blocks``; the multi-output models are built
    directly and trained
    through a factory returning :class:`Pairwise` of them)."""
    spec = dict(spec)
    kind = _kind(spec.pop("kind", None))
    if kind == "mlp":
        # an MLP takes flat inputs: a shape d is refused by MLP's own check of its widths
        return MLP([cast(int, d), *spec.pop("hidden", []), 1], seed=seed, dtype=dtype, **spec)
    return KINDS[kind](d, seed=seed, dtype=dtype, **spec)


#: The model kinds of :func:`build`: each a factory ``(d, seed=, dtype=, **options)``.
KINDS: dict[str, Callable[..., HomogeneousModel]] = {
    "linear": Linear, "diagonal": DiagonalLinear, "two_layer": TwoLayer, "mlp": MLP,
    "two_layer_vector_unit": TwoLayerWithVectorUnit, "block_linear": BlockLinear,
}
#: The library's own kinds, whose sizes :func:`parameter_count` and :func:`hidden_units`
#: read from the config alone.
BUILT_IN = frozenset(KINDS)


@registry.entry
def register(kind: str, factory: Callable[..., HomogeneousModel]) -> None:
    """Make a model kind known to :func:`build` and ``Run(model={'kind': kind, …})``, as
    every registry does (:mod:`implicit_bias.registry`): ``register(kind, factory)`` or
    ``@register(kind)`` on a :class:`HomogeneousModel` subclass. ``factory(d, seed=seed,
    dtype=dtype, **options)`` builds it from the input size and the config's other keys.
    Its size is found by building it once (a built-in kind's is read from the config)."""
    if not (isinstance(kind, str) and kind):
        raise ValueError(f"register: a model kind must be a non-empty string, got {kind!r}.")
    if kind in BUILT_IN:
        raise ValueError(f"register: {kind!r} is a built-in model kind; choose another name.")
    if not callable(factory):
        raise TypeError(f"register: {factory!r} is not a model class or a factory "
                        "(d, seed=, dtype=, **options).")
    KINDS[kind] = factory


def _kind(kind: object) -> str:
    if kind not in KINDS:
        raise ValueError(f"Unknown model kind {kind!r}; choose one of {sorted(KINDS)}.")
    return kind


def parameter_count(spec: dict[str, Any], d: int | Sequence[int]) -> int:
    """The number of parameters of ``build(spec, d)``, from the config alone: nothing is
    allocated, so a model too large for memory is refused before it is built. Sizes are
    checked as :func:`build` checks them (positive integers)."""
    if not isinstance(spec, dict):
        raise TypeError(f"a model config is a dict such as {{'kind': 'two_layer', 'width': 64}}, "
                        f"got {spec!r}.")
    kind = _kind(spec.get("kind"))
    if kind not in BUILT_IN:  # a registered kind: count what it builds
        return sum(p.numel() for p in build(spec, d if isinstance(d, int) else tuple(d)).parameters())
    dims = tuple(d) if isinstance(d, (tuple, list, torch.Size)) else (d,)
    size = math.prod(_size("each dimension of d", k) for k in dims)
    if kind == "linear":
        return size
    if kind == "diagonal":
        return _size("depth", spec.get("depth", 2)) * size
    if kind == "block_linear":
        return sum(math.prod(s) for s in block_shapes(spec.get("blocks")).values())
    if kind == "mlp":
        hidden = spec.get("hidden", [])
        if not isinstance(hidden, (list, tuple)):
            raise ValueError(f"hidden must be a list of widths such as [64, 64], got {hidden!r}.")
        widths = [size, *(_size("every width", w) for w in hidden), 1]
        return sum(i * o for i, o in zip(widths[:-1], widths[1:]))
    width = _size("width", spec.get("width"))
    return width * size + width + (size + 1 if kind == "two_layer_vector_unit" else 0)


def narrowed(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with every width, depth and block size 1: a model that :func:`build` checks
    as it checks ``spec`` (kind, activation, options) in a few bytes, whatever its size."""
    out = dict(spec)
    for key in ("width", "depth"):
        if key in out:
            out[key] = 1
    if isinstance(out.get("hidden"), (list, tuple)):
        out["hidden"] = [1] * len(out["hidden"])
    if isinstance(out.get("blocks"), dict):
        out["blocks"] = {name: (1,) * len(s) if isinstance(s, (list, tuple)) else 1
                         for name, s in out["blocks"].items()}
    return out


def hidden_units(spec: dict[str, Any] | Callable[..., nn.Module]) -> int:
    """The hidden units a model spec keeps per sample in a step (for memory estimates); a
    user's model (not a spec) is assumed wide, so that estimates err on the safe side."""
    if not (isinstance(spec, dict) and spec.get("kind") in BUILT_IN):
        return 256  # a user's model or kind: assume a wide one (the chunk only gets smaller)
    kind = spec["kind"]
    if kind == "two_layer":
        return int(spec.get("width", 64))
    if kind == "mlp":
        return int(sum(spec.get("hidden", []))) + 1
    return 1
