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
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from . import losses, models, optim, regime
from .config import DTYPE
from .config import device as default_device
from .data import check_labels
from .norms import by_name

DTYPES = {"float64": torch.float64, "float32": torch.float32}

#: Re-frame the loss when ``|log L + F|`` exceeds this (so ``e^F L`` stays in [e^-20, e^20]).
FRAME_SLACK = 20.0

#: Which samples each step uses: all of them, or batches of ``Run.batch_size`` taken in a
#: fixed cyclic order, drawn uniformly with replacement, or reshuffled every epoch.
BATCH_SCHEMES = ("full", "cyclic", "replacement", "reshuffle")


def _default_model():
    return {"kind": "two_layer", "width": 64, "activation": "relu2"}


@dataclass
class Run:
    """One training run: model, data, optimizer, schedule, steps and seed.

    ``lr`` is the base rate η_0 of ``η_t = η_0 t^{−schedule}``; ``options`` go to the
    optimizer (``momentum``, ``betas``, ``eps``, ``lr_adam``, …); ``data`` names one of the
    data sets handed to :func:`train`; ``label`` names the run in plots (default: the
    optimizer); ``dtype`` is ``'float64'`` (the default, for theory) or ``'float32'``.

    ``batch`` is the sampling scheme (:data:`BATCH_SCHEMES`, see :func:`batches`): ``'full'``
    (the default: every step uses all samples) or ``'cyclic'``, ``'replacement'``,
    ``'reshuffle'`` with ``batch_size`` samples per step (default 1: per-sample, "incremental"
    training). One step is one batch; the order is fixed by ``seed``."""

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
    batch: str = "full"
    batch_size: int | None = None

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
    seconds: float  # wall time; for batched runs the stack's time divided by its runs
    observed: dict = field(default_factory=dict)  # name -> values from train(observe=...)
    engine: dict = field(default_factory=lambda: {"name": "loop"})  # which engine trained it

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


def batches(scheme: str, n: int, size: int, seed: int = 0):
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


def per_sample_gradients(model, X, y, loss: str = "logistic", frame: float = 0.0,
                         scale: float = 1.0) -> list[torch.Tensor]:
    """The gradients of ``scale · e^F ℓ(q_i)`` for every sample i, one tensor of shape
    ``(n, *p.shape)`` per parameter (``torch.func``: ``vmap`` of ``grad``). Their sum over i
    is the gradient of the framed loss ``scale · e^F Σ_i ℓ(q_i)``. A linear model takes a
    shortcut: its per-sample gradients are ``ℓ'(q_i) y_i x_i``."""
    from torch.func import functional_call, grad, vmap

    if isinstance(model, models.Linear):
        with torch.enable_grad():
            q = (y * model(X)).detach().requires_grad_(True)
            (dq,) = torch.autograd.grad(torch.exp(losses.log_terms(q, loss) + frame).sum() * scale, q)
        return [(dq * y)[:, None] * X.reshape(X.shape[0], -1)]
    params = {name: p.detach() for name, p in model.named_parameters()}

    def term(p, x, yi):
        q = yi * functional_call(model, p, (x.unsqueeze(0),))
        return torch.exp(losses.log_terms(q, loss) + frame).sum() * scale

    out = vmap(grad(term), in_dims=(None, 0, 0))(params, X, y)
    return [out[name] for name, _ in model.named_parameters()]


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


ENGINES = ("auto", "batched", "loop")
FAILURES = ("raise", "return")


class RunFailed(FloatingPointError):
    """A run left the float range (its loss, or its optimizer's state under a new frame).
    ``run`` is the :class:`Run`; ``train(..., failures='return')`` returns this error in
    the run's place instead of raising it."""

    def __init__(self, run, message: str):
        super().__init__(message)
        self.run = run


