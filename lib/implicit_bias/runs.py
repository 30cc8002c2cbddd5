"""Runs: what a sweep trains.

A :class:`Run` is a small config (optimizer, rate, schedule, model, data, steps, seed),
checked when it is built; :func:`implicit_bias.train.train` turns runs into histories
(:mod:`implicit_bias.history`). Here too: the training version stored results are keyed
by, and the memory a run takes.
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from . import losses, models, optim
from .homogeneity import declared_degree
from .sampling import BATCH_SCHEMES

DTYPES = {"float64": torch.float64, "float32": torch.float32}

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


def describe(run: Run) -> str:
    """A run in messages: its label and what tells it from other runs of that label."""
    def g(x: object) -> str:
        return f"{x:g}" if isinstance(x, (int, float)) else str(x)

    return f"{run.label} (lr={g(run.lr)}, seed={run.seed}, schedule={g(run.schedule)})"


# --- limits, checked before anything is allocated -----------------------------------------

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


__all__ = ["Run", "TRAINING_VERSION", "describe", "run_bytes", "activation_bytes", "DTYPES",
           "BATCH_SCHEMES", "FIELD_CHECKS"]
