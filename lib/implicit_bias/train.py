"""Sweeps of training runs, each described by a small config, returning histories.

A chapter describes its experiment as a list of :class:`Run` s and calls :func:`train`,
which returns one :class:`History` per run: the loss, normalized margins in several norms,
the parameter norm and the direction, logged on a log-spaced step grid. The loop is the
reference engine; the API takes whole sweeps so a batched engine can replace it without
touching any chapter.

The loss is carried in a moving frame (Lyu & Li 2019): the loop differentiates
``e^F L(θ)`` with ``F ≈ −log L`` and tells the optimizer whenever F changes, so training
can continue to losses far below float64's range (1e−300) with the same trajectory as
the plain computation wherever that one is representable.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from . import losses, models, optim
from .config import DTYPE
from .config import device as default_device
from .data import check_labels
from .norms import by_name

DTYPES = {"float64": torch.float64, "float32": torch.float32}

#: Re-frame the loss when ``|log L + F|`` exceeds this (so ``e^F L`` stays in [e^-20, e^20]).
FRAME_SLACK = 20.0


def _default_model():
    return {"kind": "two_layer", "width": 64, "activation": "relu2"}


@dataclass
class Run:
    """One training run: model, data, optimizer, schedule, steps and seed.

    ``lr`` is the base rate η_0 of ``η_t = η_0 t^{−schedule}``; ``options`` go to the
    optimizer (``momentum``, ``betas``, ``eps``, ``lr_adam``, …); ``data`` names one of the
    data sets handed to :func:`train`; ``label`` names the run in plots (default: the
    optimizer); ``dtype`` is ``'float64'`` (the default, for theory) or ``'float32'``."""

    optimizer: str
    lr: float
    steps: int
    schedule: float = 0.0
    seed: int = 0
    model: dict = field(default_factory=_default_model)
    data: str = "data"
    options: dict = field(default_factory=dict)
    loss: str = "logistic"
    label: str | None = None
    dtype: str = "float64"

    def __post_init__(self):
        if self.optimizer not in optim.OPTIMIZERS:
            raise ValueError(
                f"Unknown optimizer {self.optimizer!r}; choose one of {sorted(optim.OPTIMIZERS)}.")
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}.")
        if self.loss not in losses.LOSSES:
            raise ValueError(f"Unknown loss {self.loss!r}; choose one of {losses.LOSSES}.")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}.")
        if self.label is None:
            self.label = self.optimizer

    def config(self) -> dict:
        return asdict(self)


@dataclass
class History:
    """What a run logged, on the step grid ``steps`` (1-based)."""

    run: Run
    steps: np.ndarray
    log_loss: np.ndarray  # natural log of the loss
    margins: dict  # norm name -> normalized margins
    param_norm: np.ndarray  # ℓ2 norm of θ
    directions: np.ndarray  # θ_t / ‖θ_t‖₂, one row per logged step
    model: torch.nn.Module  # the trained model
    seconds: float
    observed: dict = field(default_factory=dict)  # name -> values from train(observe=...)

    def final(self, norm: str) -> float:
        """The normalized margin in ``norm`` at the last step."""
        return float(self.margins[norm][-1])

    def cosine_to_final(self) -> np.ndarray:
        """``cos(θ_t, θ_final)`` at every logged step."""
        return self.directions @ self.directions[-1]

    def direction(self) -> torch.Tensor:
        return torch.as_tensor(self.directions[-1])

    def model_at(self, index: int) -> torch.nn.Module:
        """A copy of the model with the (unit-ℓ2) direction logged at ``steps[index]``:
        enough for anything scale-invariant (margins, KKT certificates)."""
        model = copy.deepcopy(self.model)
        params = list(model.parameters())
        vector = torch.as_tensor(self.directions[index], dtype=params[0].dtype, device=params[0].device)
        torch.nn.utils.vector_to_parameters(vector, params)
        return model


def log_grid(steps: int, points: int = 60) -> np.ndarray:
    """About ``points`` log-spaced steps in [1, steps], always including the last."""
    grid = np.unique(np.geomspace(1, steps, num=points).round().astype(int))
    return grid if grid[-1] == steps else np.r_[grid, steps]


def _datasets(data, runs, dev):
    if isinstance(data, tuple):
        data = {run.data: data for run in runs}
    out = {}
    for run in runs:
        if run.data not in data:
            raise KeyError(f"Run {run.label!r} asks for data {run.data!r}; got only {sorted(data)}.")
        if run.data not in out:
            X, y = data[run.data]
            check_labels(y)
            out[run.data] = (X.to(dev, DTYPE), y.to(dev, DTYPE))
    return out


def train(runs, data, norms=("l2", "linf", "spectral"), log_points: int = 60,
          frame: bool = True, progress: bool = True, device=None, observe=None) -> list[History]:
    """Train every run in ``runs`` (a :class:`Run` or a list of them) and return their
    histories in the same order.

    ``data`` is ``(X, y)`` for all runs or a dict name → ``(X, y)`` that ``Run.data``
    selects from. ``norms`` are the norms whose normalized margins are logged (names from
    :func:`norms.by_name`, e.g. ``l2``, ``linf``, ``l1``, ``spectral``, ``hybrid``).
    ``frame=False`` trains on the plain loss, which underflows once the loss < ~1e−308.

    ``observe(model, optimizer, frame)``, if given, is called at every logged step, right
    after the optimizer step (so ``p.grad`` is the gradient at the logged step's start),
    and returns a dict of numbers or arrays; ``History.observed[name]`` stacks them over
    the log grid. ``frame`` is F: the gradients and the optimizer's state are those of
    ``e^F L``, so a true gradient is ``p.grad · e^{−F}`` (see :func:`adaptive_scales`)."""
    runs = [runs] if isinstance(runs, Run) else list(runs)
    dev = torch.device(device) if device is not None else default_device()
    datasets = _datasets(data, runs, dev)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(r.steps for r in runs), unit="step", mininterval=1.0)
    try:
        return [_train_one(run, *datasets[run.data], norms, log_points, frame, dev, bar, observe)
                for run in runs]
    finally:
        if bar is not None:
            bar.close()


def _train_one(run: Run, X, y, norms, log_points, frame, dev, bar, observe=None) -> History:
    start = time.perf_counter()
    dtype = DTYPES[run.dtype]
    X, y = X.to(dtype), y.to(dtype)
    d = X.shape[1] if X.dim() == 2 else tuple(X.shape[1:])
    model = models.build(run.model, d, seed=run.seed, dtype=dtype).to(dev)
    params = list(model.parameters())
    opt = optim.make(run.optimizer, params, run.lr, **run.options)
    schedule = optim.power_schedule(opt, run.schedule)
    grid = log_grid(run.steps, log_points)
    norm_objs = {name: by_name(name, params) for name in norms}
    record = {"log_loss": [], "param_norm": [], "directions": [], **{n: [] for n in norms}}
    observed = {}
    F = 0.0  # the frame: we differentiate e^F L
    next_log = 0
    for t in range(1, run.steps + 1):
        opt.zero_grad(set_to_none=True)
        q = y * model(X)
        terms = losses.log_terms(q, run.loss)
        log_l = float(torch.logsumexp(terms.detach(), dim=0))
        if not math.isfinite(log_l):
            raise FloatingPointError(
                f"{run.label}: the loss became {log_l} at step {t}; lower the learning rate.")
        if frame and abs(log_l + F) > FRAME_SLACK:
            # One step can move log L by more than float64's exponent range (a normalized
            # method on a degree-3 model at a constant rate): rescale in pieces so that
            # no ratio overflows.
            shift = -log_l - F
            while shift:
                piece = max(-700.0, min(700.0, shift))
                opt.rescale_gradients(math.exp(piece))
                shift -= piece
            F = -log_l
        torch.exp(terms + F).sum().backward()
        opt.step()
        schedule.step()
        if bar is not None:
            bar.update(1)
        if t == grid[next_log]:
            _log(record, model, X, y, run.loss, norm_objs)
            if observe is not None:
                with torch.no_grad():
                    for name, value in observe(model, opt, F).items():
                        observed.setdefault(name, []).append(np.asarray(value, dtype=float))
            next_log += 1
    return History(
        run=run,
        steps=grid,
        log_loss=np.array(record["log_loss"]),
        margins={n: np.array(record[n]) for n in norms},
        param_norm=np.array(record["param_norm"]),
        directions=np.array(record["directions"]),
        model=model,
        seconds=time.perf_counter() - start,
        observed={name: np.array(values) for name, values in observed.items()},
    )


@torch.no_grad()
def _log(record, model, X, y, loss, norm_objs):
    params = [p.detach() for p in model.parameters()]
    q = y * model(X)
    record["log_loss"].append(float(losses.log_loss(q, loss)))
    flat = torch.cat([p.reshape(-1) for p in params])
    record["param_norm"].append(float(flat.norm()))
    record["directions"].append((flat / flat.norm()).cpu().numpy())
    q_min = q.min()
    for name, norm in norm_objs.items():
        record[name].append(float(q_min / norm(params) ** model.degree))


def adaptive_scales(model, optimizer, frame: float) -> dict:
    """An observer for ``train(observe=...)``: ``log10`` of the largest gradient entry
    ``max_j |∂L/∂θ_j|`` and of the largest and smallest non-zero ``√v̂`` of an adaptive
    optimizer (:meth:`optim.RuleOptimizer.root_second_moments`), in the units of the
    plain loss L, whatever the frame. Logs are used because these fall far below
    float64's range on long runs. Compare with ``log10 ε``: Adam steps like sign descent
    while ``√v̂ ≫ ε`` and like gradient descent once ``√v̂ ≪ ε`` (Wang et al. 2021). The
    ``√v̂`` entries are NaN for an optimizer without a second moment."""
    shift = frame / math.log(10)
    grads = [p.grad.abs().max() for p in model.parameters() if p.grad is not None]
    out = {"log10_grad_max": float(torch.stack(grads).max().log10()) - shift if grads else math.nan}
    roots = optimizer.root_second_moments() if hasattr(optimizer, "root_second_moments") else []
    flat = torch.cat([r.reshape(-1) for r in roots]) if roots else torch.empty(0)
    flat = flat[flat > 0]
    out["log10_root_v_max"] = float(flat.max().log10()) - shift if len(flat) else math.nan
    out["log10_root_v_min"] = float(flat.min().log10()) - shift if len(flat) else math.nan
    return out


def summary(histories, norms=None) -> list[dict]:
    """One row per history: label, seed, final log10 loss and final margins."""
    rows = []
    for h in histories:
        row = {"label": h.run.label, "seed": h.run.seed,
               "log10_loss": h.log_loss[-1] / math.log(10)}
        for n in norms or h.margins:
            row[n] = h.final(n)
        rows.append(row)
    return rows


__all__ = ["Run", "History", "train", "log_grid", "summary", "adaptive_scales"]