def train(runs, data, norms=("l2", "linf", "spectral"), log_points: int = 60,
          frame: bool = True, progress: bool = True, device=None, observe=None,
          engine: str = "auto", max_batch: int | None = None, failures: str = "raise") -> list:
    """Train every run in ``runs`` (a :class:`Run` or a list of them) and return their
    histories in the same order.

    ``data`` is ``(X, y)`` for all runs or a dict name → ``(X, y)`` that ``Run.data``
    selects from. ``norms`` are the norms whose normalized margins are logged (names from
    :func:`norms.by_name`, e.g. ``l2``, ``linf``, ``l1``, ``spectral``, ``hybrid``).
    ``frame=False`` trains on the plain loss, which underflows once the loss < ~1e−308.

    ``engine``: ``'auto'`` (the default) trains every group of compatible runs (same model
    config, data, dtype, steps, loss and batch scheme) together in the batched engine
    (:mod:`implicit_bias.batched`), in chunks of at most ``max_batch`` runs (default: what
    fits, see :func:`batched.chunk_size`), and the rest (:data:`batched.UNBATCHED`
    optimizers) one by one in the reference loop; ``'loop'`` uses the
    loop for all; ``'batched'`` refuses runs the batched engine cannot take.
    ``History.engine`` says which trained each run.

    ``failures``: a run whose loss or optimizer state leaves the float range raises
    :class:`RunFailed` (``'raise'``, the default) or, with ``'return'``, is returned as
    that error in its place while the other runs train on (a batched chunk with a failed
    run is trained again without it: runs in a stack do not affect each other).

    ``observe(model, optimizer, frame)``, if given, is called at every logged step, right
    after the optimizer step (so ``p.grad`` is the gradient at the logged step's start),
    and returns a dict of numbers or arrays; ``History.observed[name]`` stacks them over
    the log grid. In the batched engine it gets the run's own model and optimizer
    objects, given the run's parameters, gradients and state (in the loop's layout).
    ``frame`` is F: the gradients and the optimizer's state are those of ``e^F L``, so a
    true gradient is ``p.grad · e^{−F}`` (see :func:`adaptive_scales`)."""
    from . import batched

    runs = [runs] if isinstance(runs, Run) else list(runs)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}.")
    if max_batch is not None and not (isinstance(max_batch, int) and max_batch >= 1):
        raise ValueError(f"max_batch must be a positive integer or None, got {max_batch!r}.")
    if failures not in FAILURES:
        raise ValueError(f"failures must be one of {FAILURES}, got {failures!r}.")
    dev = torch.device(device) if device is not None else default_device()
    datasets = _datasets(data, runs, dev)
    groups, alone = {}, []
    for i, run in enumerate(runs):
        reason = batched.why_not(run) if engine != "loop" else "engine='loop'"
        if reason is None:
            groups.setdefault(batched.group_key(run), []).append(i)
        elif engine == "batched":
            raise ValueError(f"Run {run.label!r} cannot be batched: {reason}. Use engine='auto'.")
        else:
            alone.append(i)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(r.steps for r in runs), unit="step", mininterval=1.0)
    out = [None] * len(runs)
    try:
        for members in groups.values():
            first = runs[members[0]]
            X, y = datasets[first.data]
            n_params = sum(p.numel() for p in models.build(first.model, _input_dim(X)).parameters())
            size = max_batch or batched.chunk_size(first, X.shape[0], n_params, dev)
            for at in range(0, len(members), size):
                chunk = members[at:at + size]
                while chunk:
                    try:
                        hists = batched.train_group([runs[i] for i in chunk], X, y, norms, log_points,
                                                    frame, dev, bar, observe)
                    except RunFailed as err:
                        if failures == "raise":
                            raise
                        failed = next(i for i in chunk if runs[i] is err.run)
                        out[failed] = err
                        chunk = [i for i in chunk if i != failed]
                        continue
                    for i, h in zip(chunk, hists):
                        out[i] = h
                    chunk = []
        for i in alone:
            try:
                out[i] = _train_one(runs[i], *datasets[runs[i].data], norms, log_points, frame, dev,
                                    bar, observe)
            except RunFailed as err:
                if failures == "raise":
                    raise
                out[i] = err
    finally:
        if bar is not None:
            bar.close()
    regime.warn(out)
    return out


def _input_dim(X):
    return X.shape[1] if X.dim() == 2 else tuple(X.shape[1:])


def _history(run, grid, record, model, seconds, engine, observed=None) -> History:
    return History(
        run=run,
        steps=grid,
        log_loss=np.array(record["log_loss"]),
        margins={n: np.array(record[n]) for n in record if n not in ("log_loss", "param_norm", "directions")},
        param_norm=np.array(record["param_norm"]),
        directions=np.array(record["directions"]),
        model=model,
        seconds=seconds,
        observed={name: np.array(values) for name, values in (observed or {}).items()},
        engine=engine,
    )


