"""The batched engine: K compatible runs trained together as one stacked model.

:func:`implicit_bias.train.train` hands every group of compatible runs (same model
config, data, dtype, steps, loss and batch scheme) to :func:`train_group`. Parameters are
stacked along a leading run dimension (:mod:`implicit_bias.stacked`); each step is one
forward and one backward pass for all K runs, and one update per optimizer structure with
the runs' own learning rates, schedules, β's and ε as vectors: batched sign, batched
normalization, batched SVD or Newton–Schulz. Runs keep their own loss frame F.

Each run is still built as the loop builds it (its own seeded model, its own optimizer
object, which validates the hyperparameters); the engine only reads them. Per-run
results equal the reference loop's to rounding (the tests ask for 1e−10 relative in
float64).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from . import losses, models, optim, rules, stacked
from .config import device as default_device
from .config import free_memory, peak_memory
from .frame import step_frames, warn_underflow
from .history import LOG_POINTS_MAX, Observer, Recording, RunFailed, Updates, log_grid, margin_norms
from .homogeneity import DEAD, dead_runs
from .norms import Norm, column
from .runs import DTYPES, activation_bytes, describe, run_bytes
from .sampling import batches

if TYPE_CHECKING:
    from .history import History
    from .runs import Run

#: What must agree for runs to share one batched update (:func:`signature`): per parameter
#: group, its rule, its parameters' positions and its options.
Signature = tuple[tuple[str, tuple[int, ...], tuple[object, ...]], ...]

#: On a CPU, a chunk's activations should stay within about this many bytes: larger
#: stacks are limited by memory traffic, not arithmetic (see benchmarks/batched_engine.py).
CPU_WORKSET = 32 * 2**20

#: The fraction of the free device memory a chunk may use.
MEMORY_FRACTION = 0.5


def why_not(run: Run) -> str | None:
    """Why ``run`` cannot go to the batched engine, or None if it can: the engine steps
    optimizers built from registered rules (:class:`optim.RuleOptimizer`) that need no
    per-sample gradients. An optimizer says which it is by its class alone (its base class
    and ``needs_per_sample_gradients``): there is no other list."""
    cls = optim.OPTIMIZERS[run.optimizer] if isinstance(run.optimizer, str) else run.optimizer
    name = cls.__name__
    if not issubclass(cls, optim.RuleOptimizer):
        return f"{name}: it is not built from registered update rules (implicit_bias.rules)"
    if getattr(cls, "needs_per_sample_gradients", False):
        return f"{name}: it needs per-sample gradients"
    return None


def group_key(run: Run) -> str:
    """Runs with equal keys can share a stack."""
    return json.dumps([run.model, run.data, run.dtype, run.steps, run.loss, run.batch,
                       run.batch_size], sort_keys=True, default=str)


def _norm_key(norm: Norm) -> tuple[str, str, str, int | None, str]:
    return (type(norm).__module__, type(norm).__qualname__, repr(norm), getattr(norm, "ns_steps", None),
            str(getattr(norm, "ns_dtype", None)))


def signature(opt: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> Signature:
    """What must agree for runs to share one batched update: each parameter group's rule,
    its parameters' positions and its options (a norm, whether it is normalized); the
    numbers (rates, β, ε) may differ."""
    index = {id(p): i for i, p in enumerate(params)}
    return tuple(
        (g["rule"], tuple(index[id(p)] for p in g["params"]),
         tuple(_norm_key(g[k]) if isinstance(g[k], Norm) else g[k] for k in rules.get(g["rule"]).options))
        for g in opt.param_groups)


def _stack_numbers(values: Sequence[Any], dev: torch.device,
                   dtype: torch.dtype) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """One group entry over the runs (``values``: each run's number, or tuple of numbers):
    a ``(K,)`` tensor, or a tuple of them (``betas``)."""
    if isinstance(values[0], (tuple, list)):
        return tuple(torch.as_tensor([float(v[i]) for v in values], device=dev, dtype=dtype)
                     for i in range(len(values[0])))
    return torch.as_tensor([float(v) for v in values], device=dev, dtype=dtype)


# --- the batched optimizer ----------------------------------------------------------------


class BatchedOptimizer:
    """The updates of runs ``start … start + k − 1`` of a stack, whose optimizers share one
    :func:`signature` (``positions``: each parameter group's parameters, as positions in
    the stack): each group's rule (:mod:`rules`) applied to all k runs at once, with the
    runs' own numbers as ``(k,)`` vectors. ``step(params, grads, t)`` takes the whole
    stack's tensors."""

    def __init__(self, opts: Sequence[torch.optim.Optimizer], schedules: Sequence[float],
                 stack_params: Sequence[torch.Tensor], start: int, runs: Iterable[Run],
                 positions: Sequence[Sequence[int]]) -> None:
        self.start, self.k, self.runs = start, len(opts), list(runs)
        dev, dtype = stack_params[0].device, stack_params[0].dtype
        self.groups: list[dict[str, Any]] = []
        self.schedules = np.asarray(schedules, dtype=float)
        for gi, (group, idx) in enumerate(zip(opts[0].param_groups, positions, strict=True)):
            rule = rules.get(group["rule"])
            own = [o.param_groups[gi] for o in opts]
            lr = np.array([float(g["lr"]) for g in own])
            hyper = {**{key: _stack_numbers([g[key] for g in own], dev, dtype) for key in rule.numbers},
                     **{key: group[key] for key in rule.options}}
            # What the rule is handed: a number shared by every run as a plain number (as the
            # optimizers hand it), which spares the rule tensor work and synchronizations at
            # every step (a momentum of 0, Adam's bias corrections, ε > 0).
            numbers = dict(hyper)
            for key in rule.numbers:
                values = [g[key] for g in own]
                if all(v == values[0] for v in values):
                    numbers[key] = values[0]
            self.groups.append(dict(
                rule=rule, idx=list(idx), lr=lr, hyper=hyper, numbers=numbers,
                one_rate=bool((lr == lr[0]).all() and (self.schedules == self.schedules[0]).all()),
                state={}))
        self.frame = np.zeros(self.k)  # each run's F: the gradients are those of e^F L
        self._frame: float | torch.Tensor = 0.0  # F as the rules get it: one number while every run shares it
        self._dev, self._dtype = dev, dtype
        self._warned_dead = False

    @torch.no_grad()
    def step(self, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], t: int) -> None:
        rows = slice(self.start, self.start + self.k)
        # η_t = η_0 t^{-a}: numpy's pow is C's, as in torch's LambdaLR (Python floats).
        decay = np.power(float(t), -self.schedules)
        for group in self.groups:
            ps = [params[i][rows] for i in group["idx"]]
            gs = [grads[i][rows] for i in group["idx"]]
            update = group["rule"].update(gs, group["state"], {**group["numbers"], "frame": self._frame},
                                          [t] * len(gs), ps)
            group["state"].update(update.state)
            if update.dead and not self._warned_dead:
                self._warned_dead = True
                optim.warn_dead_coordinates()
            if group["one_rate"]:  # one rate for every run: θ − η_t u in one pass, as the optimizers
                lr = -float(group["lr"][0] * decay[0])
                for p, u in zip(ps, update.directions):
                    p.add_(u, alpha=lr)
                continue
            lrs = torch.as_tensor(group["lr"] * decay, device=self._dev, dtype=self._dtype)
            for p, u in zip(ps, update.directions):
                p.sub_(column(lrs, u) * u)

    @torch.no_grad()
    def export(self, j: int, opt: torch.optim.Optimizer, t: int) -> None:
        """Write run ``j``'s (of this segment) state after step ``t`` into its own
        optimizer object ``opt``, as the optimizer would hold it after t steps: the
        rules' state, the step count, the scheduled rate and the frame."""
        for group, own in zip(self.groups, opt.param_groups, strict=True):
            own["frame"] = float(self.frame[j])
            # LambdaLR after t steps: η_0 (t + 1)^{-a}, in Python floats as there.
            own["lr"] = float(group["lr"][j]) * (t + 1.0) ** (-float(self.schedules[j]))
            gated = rules.get(own["rule"]).gated
            for name, e in group["state"].items():
                if name in gated and float(group["hyper"][gated[name]][j]) == 0:
                    continue  # e.g. a run at momentum 0 keeps no momentum buffer
                run = rules.Entry([x[j:j + 1].clone() for x in e.tensors],
                                  None if e.logs is None else [lg[j:j + 1].clone() for lg in e.logs])
                optim.store_entry([opt.state[p] for p in own["params"]], name, rules.settled(run))
            for p in own["params"]:
                opt.state[p]["step"] = t

    @torch.no_grad()
    def reframe(self, deltas: np.ndarray) -> None:
        """Per-run :meth:`optim.RuleOptimizer.reframe`: one operation for any move."""
        self.frame = self.frame + deltas
        shared = bool((self.frame == self.frame[0]).all())
        self._frame = float(self.frame[0]) if shared else torch.as_tensor(self.frame, device=self._dev,
                                                                           dtype=self._dtype)
        d = torch.as_tensor(deltas, device=self._dev, dtype=self._dtype)
        for group in self.groups:
            group["state"] = rules.rescale(group["rule"], group["state"], d)


