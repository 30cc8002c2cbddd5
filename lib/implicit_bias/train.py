"""Sweeps of training runs: :func:`train` turns :class:`Run` s into :class:`History` s.

A chapter describes its experiment as a list of runs and calls :func:`train`. Groups of
compatible runs go to the batched engine (:mod:`implicit_bias.batched`), which steps them
together with the update rules of :mod:`implicit_bias.rules`; the others (optimizers not
built from those rules, per-sample gradients) go one by one through the reference loop
here. Both carry the loss in the moving frame of :mod:`implicit_bias.frame`, so training
continues to losses far below float64's range.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch

from . import losses, models, optim, regime
from .config import DTYPE
from .config import device as default_device
from .data import check_data
from .frame import SLACK as FRAME_SLACK
from .frame import in_pieces, recentre, warn_underflow
from .homogeneity import check_homogeneous
from .norms import Norm
from .runs import (
    BATCH_SCHEMES,
    DTYPES,
    History,
    Run,
    RunFailed,
    batches,
    history,
    log_grid,
    margin_norms,
    observe_point,
    record,
    summary,
)


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
    """Each run's ``(X, y)`` as tensors on ``dev`` (numpy arrays are accepted)."""
    if isinstance(data, (tuple, list)):
        data = {run.data: tuple(data) for run in runs}
    out = {}
    for run in runs:
        if run.data not in data:
            raise KeyError(f"Run {run.label!r} asks for data {run.data!r}; got only {sorted(data)}.")
        if run.data not in out:
            X, y = (torch.as_tensor(np.asarray(a) if not torch.is_tensor(a) else a) for a in data[run.data])
            try:
                check_data(X, y)  # shapes, labels ±1, finite rows: before any training
            except (ValueError, TypeError) as err:
                raise type(err)(f"Data {run.data!r}: {err}") from None
            out[run.data] = (X.to(dev, DTYPE), y.to(dev, DTYPE))
    return out


def _check_models(runs, datasets, dev) -> None:
    """Measure a user's model (a ``Run.model`` factory) on its data before any training:
    a wrong ``degree`` or an ``(n, 1)`` output would otherwise log wrong margins silently
    (:func:`homogeneity.check_homogeneous`). Once per factory, data set and dtype."""
    seen = set()
    for run in runs:
        key = (id(run.model), run.data, run.dtype)
        if isinstance(run.model, dict) or key in seen:
            continue
        seen.add(key)
        dtype = DTYPES[run.dtype]
        X = datasets[run.data][0].to(dtype)
        try:
            check_homogeneous(run.build_model(_input_dim(X), dtype).to(dev), X)
        except ValueError as err:
            raise ValueError(f"Run {run.label!r}: {err}") from None


ENGINES = ("auto", "batched", "loop")
FAILURES = ("raise", "return")