def _train_one(run: Run, X, y, norms, log_points, frame, dev, bar, observe=None) -> History:
    start = time.perf_counter()
    dtype = DTYPES[run.dtype]
    X, y = X.to(dtype), y.to(dtype)
    model = models.build(run.model, _input_dim(X), seed=run.seed, dtype=dtype).to(dev)
    params = list(model.parameters())
    opt = optim.make(run.optimizer, params, run.lr, **run.options)
    schedule = optim.power_schedule(opt, run.schedule)
    grid = log_grid(run.steps, log_points)
    norm_objs = {name: by_name(name, params) for name in norms}
    record = {"log_loss": [], "param_norm": [], "directions": [], **{n: [] for n in norms}}
    observed = {}
    F = 0.0  # the frame: we differentiate e^F L
    next_log = 0
    n = X.shape[0]
    sampler = None if run.batch == "full" else batches(run.batch, n, run.batch_size, run.seed)
    per_sample = getattr(opt, "needs_per_sample_gradients", False)
    for t in range(1, run.steps + 1):
        opt.zero_grad(set_to_none=True)
        if sampler is None:
            q = y * model(X)
            terms = losses.log_terms(q, run.loss)
            log_l = float(losses.logsumexp(terms.detach()))
        else:
            # The frame follows the full-data loss L, the objective whose scale the whole
            # state shares: a batch loss (n/b) Σ_B ℓ(q_i) is at most (n/b) L, so it never
            # overflows the frame, and steps of different batches stay on one scale.
            with torch.no_grad():
                log_l = float(losses.log_loss(y * model(X), run.loss))
        if not math.isfinite(log_l):
            raise RunFailed(run, f"{run.label}: the loss became {log_l} at step {t}; "
                                 "lower the learning rate.")
        if frame and abs(log_l + F) > FRAME_SLACK:
            # One step can move log L by more than float64's exponent range (a normalized
            # method on a degree-3 model at a constant rate): rescale in pieces so that
            # no ratio overflows.
            shift = -log_l - F
            while shift:
                piece = max(-700.0, min(700.0, shift))
                try:
                    opt.rescale_gradients(math.exp(piece))
                except FloatingPointError as err:
                    raise RunFailed(run, f"{run.label}: {err}") from err
                shift -= piece
            F = -log_l
        if sampler is None and not per_sample:
            torch.exp(terms + F).sum().backward()
        else:
            idx = slice(None) if sampler is None else next(sampler)
            _backward_batch(model, X[idx], y[idx], run.loss, F, n / len(y[idx]), per_sample)
        opt.step()
        schedule.step()
        if bar is not None:
            bar.update(1)
        if t == grid[next_log]:
            _log(record, model, X, y, run.loss, norm_objs)
            if observe is not None:
                _observe(observed, observe, model, opt, F)
            next_log += 1
    return _history(run, grid, record, model, time.perf_counter() - start, {"name": "loop"}, observed)


@torch.no_grad()
def _observe(observed, observe, model, optimizer, frame) -> None:
    """Append one log point of ``observe(model, optimizer, frame)`` to ``observed``."""
    for name, value in observe(model, optimizer, frame).items():
        observed.setdefault(name, []).append(np.asarray(value, dtype=float))


def _backward_batch(model, Xb, yb, loss, frame, scale, per_sample):
    """Gradients of the framed batch loss ``scale · e^F Σ_B ℓ(q_i)`` (``scale = n/b``, so
    it estimates the full loss without bias) into ``p.grad``; with ``per_sample`` also the
    per-sample gradients into ``p.grad_sample`` (for :class:`optim.AdamProxy`).

    F follows the full-data loss, the one scale that every step's gradient and the
    optimizer's state can share. A batch whose samples all have margins some 700 above
    the smallest then has a framed loss below float64's range and a zero gradient: for an
    optimizer with state (Adam, Signum) that is exact to float precision, since the
    state's other contributions are e^700 times larger; a stateless step normalized per
    batch (SignGD, AdamProxy on mini-batches) would have moved, so we warn."""
    if not per_sample:
        terms = losses.log_terms(yb * model(Xb), loss) + frame
        _warn_underflow(terms)
        (torch.exp(terms).sum() * scale).backward()
        return
    with torch.no_grad():
        # AdamProxy squares the per-sample gradients: they underflow below e^-350.
        _warn_underflow(losses.log_terms(yb * model(Xb), loss) + frame, limit=-350.0)
    for p, g in zip(model.parameters(), per_sample_gradients(model, Xb, yb, loss, frame, scale)):
        p.grad_sample = g
        p.grad = g.sum(dim=0)


def _warn_underflow(framed_log_terms, limit=-700.0):
    if float(framed_log_terms.detach().max()) < limit:
        warnings.warn(
            "A batch's framed loss is below float64's range (its margins exceed the smallest one "
            "by hundreds): its gradient (or its square) is 0. Harmless for optimizers with a state; a step "
            "normalized per batch would have moved. Use larger batches or a lower learning rate.",
            RuntimeWarning, stacklevel=3)


@torch.no_grad()
def _log(record, model, X, y, loss, norm_objs):
    _record(record, [p.detach() for p in model.parameters()], y * model(X), model.degree, loss,
            norm_objs)


def _record(record, params, q, degree, loss, norm_objs):
    """Append one log point: loss, parameter norm, direction and margins of ``params``
    whose margins are ``q``."""
    record["log_loss"].append(float(losses.log_loss(q, loss)))
    flat = torch.cat([p.reshape(-1) for p in params])
    record["param_norm"].append(float(flat.norm()))
    record["directions"].append((flat / flat.norm()).cpu().numpy())
    q_min = q.min()
    for name, norm in norm_objs.items():
        record[name].append(float(q_min / norm(params) ** degree))


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


__all__ = ["Run", "History", "train", "RunFailed", "log_grid", "summary", "adaptive_scales", "batches",
           "per_sample_gradients", "BATCH_SCHEMES"]
