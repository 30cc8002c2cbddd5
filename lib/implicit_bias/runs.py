"""Runs and their histories: what a sweep trains, and what it returns.

A :class:`Run` is a small config (optimizer, rate, schedule, model, data, steps, seed);
:func:`implicit_bias.train.train` turns runs into :class:`History` objects, the loss,
margins, parameter norm and direction logged on a log-spaced step grid. Both engines
(the batched one and the reference loop) record through :func:`record`.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, SupportsIndex

import numpy as np
import numpy.typing as npt
import torch

from . import losses, models, optim
from .homogeneity import declared_degree
from .norms import L2, Norm, by_name

DTYPES = {"float64": torch.float64, "float32": torch.float32}

#: Which samples each step uses: all of them, or batches of ``Run.batch_size`` taken in a
#: fixed cyclic order, drawn uniformly with replacement, or reshuffled every epoch.
BATCH_SCHEMES = ("full", "cyclic", "replacement", "reshuffle")


#: The version of what training computes. Stored results are keyed by it, not by the
#: package version (:mod:`implicit_bias.store`): bump it with any change that alters a
#: history (an update rule, the loss frame, the log grid, the engines' arithmetic), and
#: only then, so that a release that does not touch training keeps stored results found.
TRAINING_VERSION = 3


def _integer(v: object, low: int, high: float = math.inf) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


#: What each field of a run config read from a file (a sweep file's TOML, a stored run's
#: JSON) must hold, and what to write instead: checked before a :class:`Run` is built from
#: it, so that a wrong type is named, not coerced. (A stored optimizer or model given by its
#: import path is resolved by the store first.)
FIELD_CHECKS = {
    "optimizer": (lambda v: isinstance(v, str), "an optimizer name such as 'SignGD'"),
    "lr": (lambda v: _number(v) and v > 0, "a finite number > 0 (the learning rate)"),
    "steps": (lambda v: _integer(v, 1, 10**12), "an integer ≥ 1 (write 3000, not 3e3)"),
    "schedule": (lambda v: _number(v) and v >= 0, "a finite number ≥ 0"),
    "seed": (lambda v: _integer(v, 0, 2**63 - 1), "an integer ≥ 0"),
    "model": (lambda v: isinstance(v, dict), "a table such as {kind = 'two_layer', width = 16}"),
    "data": (lambda v: isinstance(v, str), "the name of a data set"),
    "options": (lambda v: isinstance(v, dict), "a table of optimizer options such as {momentum = 0.9}"),
    "loss": (lambda v: isinstance(v, str), "a loss name such as 'logistic'"),
    "label": (lambda v: v is None or isinstance(v, str), "a name for plots"),
    "dtype": (lambda v: v in DTYPES, "'float64' or 'float32'"),
    "batch": (lambda v: isinstance(v, str), "a batch scheme such as 'full' or 'cyclic'"),
    "batch_size": (lambda v: v is None or _integer(v, 1, 2**40), "an integer ≥ 1"),
}


def _default_model() -> dict[str, Any]:
    return {"kind": "two_layer", "width": 64, "activation": "relu2"}


#: Configs already checked (their JSON): a product of many runs checks each model config
#: and optimizer setting once, not once per run (10⁶ runs took minutes).
_CHECKED: set = set()


def _once(key: object, check: Callable[..., object], *args: Any) -> None:
    """``check(*args)``, skipped when ``key`` (plain data: JSON's types and tuples) passed before."""
    try:
        json.dumps(key)  # plain data only; its repr then tells a tuple from a list
        text = repr(key)
    except (TypeError, ValueError):  # a Norm object or a class in the options: check every time
        text = None
    if text is not None and text in _CHECKED:
        return
    check(*args)
    if text is not None:
        if len(_CHECKED) > 4096:
            _CHECKED.clear()
        _CHECKED.add(text)


def _check_model_config(spec: dict) -> None:
    """Sizes arithmetically (:func:`models.parameter_count`: nothing allocated, so a width of
    10⁷ costs nothing here), the rest by building the config at width 1."""
    models.parameter_count(spec, models.example_input_dim(spec))
    small = models.narrowed(spec)
    models.build(small, models.example_input_dim(small), seed=0)


def _check_optimizer_options(cls: Callable[..., torch.optim.Optimizer], lr: float, options: dict) -> None:
    params = [torch.zeros(2, 2, requires_grad=True), torch.zeros(2, requires_grad=True)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings come again when the run trains
        cls(params, lr, **options)


@dataclass
class Run:
    """One training run: model, data, optimizer, schedule, steps and seed.

    ``optimizer`` is a name from :data:`optim.OPTIMIZERS` (add your own with
    :func:`optim.register`) or a ``torch.optim.Optimizer`` class. ``model`` is a config for
    :func:`models.build` or a factory ``model(input_dim) -> nn.Module`` (called under
    ``torch.manual_seed(seed)``) for a module of your own, which must declare its degree of
    homogeneity as ``degree`` and return outputs of shape ``(n,)``.

    ``lr`` is the base rate η_0 of ``η_t = η_0 t^{−schedule}``; ``options`` go to the
    optimizer (``momentum``, ``betas``, ``eps``, ``lr_adam``, …); ``data`` names one of the
    data sets handed to :func:`train`; ``label`` names the run in plots (default: the
    optimizer); ``dtype`` is ``'float64'`` (the default, for theory) or ``'float32'``.

    ``batch`` is the sampling scheme (:data:`BATCH_SCHEMES`, see :func:`batches`): ``'full'``
    (the default: every step uses all samples) or ``'cyclic'``, ``'replacement'``,
    ``'reshuffle'`` with ``batch_size`` samples per step (default 1: per-sample, "incremental"
    training). One step is one batch; the order is fixed by ``seed``."""

    optimizer: str | type
    lr: float
    steps: int
    schedule: float = 0.0
    seed: int = 0
    model: dict | Callable = field(default_factory=_default_model)
    data: str = "data"
    options: dict = field(default_factory=dict)
    loss: str = "logistic"
    label: str | None = None
    dtype: str = "float64"
    batch: str = "full"
    batch_size: int | None = None

    def __post_init__(self) -> None:
        # what a file's JSON or TOML gives as lists, a run holds as tuples (betas, an activation)
        if isinstance(self.options, dict) and isinstance(self.options.get("betas"), list):
            self.options = {**self.options, "betas": tuple(self.options["betas"])}
        if isinstance(self.model, dict) and isinstance(self.model.get("activation"), list):
            self.model = {**self.model, "activation": tuple(self.model["activation"])}
        if isinstance(self.optimizer, type):
            if not issubclass(self.optimizer, torch.optim.Optimizer):
                raise TypeError("optimizer must be a name or a torch.optim.Optimizer class, "
                                f"got {self.optimizer!r}.")
        elif not isinstance(self.optimizer, str):
            raise TypeError("optimizer must be a name or a torch.optim.Optimizer class, "
                            f"got {self.optimizer!r}.")
        elif self.optimizer not in optim.OPTIMIZERS:
            raise ValueError(
                f"Unknown optimizer {self.optimizer!r}; choose one of {sorted(optim.OPTIMIZERS)}, "
                "pass an optimizer class, or register yours with implicit_bias.optim.register.")
        if not (isinstance(self.model, dict) or callable(self.model)):
            raise TypeError("model must be a config dict for implicit_bias.models.build or a factory "
                            f"model(input_dim) -> nn.Module, got {self.model!r}.")
        if not (isinstance(self.steps, int) and not isinstance(self.steps, bool) and self.steps >= 1):
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}.")
        if not (isinstance(self.seed, numbers.Integral) and not isinstance(self.seed, bool)):
            raise TypeError(f"seed must be an integer, got {self.seed!r}.")
        if self.seed < 0:  # numpy's generators (the data, the samplers) take seeds ≥ 0 only
            raise ValueError(f"seed must be ≥ 0, got {self.seed}.")
        if self.loss not in losses.LOSSES:
            raise ValueError(f"Unknown loss {self.loss!r}; choose one of {losses.LOSSES}.")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}.")
        if self.batch not in BATCH_SCHEMES:
            raise ValueError(f"batch must be one of {BATCH_SCHEMES}, got {self.batch!r}.")
        if self.batch == "full":
            if self.batch_size is not None:
                raise ValueError("batch='full' uses every sample at every step; drop batch_size or "
                                 f"choose a batch scheme from {BATCH_SCHEMES[1:]}.")
        else:
            if self.batch_size is None:
                self.batch_size = 1
            if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
                raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}.")
        if self.label is None:
            self.label = getattr(self.optimizer, "__name__", self.optimizer)
        if not (isinstance(self.schedule, numbers.Real) and not isinstance(self.schedule, bool)
                and math.isfinite(self.schedule) and self.schedule >= 0):
            raise ValueError(f"Run {self.label!r}: schedule (the exponent a of η_t = η_0 t^-a) must be a "
                             f"finite number ≥ 0, got {self.schedule!r}.")
        self._check_optimizer()
        if isinstance(self.model, dict):
            try:  # a bad kind or width is refused here, before a sweep trains anything
                _once(("model", self.model), _check_model_config, self.model)
            except (ValueError, TypeError, KeyError) as err:
                raise type(err)(f"Run {self.label!r}: {err}") from None

    def _check_optimizer(self) -> None:
        """Build the library's own optimizer once on two small tensors (a matrix and a vector,
        so a hybrid has both halves), so that a bad rate or option is refused here, before a
        sweep trains anything. A user's class is checked when its run starts."""
        cls = self.optimizer if isinstance(self.optimizer, type) else optim.OPTIMIZERS[self.optimizer]
        if cls.__module__ != optim.__name__:
            return
        try:
            _once(("optimizer", cls.__name__, id(cls), self.lr, self.options), _check_optimizer_options, cls,
                  self.lr, self.options)
        except (ValueError, TypeError) as err:
            raise type(err)(f"Run {self.label!r}: {err}") from None

    def config(self) -> dict:
        return asdict(self)

    def build_model(self, input_dim: int | tuple[int, ...], dtype: torch.dtype) -> torch.nn.Module:
        """This run's model, initialized from its seed, in ``dtype``."""
        if isinstance(self.model, dict):
            return models.build(self.model, input_dim, seed=self.seed, dtype=dtype)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = self.model(input_dim)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"Run {self.label!r}: the model factory returned {type(model).__name__}, "
                            "not an nn.Module.")
        try:
            declared_degree(model)  # a number L > 0, as the built-in models' 2.0 or 3.0
        except (TypeError, ValueError) as err:
            raise type(err)(f"Run {self.label!r}: {err}") from None
        return model.to(dtype)

    def make_optimizer(self, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
        return optim.make(self.optimizer, params, self.lr, **self.options)


@dataclass
class History:
    """What a run logged, on the step grid ``steps`` (1-based)."""

    run: Run
    steps: np.ndarray
    log_loss: np.ndarray  # natural log of the loss
    margins: dict  # norm name -> normalized margins
    param_norm: np.ndarray  # ℓ2 norm of θ
    directions: np.ndarray  # θ_t / ‖θ_t‖₂, one row per logged step (see direction_steps)
    model: torch.nn.Module  # the trained model
    seconds: float  # wall time; for batched runs the stack's time divided by its runs
    observed: dict = field(default_factory=dict)  # name -> values from train(observe=...)
    engine: dict = field(default_factory=lambda: {"name": "loop"})  # which engine trained it
    # The steps of ``directions``' rows when train(directions=...) kept fewer (None: ``steps``).
    direction_steps: np.ndarray | None = None

    def final(self, norm: str) -> float:
        """The normalized margin in ``norm`` at the last step."""
        return float(self.margins[norm][-1])

    @property
    def direction_grid(self) -> np.ndarray:
        """The step of each row of ``directions``: ``steps``, or ``direction_steps`` when
        ``train(directions=k)`` kept fewer rows. Read a direction's step here, never in ``steps``."""
        return np.asarray(self.steps if self.direction_steps is None else self.direction_steps)

    def direction_row(self, step: float) -> int:
        """The first row of ``directions`` logged at or after ``step`` (the row of ``step``
        itself when its direction was kept)."""
        row = int(np.searchsorted(self.direction_grid, step))
        if row == len(self.direction_grid):
            raise ValueError(f"Run {self.run.label!r}: no direction kept at or after step {step} "
                             f"(kept: {self.direction_grid.tolist()}).")
        return row

    def on_direction_grid(self, series: npt.ArrayLike) -> np.ndarray:
        """``series`` (one value per logged step, as ``log_loss``, a margin or an observed
        array) at the steps of the rows of ``directions``."""
        return np.asarray(series)[np.searchsorted(self.steps, self.direction_grid)]

    def cosine_to_final(self) -> np.ndarray:
        """``cos(θ_t, θ_final)`` at every row of ``directions`` (steps: :attr:`direction_grid`)."""
        cosines: np.ndarray = self.directions @ self.directions[-1]
        return cosines

    def direction(self) -> torch.Tensor:
        return torch.as_tensor(self.directions[-1])

    def model_at(self, index: SupportsIndex) -> torch.nn.Module:
        """A copy of the model with the (unit-ℓ2) direction of row ``index`` of ``directions``,
        logged at step ``direction_grid[index]``: enough for anything scale-invariant."""
        model = copy.deepcopy(self.model)
        params = list(model.parameters())
        vector = torch.as_tensor(self.directions[index], dtype=params[0].dtype, device=params[0].device)
        torch.nn.utils.vector_to_parameters(vector, params)
        return model


def log_grid(steps: int, points: int = 60) -> np.ndarray:
    """About ``points`` log-spaced steps in [1, steps], always including the last."""
    grid = np.unique(np.geomspace(1, steps, num=points).round().astype(int))
    return grid if grid[-1] == steps else np.r_[grid, steps]


def batches(scheme: str, n: int, size: int, seed: int = 0) -> Iterator[torch.Tensor]:
    """The indices of the samples of each step, forever: ``'cyclic'`` walks through
    ``0 … n−1`` in order in consecutive batches of ``size``; ``'reshuffle'`` does the same
    through a fresh random permutation every epoch (in both, an epoch visits every sample
    once and its last batch is smaller when ``size`` does not divide ``n``); ``'replacement'``
    draws ``size`` indices uniformly with replacement at every step. Deterministic given
    ``seed`` (its own random stream, independent of the model's initialization)."""
    if scheme not in BATCH_SCHEMES[1:]:
        raise ValueError(f"scheme must be one of {BATCH_SCHEMES[1:]}, got {scheme!r}.")
    if not (isinstance(size, int) and 1 <= size <= n):
        raise ValueError(f"batch_size must be an integer in [1, n = {n}], got {size!r}.")
    rng = np.random.default_rng([int(seed), 0xBA7C4])
    while True:
        if scheme == "replacement":
            yield torch.as_tensor(rng.integers(n, size=size))
            continue
        order = np.arange(n) if scheme == "cyclic" else rng.permutation(n)
        for start in range(0, n, size):
            yield torch.as_tensor(order[start:start + size])


def describe(run: Run) -> str:
    """A run in messages: its label and what tells it from other runs of that label."""
    def g(x: object) -> str:
        return f"{x:g}" if isinstance(x, (int, float)) else str(x)

    return f"{run.label} (lr={g(run.lr)}, seed={run.seed}, schedule={g(run.schedule)})"


class RunFailed(FloatingPointError):
    """A run left the float range or met a non-finite value (its loss, its gradient): the
    message names the run, the step and the quantity. ``run`` is the :class:`Run` and
    ``history`` what it logged before it failed (a :class:`History` on the logged steps so
    far, or None); ``train(..., failures='return')`` returns this error in the run's place
    instead of raising it."""

    def __init__(self, run: Run, message: str, history: History | None = None):
        super().__init__(message)
        self.run, self.history = run, history

    def __reduce__(self) -> tuple[type[RunFailed], tuple[Run, str, History | None]]:
        # so that it crosses process boundaries (train(executor=...))
        return type(self), (self.run, str(self), self.history)


def history(run: Run, grid: np.ndarray, rec: dict[str, list], model: torch.nn.Module, seconds: float,
            engine: dict, observed: dict | None = None) -> History:
    return History(
        run=run,
        steps=grid,
        log_loss=np.array(rec["log_loss"]),
        margins={n: np.array(rec[n]) for n in rec if n not in ("log_loss", "param_norm", "directions")},
        param_norm=np.array(rec["param_norm"]),
        directions=np.array(rec["directions"]),
        model=model,
        seconds=seconds,
        observed={name: np.array(values) for name, values in (observed or {}).items()},
        engine=engine,
    )


def record(rec: dict[str, list], params: Sequence[torch.Tensor], q: torch.Tensor, degree: float, loss: str,
           norm_objs: dict[str, Norm]) -> None:
    """Append to ``rec`` one log point: loss, parameter norm, direction and margins of
    ``params`` whose margins are ``q``."""
    rec["log_loss"].append(float(losses.log_loss(q, loss)))
    flat = torch.cat([p.reshape(-1) for p in params])
    size = L2()([flat])  # scale-safe: flat.norm() overflows past about 1e154
    rec["param_norm"].append(float(size))
    rec["directions"].append((flat / size).cpu().numpy())
    q_min = q.min()
    for name, norm in norm_objs.items():
        rec[name].append(float(q_min / norm(params) ** degree))


def margin_norms(norms: Iterable[str | Norm], params: Sequence[torch.Tensor]) -> dict[str, Norm]:
    """The norms whose margins a run logs, by name: each a name of
    :func:`norms.by_name` or a :class:`norms.Norm` object (logged under its ``name``)."""
    out = {}
    for norm in norms:
        obj = norm if isinstance(norm, Norm) else by_name(norm, params)
        out[norm if isinstance(norm, str) else obj.name] = obj
    return out


class ObserveError(RuntimeError):
    """``train(observe=...)`` raised: names the run and the step (the cause is chained)."""


@torch.no_grad()
def observe_point(observed: dict, observe: Callable[..., dict], model: torch.nn.Module,
                  optimizer: torch.optim.Optimizer, frame: float, run: Run | None = None,
                  step: int | None = None) -> None:
    """Append one log point of ``observe(model, optimizer, frame)`` to ``observed``."""
    try:
        values = observe(model, optimizer, frame)
    except Exception as err:
        label = getattr(run, "label", "?")
        raise ObserveError(f"observe({getattr(observe, '__name__', observe)!r}) failed on run {label!r} "
                           f"at step {step}: {type(err).__name__}: {err}") from err
    for name, value in values.items():
        observed.setdefault(name, []).append(np.asarray(value, dtype=float))


def summary(histories: Iterable[History], norms: Iterable[str] | None = None) -> list[dict]:
    """One row per history: label, seed, final log10 loss and final margins."""
    rows = []
    for h in histories:
        row = {"label": h.run.label, "seed": h.run.seed,
               "log10_loss": h.log_loss[-1] / math.log(10)}
        for n in norms or h.margins:
            row[n] = h.final(n)
        rows.append(row)
    return rows


# --- limits, checked before anything is allocated -----------------------------------------

#: The most log points a run may ask for (each keeps a direction: n_params floats).
LOG_POINTS_MAX = 100_000
def activation_bytes(run: Run, n: int) -> int:
    """The bytes of one step's activations of ``run`` on ``n`` samples (and a batch)."""
    itemsize = torch.finfo(DTYPES[run.dtype]).bits // 8
    return 3 * (n + (run.batch_size or 0)) * models.hidden_units(run.model) * itemsize


def run_bytes(run: Run, n: int, n_params: int) -> int:
    """The bytes one run like ``run`` takes while it trains: its activations and about 8
    copies of its ``n_params`` parameters (values, gradients, optimizer state, directions):
    the estimate :func:`batched.chunk_size` stacks runs by."""
    itemsize = torch.finfo(DTYPES[run.dtype]).bits // 8
    return activation_bytes(run, n) + 8 * n_params * itemsize


__all__ = ["Run", "TRAINING_VERSION", "describe", "History", "RunFailed", "ObserveError", "log_grid",
           "batches", "history", "record", "summary", "run_bytes", "activation_bytes", "DTYPES",
           "BATCH_SCHEMES", "LOG_POINTS_MAX"]