def train(runs, data, norms=("l2", "linf", "spectral"), log_points: int = 60,
          frame: bool = True, progress: bool = True, device=None, observe=None,
          engine: str = "auto", max_batch: int | None = None, failures: str = "raise") -> list:
    """Train every run in ``runs`` (a :class:`Run` or a list of them) and return their
    histories in the same order.

    ``data`` is ``(X, y)`` for all runs or a dict name → ``(X, y)`` that ``Run.data``
    selects from (tensors or numpy arrays). ``norms`` are the norms whose normalized
    margins are logged: names from :func:`norms.by_name` (``l2``, ``linf``, ``l1``,
    ``spectral``, ``hybrid``) or :class:`norms.Norm` objects (logged under their ``name``).
    ``frame=False`` trains on the plain loss, which underflows once the loss < ~1e−308.

    ``engine``: ``'auto'`` (the default) trains every group of compatible runs (same model
    config, data, dtype, steps, loss and batch scheme) together in the batched engine
    (:mod:`implicit_bias.batched`), in chunks of at most ``max_batch`` runs (default: what
    fits, see :func:`batched.chunk_size`), and the rest (:data:`batched.UNBATCHED`
    optimizers, optimizers not built from registered rules) one by one in the reference
    loop; ``'loop'`` uses the loop for all; ``'batched'`` refuses runs the batched engine
    cannot take. ``History.engine`` says which trained each run (and, for the loop, why).

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
    norms = (norms,) if isinstance(norms, (str, Norm)) else tuple(norms)
    if not (isinstance(log_points, int) and not isinstance(log_points, bool) and log_points >= 1):
        raise ValueError(f"log_points must be a positive integer, got {log_points!r}.")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}.")
    if max_batch is not None and not (isinstance(max_batch, int) and max_batch >= 1):
        raise ValueError(f"max_batch must be a positive integer or None, got {max_batch!r}.")
    if failures not in FAILURES:
        raise ValueError(f"failures must be one of {FAILURES}, got {failures!r}.")
    dev = torch.device(device) if device is not None else default_device()
    datasets = _datasets(data, runs, dev)
    _check_models(runs, datasets, dev)
    groups, alone, reasons = {}, [], {}
    for i, run in enumerate(runs):
        reason = batched.why_not(run) if engine != "loop" else "engine='loop'"
        if reason is None:
            groups.setdefault(batched.group_key(run), []).append(i)
        elif engine == "batched":
            raise ValueError(f"Run {run.label!r} cannot be batched: {reason}. Use engine='auto'.")
        else:
            alone.append(i)
            reasons[i] = reason
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(r.steps for r in runs), unit="step", mininterval=1.0)
    out = [None] * len(runs)
    try:
        for members in groups.values():
            first = runs[members[0]]
            X, y = datasets[first.data]
            n_params = sum(p.numel() for p in first.build_model(_input_dim(X), DTYPE).parameters())
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
                                    bar, observe, reasons[i])
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


def _train_one(run: Run, X, y, norms, log_points, frame, dev, bar, observe=None, reason=None) -> History:
    """The reference loop: one run, its optimizer object stepped as torch's are."""
    start = time.perf_counter()
    dtype = DTYPES[run.dtype]
    X, y = X.to(dtype), y.to(dtype)
    model = run.build_model(_input_dim(X), dtype).to(dev)
    params = list(model.parameters())
    opt = run.make_optimizer(params)
    schedule = optim.power_schedule(opt, run.schedule)
    reframe = getattr(opt, "reframe", None)
    if reframe is None and hasattr(opt, "rescale_gradients"):
        reframe = in_pieces(opt.rescale_gradients)
    if frame and reframe is None:
        warnings.warn(f"Run {run.label!r}: {type(opt).__name__} has no reframe or rescale_gradients, "
                      "so it is trained on the plain loss, which underflows below about 1e-308.",
                      RuntimeWarning, stacklevel=3)
        frame = False
    grid = log_grid(run.steps, log_points)
    norm_objs = margin_norms(norms, params)
    rec = {"log_loss": [], "param_norm": [], "directions": [], **{n: [] for n in norm_objs}}
    observed = {}
    F = 0.0  # the frame: we differentiate e^F L
    next_log = 0
    n = X.shape[0]
    sampler = None if run.batch == "full" else batches(run.batch, n, run.batch_size, run.seed)
    per_sample = getattr(opt, "needs_per_sample_gradients", False)
    try:
        for t in range(1, run.steps + 1):
            F = _loop_step(t, run, model, opt, X, y, F, frame, reframe, sampler, per_sample)
            schedule.step()
            if bar is not None:
                bar.update(1)
            if t == grid[next_log]:
                with torch.no_grad():
                    record(rec, [p.detach() for p in model.parameters()], y * model(X), model.degree,
                           run.loss, norm_objs)
                if observe is not None:
                    observe_point(observed, observe, model, opt, F, run, t)
                next_log += 1
    except RunFailed as err:  # hand back what the run logged before it failed
        err.history = history(run, grid[:next_log], rec, model, time.perf_counter() - start,
                              {"name": "loop", "failed": True}, observed)
        raise
    engine = {"name": "loop"} if reason is None else {"name": "loop", "reason": reason}
    return history(run, grid, rec, model, time.perf_counter() - start, engine, observed)


def _loop_step(t, run, model, opt, X, y, F, frame, reframe, sampler, per_sample) -> float:
    """One step of the reference loop; returns the frame F after it."""
    n = X.shape[0]
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
        raise RunFailed(run, f"{run.label}: the loss became {log_l} at step {t} (the parameters left "
                             "the float range); lower the learning rate.")
    if frame:
        F = float(recentre(np.array([log_l]), np.array([F]), lambda d: reframe(float(d[0])))[0])
    if sampler is None and not per_sample:
        torch.exp(terms + F).sum().backward()
    else:
        idx = slice(None) if sampler is None else next(sampler)
        _backward_batch(model, X[idx], y[idx], run.loss, F, n / len(y[idx]), per_sample)
    try:
        opt.step()
    except FloatingPointError as err:
        raise RunFailed(run, f"{run.label}, step {t}: {err}") from err
    return F


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
        warn_underflow(terms)
        (torch.exp(terms).sum() * scale).backward()
        return
    with torch.no_grad():
        # AdamProxy squares the per-sample gradients: they underflow below e^-350.
        warn_underflow(losses.log_terms(yb * model(Xb), loss) + frame, limit=-350.0)
    for p, g in zip(model.parameters(), per_sample_gradients(model, Xb, yb, loss, frame, scale)):
        p.grad_sample = g
        p.grad = g.sum(dim=0)


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


__all__ = ["Run", "History", "train", "RunFailed", "log_grid", "summary", "adaptive_scales", "batches",
           "per_sample_gradients", "BATCH_SCHEMES", "DTYPES", "FRAME_SLACK"]