# --- chunking ---------------------------------------------------------------------------


def chunk_size(run: Run, n: int, n_params: int, dev: torch.device) -> int:
    """How many runs like ``run`` to stack at once: what fits in
    :data:`MEMORY_FRACTION` of the free memory (activations and optimizer state) and, on
    a CPU, what keeps a step's activations within :data:`CPU_WORKSET`. A run's bytes are
    :func:`runs.run_bytes`, the estimate :func:`check_limits` refuses runs by."""
    fits = max(1, int(MEMORY_FRACTION * free_memory(dev) // run_bytes(run, n, n_params)))
    if dev.type == "cpu":
        fits = min(fits, max(1, CPU_WORKSET // activation_bytes(run, n)))
    return fits


# --- limits, checked before anything is allocated -----------------------------------------

#: A step's peak memory over the estimate of :func:`run_bytes` (torch's temporaries): 1.4–1.6
#: measured for two-layer nets of width 2·10³ to 10⁵ on 600 digits, on the CPU.
PEAK_FACTOR = 1.5


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.3g} GB"


def check_limits(runs: Iterable[Run], datasets: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                 device: str | torch.device | None = None, max_batch: int | None = None,
                 log_points: int = 60) -> None:
    """Refuse, before anything is built, runs that cannot fit: a run (or a stack of
    ``max_batch`` runs) whose estimated peak memory (:func:`runs.run_bytes` × :data:`PEAK_FACTOR`,
    from the parameter count of its config, :func:`models.parameter_count`, and the size of
    its data) exceeds the memory available on ``device``; and more than
    :data:`history.LOG_POINTS_MAX` log points.
    ``datasets``: name -> ``(X, y)``. A run whose model is a factory is not estimated."""
    whole = isinstance(log_points, int) and not isinstance(log_points, bool)
    if not (whole and 1 <= log_points <= LOG_POINTS_MAX):
        raise ValueError(f"log_points must be an integer in [1, {LOG_POINTS_MAX:,}] (the steps logged, "
                         f"log-spaced), got {log_points!r}.")
    dev = torch.device(device) if device is not None else default_device()
    available = free_memory(dev)
    # the stacks of the batched engine; a run it cannot take trains alone
    groups: dict[tuple[str, bool], list[Run]] = {}
    for run in runs:
        if isinstance(run.model, dict) and run.data in datasets:
            groups.setdefault((group_key(run), why_not(run) is None), []).append(run)
    for (_, stackable), members in groups.items():
        run = members[0]
        X = datasets[run.data][0]
        n, d = X.shape[0], X.shape[1] if len(X.shape) == 2 else tuple(X.shape[1:])
        n_params = models.parameter_count(cast(dict[str, Any], run.model), d)  # a config: see above
        per_run = PEAK_FACTOR * run_bytes(run, n, n_params)
        stack = min(max_batch or 1, len(members)) if stackable else 1
        need = stack * per_run + math.prod(X.shape) * 8
        if need > available:
            raise MemoryError(_too_large(run, n, n_params, per_run, stack, need, available, dev))


def _too_large(run: Run, n: int, n_params: int, per_run: float, stack: int, need: float, available: int,
               dev: torch.device) -> str:
    size = f"{n_params:,} parameters × 8 copies, the activations of {n:,} samples and torch's temporaries"
    if stack > 1:
        fits = max(1, int((available - (need - stack * per_run)) // per_run))  # the data's bytes aside
        return (f"a stack of {stack} runs like {run.label!r} (model {run.model}) needs about {_gb(need)} "
                f"({_gb(per_run)} a run: {size}), more than the {_gb(available)} available on {dev}. Lower "
                f"--max-batch (max_batch) to {fits}, or train on machines with more memory (--executor).")
    return (f"run {run.label!r} (model {run.model}) needs about {_gb(need)} ({size}), more than the "
            f"{_gb(available)} available on {dev}. Use a smaller model (width, hidden sizes) or fewer "
            "samples (n), or train on a machine with more memory (--executor).")


# --- training -------------------------------------------------------------------------


def _check_gradients(grads: Sequence[torch.Tensor], K: int, run_at: Callable[[int], Run], t: int) -> None:
    """Raise :class:`RunFailed` for the first run whose gradient has a NaN or inf entry."""
    # A NaN or inf entry makes the sum non-finite: one reduction per tensor and one
    # synchronization in the common case; the runs are searched only when it is not finite.
    if bool(torch.stack([g.sum() for g in grads]).sum().isfinite()):
        return
    finite = torch.stack([g.reshape(K, -1).isfinite().all(dim=1) for g in grads]).all(dim=0)
    if not bool(finite.all()):
        run = run_at(int((~finite).nonzero()[0]))
        raise RunFailed(run, f"{describe(run)}: the gradient has NaN or inf entries at step {t} (a step "
                             "would be silently wrong: the sign of NaN is 0). Check the data and the "
                             "model for non-finite values, or lower the learning rate.")


def _check_alive(q: torch.Tensor, grads: Sequence[torch.Tensor], run_at: Callable[[int], Run],
                 t: int) -> None:
    """Raise :class:`RunFailed` for the first run whose margins ``q`` and gradients are
    all 0 (every unit dead: it cannot move), as the reference loop does at a log step."""
    dead = dead_runs(q, grads)
    if dead:
        run = run_at(dead[0])
        raise RunFailed(run, f"{describe(run)}, step {t}: {DEAD}.")


def train_group(runs: Sequence[Run], X: torch.Tensor, y: torch.Tensor, norms: Iterable[str | Norm],
                log_points: int, frame: bool, dev: torch.device, bar: Updates | None,
                observe: Observer | None = None) -> list[History]:
    """Train compatible ``runs`` (one :func:`group_key`) as one stack, exactly as
    :func:`train.train`'s loop would one by one; returns their histories in order.
    ``observe`` is called as in the loop, on each run's own model and optimizer objects,
    which are given the run's parameters, gradients and state at each logged step."""
    start_time = time.perf_counter()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    first = runs[0]
    dtype = DTYPES[first.dtype]
    X, y = X.to(dtype), y.to(dtype)
    group = _Group(runs, X.shape[1] if X.dim() == 2 else tuple(X.shape[1:]), dtype, dev)
    log = _Log(group, norms, observe)
    grid = log_grid(first.steps, log_points)
    samplers: list[Iterator[torch.Tensor]] | None = None
    if first.batch != "full":
        assert first.batch_size is not None  # Run sets it for every batch scheme
        samplers = [batches(first.batch, X.shape[0], first.batch_size, runs[k].seed) for k in group.order]
    F = np.zeros(len(runs))  # each run's frame, in stack order
    frames = torch.zeros(len(runs), 1, device=dev, dtype=dtype)  # F as a column, for the loss slopes
    try:
        next_log, pending = 0, False
        grads: list[torch.Tensor] = []  # the last step's (set before any log point)
        for t in range(1, first.steps + 1):
            q_all, q, log_l, ys, weights = group.losses(X, y, samplers)
            if pending:  # the last step's log point: its margins are this step's, before the update
                log(q_all, t - 1, grads, F)
                pending = False
            new = step_frames(log_l.cpu().numpy(), F, group.reframe, group.stacked_runs, t, frame)
            if new is not F:
                F, frames = new, torch.as_tensor(new, device=dev, dtype=dtype)[:, None]
            grads = group.step(q, ys, frames, weights, t)
            if bar is not None:
                bar.update(len(runs))
            if t == grid[next_log]:
                pending, next_log = True, next_log + 1
        if pending:
            log(y * group.stack.outputs(X), first.steps, grads, F)
    except RunFailed as err:  # hand back what the failed run logged before it failed
        k = runs.index(err.run)
        failed = {"name": "batched", "failed": True}
        err.history = log.records[k].history(err.run, grid, group.nets[k], 0.0, failed)
        raise
    seconds = (time.perf_counter() - start_time) / len(runs)
    engine = {"name": "batched", "runs": len(runs), "peak_bytes": peak_memory(dev)}
    return [log.records[k].history(run, grid, net, seconds, engine)
            for k, (run, net) in enumerate(zip(runs, group.final_models()))]


class _Group:
    """A group's runs built as the loop builds them (their own seeded models and optimizer
    objects, which validate the hyperparameters), stacked in the order of their optimizers'
    :func:`signature` s, with one :class:`BatchedOptimizer` per signature."""

    def __init__(self, runs: Sequence[Run], d: int | tuple[int, ...], dtype: torch.dtype,
                 dev: torch.device) -> None:
        self.runs = runs
        self.nets = [r.build_model(d, dtype).to(dev) for r in runs]
        self.plist = [list(m.parameters()) for m in self.nets]
        self.opts = [r.make_optimizer(ps) for r, ps in zip(runs, self.plist)]
        sigs = [signature(o, ps) for o, ps in zip(self.opts, self.plist)]
        distinct = list(dict.fromkeys(sigs))
        self.order = sorted(range(len(runs)), key=lambda k: distinct.index(sigs[k]))
        self.position = {k: i for i, k in enumerate(self.order)}
        self.stacked_runs = [runs[k] for k in self.order]
        # each model declares its degree (Run.build_model checks a factory's), as a HomogeneousModel
        self.stack = stacked.stack(cast(list[models.HomogeneousModel], [self.nets[k] for k in self.order]))
        self.segments: list[BatchedOptimizer] = []
        at = 0
        for sig in distinct:
            members = [k for k in self.order if sigs[k] == sig]
            self.segments.append(BatchedOptimizer(
                [self.opts[k] for k in members], [runs[k].schedule for k in members], self.stack.params, at,
                [runs[k] for k in members], [idx for _, idx, _ in sig]))
            at += len(members)

    def losses(self, X: torch.Tensor, y: torch.Tensor, samplers: Sequence[Iterator[torch.Tensor]] | None,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float | None]:
        """This step's margins on all the data ``q_all``, those the gradient is taken on ``q``
        (a batch's), the log-losses, the labels of ``q`` and the batch weight n/b."""
        loss = self.runs[0].loss
        if samplers is None:
            q = y * self.stack.forward(X)
            return q, q, losses.logsumexp(losses.log_terms(q, loss)), y.expand(len(self.runs), -1), None
        q_all = y * self.stack.outputs(X)
        idx = torch.stack([next(s) for s in samplers]).to(X.device)
        q = y[idx] * self.stack.forward(X[idx])
        # ℓ falls with q: a batch's largest framed log-loss term is its smallest margin's.
        self._batch_min = q.amin(dim=1)
        return q_all, q, losses.log_loss(q_all, loss), y[idx], X.shape[0] / idx.shape[1]

    def step(self, q: torch.Tensor, ys: torch.Tensor, frames: torch.Tensor, weights: float | None,
             t: int) -> list[torch.Tensor]:
        """The gradients of the framed loss at margins ``q`` and each optimizer's update;
        returns the gradients."""
        loss = self.runs[0].loss
        if weights is not None:
            warn_underflow((losses.log_terms(self._batch_min, loss) + frames[:, 0]).min())
        dq = losses.framed_slopes(q, frames, loss)
        if weights is not None:
            dq = dq * weights
        grads = self.stack.backward(dq * ys)
        _check_gradients(grads, len(self.runs), lambda i: self.stacked_runs[i], t)
        for seg in self.segments:
            seg.step(self.stack.params, grads, t)
        return grads

    def reframe(self, deltas: np.ndarray) -> None:
        for seg in self.segments:
            seg.reframe(deltas[seg.start:seg.start + seg.k])

    def final_models(self) -> list[torch.nn.Module]:
        """Each run's own model, given its final parameters from the stack."""
        with torch.no_grad():
            for k, net in enumerate(self.nets):
                for p, P in zip(net.parameters(), self.stack.params):
                    p.copy_(P[self.position[k]])
        return self.nets


class _Log:
    """A group's log points, as the loop logs them: each run's record (log-loss, parameter
    norm, direction, margins) and its observer's values, from its own model and optimizer
    objects given the run's parameters, gradients and state."""

    def __init__(self, group: _Group, norms: Iterable[str | Norm], observe: Observer | None) -> None:
        self.group, self.observe = group, observe
        self.records = [Recording(margin_norms(norms, group.plist[0])) for _ in group.runs]
        self.segment_of = {seg.start + j: (seg, j) for seg in group.segments for j in range(seg.k)}

    def __call__(self, q_all: torch.Tensor, t: int, grads: Sequence[torch.Tensor], F: np.ndarray) -> None:
        """Log step ``t``: margins ``q_all`` after it, ``grads`` its gradient, ``F`` the frames
        (what the reference loop checks and records at a log step)."""
        g = self.group
        _check_alive(q_all, grads, lambda i: g.stacked_runs[i], t)
        for k in range(len(g.runs)):
            i = g.position[k]
            self.records[k].add(g.stack.run_params(i), q_all[i], g.stack.degree, g.runs[0].loss)
            if self.observe is None:
                continue
            with torch.no_grad():
                for p, P, G in zip(g.plist[k], g.stack.params, grads, strict=True):
                    p.copy_(P[i])
                    p.grad = G[i].clone()
                seg, j = self.segment_of[i]
                seg.export(j, g.opts[k], t)
            self.records[k].observe(self.observe, g.nets[k], g.opts[k], float(F[i]), g.runs[k], t)


__all__ = ["train_group", "why_not", "group_key", "chunk_size", "BatchedOptimizer", "signature",
           "free_memory", "peak_memory", "check_limits"]
