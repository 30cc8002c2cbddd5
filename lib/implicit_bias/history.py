"""Histories: what a run logs as it trains, and what :func:`implicit_bias.train.train`
returns for it.

Both engines (the batched one and the reference loop) log through one :class:`Recording`
per run (the loss, parameter norm, direction and margins at each log point of the
log-spaced grid :func:`log_grid`, and what ``train(observe=...)`` returns), which becomes
the run's :class:`History`; a run that fails raises :class:`RunFailed` with what it
logged so far.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, SupportsIndex

import numpy as np
import numpy.typing as npt
import torch

from . import losses
from .norms import L2, Norm, by_name

if TYPE_CHECKING:
    from .runs import Run

#: The most log points a run may ask for (each keeps a direction: n_params floats).
LOG_POINTS_MAX = 100_000

#: ``observe(model, optimizer, frame)``: numbers or arrays by name, logged at every log point.
Observer = Callable[[torch.nn.Module, torch.optim.Optimizer, float], dict[str, Any]]


class Updates(Protocol):
    """What an engine ticks once a step: a progress bar, or a probe's clock."""

    def update(self, n: int = 1) -> object: ...


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

    # A run's file (implicit_bias.store) holds these arrays; margins and observed values by
    # their position in ``margins`` and ``observed``, whose names go in its config.

    def series(self) -> dict[str, np.ndarray]:
        """The logged series as a file names them: ``steps``, ``log_loss``, ``param_norm``
        and ``margin_<i>`` (the i-th of ``margins``), in float64 (steps int64)."""
        return {"steps": np.asarray(self.steps, dtype=np.int64),
                "log_loss": np.asarray(self.log_loss, dtype=np.float64),
                "param_norm": np.asarray(self.param_norm, dtype=np.float64),
                **{f"margin_{i}": np.asarray(self.margins[name], dtype=np.float64)
                   for i, name in enumerate(self.margins)}}

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything a run's file keeps but the model: :meth:`series`, ``directions``,
        ``direction_steps`` and ``observed_<i>``."""
        return {**self.series(), "directions": np.asarray(self.directions, dtype=np.float64),
                "direction_steps": np.asarray(self.direction_grid, dtype=np.int64),
                **{f"observed_{i}": np.asarray(values) for i, values in enumerate(self.observed.values())}}

    @classmethod
    def from_arrays(cls, run: Run, model: torch.nn.Module, arrays: dict[str, np.ndarray],
                    margins: Sequence[str], observed: Sequence[str], seconds: float = 0.0,
                    engine: dict | None = None) -> History:
        """The history :meth:`arrays` wrote (arrays checked by the caller), with its model."""
        steps, kept = arrays["steps"], arrays["direction_steps"]
        return cls(run=run, steps=steps, log_loss=arrays["log_loss"],
                   margins={name: arrays[f"margin_{i}"] for i, name in enumerate(margins)},
                   param_norm=arrays["param_norm"], directions=arrays["directions"], model=model,
                   seconds=seconds, engine=dict(engine or {}),
                   observed={name: arrays[f"observed_{i}"] for i, name in enumerate(observed)},
                   direction_steps=None if np.array_equal(kept, steps) else kept)


@dataclass
class Recording:
    """One run's log points as it trains: each list holds one entry per log point so far;
    ``margins`` one list per logged norm, ``observed`` one per quantity an observer
    returned (``train(observe=...)``)."""

    norms: dict[str, Norm]
    log_loss: list[float] = field(default_factory=list)
    param_norm: list[float] = field(default_factory=list)
    directions: list[np.ndarray] = field(default_factory=list)
    margins: dict[str, list[float]] = field(init=False)  # one list per norm of ``norms``
    observed: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.margins = {name: [] for name in self.norms}

    def add(self, params: Sequence[torch.Tensor], q: torch.Tensor, degree: float, loss: str) -> None:
        """One log point: loss, parameter norm, direction and margins of ``params``, whose
        per-sample margins are ``q``."""
        self.log_loss.append(float(losses.log_loss(q, loss)))
        flat = torch.cat([p.reshape(-1) for p in params])
        size = L2()([flat])  # scale-safe: flat.norm() overflows past about 1e154
        self.param_norm.append(float(size))
        self.directions.append((flat / size).cpu().numpy())
        q_min = q.min()
        for name, norm in self.norms.items():
            self.margins[name].append(float(q_min / norm(params) ** degree))

    @torch.no_grad()
    def observe(self, observe: Callable[..., dict], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                frame: float, run: Run | None = None, step: int | None = None) -> None:
        """One log point of ``observe(model, optimizer, frame)``."""
        try:
            values = observe(model, optimizer, frame)
        except Exception as err:
            label = getattr(run, "label", "?")
            raise ObserveError(f"observe({getattr(observe, '__name__', observe)!r}) failed on run {label!r} "
                               f"at step {step}: {type(err).__name__}: {err}") from err
        for name, value in values.items():
            self.observed.setdefault(name, []).append(np.asarray(value, dtype=float))

    def history(self, run: Run, grid: np.ndarray, model: torch.nn.Module, seconds: float,
                engine: dict) -> History:
        """The run's :class:`History` on the log steps ``grid`` recorded so far."""
        return History(
            run=run, steps=grid[:len(self.log_loss)], log_loss=np.array(self.log_loss),
            margins={name: np.array(values) for name, values in self.margins.items()},
            param_norm=np.array(self.param_norm), directions=np.array(self.directions), model=model,
            seconds=seconds, observed={name: np.array(values) for name, values in self.observed.items()},
            engine=engine)


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


class ObserveError(RuntimeError):
    """``train(observe=...)`` raised: names the run and the step (the cause is chained)."""


def margin_norms(norms: Iterable[str | Norm], params: Sequence[torch.Tensor]) -> dict[str, Norm]:
    """The norms whose margins a run logs, by name: each a name of
    :func:`norms.by_name` or a :class:`norms.Norm` object (logged under its ``name``)."""
    out = {}
    for norm in norms:
        obj = norm if isinstance(norm, Norm) else by_name(norm, params)
        out[norm if isinstance(norm, str) else obj.name] = obj
    return out


def log_grid(steps: int, points: int = 60) -> np.ndarray:
    """About ``points`` log-spaced steps in [1, steps], always including the last."""
    grid = np.unique(np.geomspace(1, steps, num=points).round().astype(int))
    return grid if grid[-1] == steps else np.r_[grid, steps]


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


__all__ = ["History", "Recording", "RunFailed", "ObserveError", "Observer", "Updates", "log_grid",
           "margin_norms", "summary", "LOG_POINTS_MAX"]
