"""Sweeps of training runs: :func:`train` turns :class:`Run` s into :class:`History` s.

A chapter describes its experiment as a list of runs and calls :func:`train`. Groups of
compatible runs go to the batched engine (:mod:`implicit_bias.batched`), which steps them
together with the update rules of :mod:`implicit_bias.rules`; the others (optimizers not
built from those rules, per-sample gradients) go one by one through the reference loop
here. Both carry the loss in the moving frame of :mod:`implicit_bias.frame`, so training
continues to losses far below float64's range.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol, cast

import numpy as np
import numpy.typing as npt
import torch

from . import batched, executors, losses, models, optim, regime
from . import store as stores
from .config import DTYPE, MAX_STEPS_ENV, max_steps
from .config import device as default_device
from .data import check_data
from .frame import SLACK as FRAME_SLACK
from .frame import in_pieces, step_frames, warn_underflow
from .history import History, Observer, Recording, RunFailed, Updates, log_grid, margin_norms, summary
from .homogeneity import check_homogeneous, dead_output
from .norms import Norm
from .runs import DTYPES, TRAINING_VERSION, Run, describe
from .sampling import BATCH_SCHEMES, batches
from .warn import aggregate_warnings

#: ``(X, y)``: tensors, or anything numpy makes arrays of.
Pair = Sequence[torch.Tensor | npt.ArrayLike]
#: What :func:`train` trains on: one ``(X, y)`` (a tuple or list) for all runs, or ``(X, y)`` by
#: name (``Run.data``).
Data = tuple[torch.Tensor | npt.ArrayLike, ...] | list[torch.Tensor | npt.ArrayLike] | Mapping[str, Pair]
#: Each data set's ``(X, y)`` as tensors, by name.
Datasets = Mapping[str, tuple[torch.Tensor, torch.Tensor]]
#: A history, or a failed run's :class:`RunFailed`, per run.
Results = Sequence["History | RunFailed | stores.Stored"]


class _Bar(Updates, Protocol):
    """A progress bar (tqdm's)."""

    def close(self) -> object: ...


def per_sample_gradients(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, loss: str = "logistic",
                         frame: float = 0.0, scale: float = 1.0) -> list[torch.Tensor]:
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

    def term(p: dict[str, torch.Tensor], x: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        q = yi * functional_call(model, p, (x.unsqueeze(0),))
        return torch.exp(losses.log_terms(q, loss) + frame).sum() * scale

    out = vmap(grad(term), in_dims=(None, 0, 0))(params, X, y)
    return [out[name] for name, _ in model.named_parameters()]


def _datasets(data: Data, runs: Sequence[Run],
              dev: torch.device) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each run's ``(X, y)`` as tensors on ``dev`` (numpy arrays are accepted)."""
    if isinstance(data, (tuple, list)):
        data = {run.data: tuple(data) for run in runs}
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
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


def _check_models(runs: Sequence[Run], datasets: Datasets, dev: torch.device) -> None:
    """Measure a user's model (a ``Run.model`` factory) on its data before any training:
    a wrong ``degree`` or an ``(n, 1)`` output would otherwise log wrong margins silently
    (:func:`homogeneity.check_homogeneous`). Once per factory, data set and dtype."""
    seen: set[tuple[int, str, str]] = set()
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

#: A time probe (:func:`_probe`) times at most this many steps of a stack.
PROBE_STEPS = 10


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``train(..., store=...)``: the finished chunks are stored, and the
    message says how many runs and that the same call resumes."""


def train(runs: Run | Iterable[Run], data: Data,
          norms: str | Norm | Iterable[str | Norm] = ("l2", "linf", "spectral"), log_points: int = 60,
          frame: bool = True, progress: bool | Literal["runs"] = True,
          device: str | torch.device | None = None, observe: Observer | None = None,
          engine: str = "auto", max_batch: int | None = None, failures: str = "raise",
          store: stores.StoreLike | Literal[False] | None = None,
          executor: executors.Executor | None = None, directions: bool | int = True,
          chunk_seconds: float | None = 60) -> list[History | RunFailed] | stores.StoredHistories:
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
    fits, see :func:`batched.chunk_size`), and the rest (optimizers not built from registered
    rules, or that need per-sample gradients: :func:`batched.why_not`) one by one in the reference
    loop; ``'loop'`` uses the loop for all; ``'batched'`` refuses runs the batched engine
    cannot take. ``History.engine`` says which trained each run (and, for the loop, why).

    ``failures``: a run whose loss or optimizer state leaves the float range raises
    :class:`RunFailed` (``'raise'``, the default) or, with ``'return'``, is returned as
    that error in its place while the other runs train on (a batched chunk with a failed
    run is trained again without it: runs in a stack do not affect each other). The
    error's message names the run (:func:`describe`) and the step.

    ``observe(model, optimizer, frame)``, if given, is called at every logged step, right
    after the optimizer step (so ``p.grad`` is the gradient at the logged step's start),
    and returns a dict of numbers or arrays; ``History.observed[name]`` stacks them over
    the log grid. In the batched engine it gets the run's own model and optimizer
    objects, given the run's parameters, gradients and state (in the loop's layout).
    ``frame`` is F: the gradients and the optimizer's state are those of ``e^F L``, so a
    true gradient is ``p.grad · e^{−F}`` (see :func:`adaptive_scales`).

    ``store`` (a folder or a :class:`store.RunStore`; ``False``: none, whatever the
    environment says) writes each run to disk as its chunk finishes and skips runs already
    there, so a sweep that was killed resumes where it stopped; the sweep is then returned
    as a :class:`store.StoredHistories`, read from disk one history at a time. With a
    store nothing finished is lost: a failed run is recorded (:func:`store.save_failed`)
    and the good runs of its stack stored, even with ``failures='raise'`` (which then
    raises once they are); a rerun trains failed runs again. Ctrl-C raises
    :class:`SweepInterrupted` (a ``KeyboardInterrupt``) once the finished chunks are
    stored, and no chunk of a batched group is estimated to train longer than
    ``chunk_seconds`` (timed on its first steps, see :func:`_time_limit`; None: no bound),
    so an interrupt loses at most about that. ``IMPLICIT_BIAS_STORE`` sets a store for
    every call that names none (``scripts/paper_results.py`` uses it), which then returns
    a plain list.

    ``executor``: anything with ``submit(fn, *args)`` returning a future with ``result()``
    (a ``concurrent.futures`` pool, ``dask.distributed.Client(...).get_executor()``, a
    submitit executor; default from ``IMPLICIT_BIAS_EXECUTOR``, see :func:`executors.executor`)
    gets one task per chunk of compatible runs (:func:`chunks`, each :func:`train_chunk`).
    A chunk whose worker is killed is trained again (a process pool: at most
    :data:`WORKER_RETRIES` times; dask: its scheduler's own retries), then its runs are
    failures like the others. ``directions``: keep θ_t/‖θ_t‖ at every log point (True), at
    none (False) or at about that many (an int, always the first and the last);
    ``History.direction_steps`` says which. ``progress``: a bar over steps (True), over
    runs (``'runs'``) or none."""
    runs = _capped([runs] if isinstance(runs, Run) else list(runs))
    norms = (norms,) if isinstance(norms, (str, Norm)) else tuple(norms)
    _check_options(log_points, engine, max_batch, failures, chunk_seconds, directions, progress)
    dev = torch.device(device) if device is not None else default_device()
    datasets = _datasets(data, runs, dev)
    batched.check_limits(runs, datasets, dev, max_batch, log_points)  # before any model is built
    _check_models(runs, datasets, dev)
    executor = executors.default(executor)
    session = stores.Session.open(store, runs, datasets, {
        "norms": norms, "log_points": log_points, "frame": frame, "directions": directions,
        "engine": engine, "observe": observe})
    limit = None
    if session is not None and chunk_seconds is not None:
        limit = _time_limit(runs, datasets, session.keys, session.store, chunk_seconds, dev, norms,
                            log_points, frame)
    done: set[int]
    todo, done = chunks(runs, datasets, engine, max_batch, dev, limit), set()
    if session is not None:
        todo, done = session.pending(todo, progress)
    bar = _progress_bar(progress, runs, done)
    # With a store a failed run never stops its chunk: the good runs are stored first.
    task = _chunk_task(runs, datasets, norms, log_points, frame, dev if executor is None else device, observe,
                       "return" if session is not None else failures, directions,
                       session if executor is not None else None, executor is not None)
    collected = _Collected(runs, datasets, session, str(dev) if executor is None else "executor")
    with aggregate_warnings():  # many runs' warnings: one line per kind, with the runs, after the bar
        _train_chunks(todo, task, executor, bar, progress, collected, failures)
    return collected.result()


def _capped(runs: list[Run]) -> list[Run]:
    """The runs with their steps capped at ``IMPLICIT_BIAS_MAX_STEPS`` (a rehearsal; see
    :func:`config.max_steps`), saying so once per call; unchanged when it is unset."""
    cap = max_steps()
    if cap is None or all(run.steps <= cap for run in runs):
        return runs
    warnings.warn(f"{MAX_STEPS_ENV}={cap}: every run is cut to at most {cap} steps (a rehearsal: "
                  "its results are not the run size's).", RuntimeWarning, stacklevel=3)
    return [dataclasses.replace(run, steps=min(run.steps, cap)) for run in runs]


def _check_options(log_points: int, engine: str, max_batch: int | None, failures: str,
                   chunk_seconds: float | None, directions: bool | int,
                   progress: bool | Literal["runs"]) -> None:
    """:func:`train`'s options, each checked against its type and range."""
    if not (isinstance(log_points, int) and not isinstance(log_points, bool) and log_points >= 1):
        raise ValueError(f"log_points must be a positive integer, got {log_points!r}.")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}.")
    if max_batch is not None and not (isinstance(max_batch, int) and max_batch >= 1):
        raise ValueError(f"max_batch must be a positive integer or None, got {max_batch!r}.")
    if failures not in FAILURES:
        raise ValueError(f"failures must be one of {FAILURES}, got {failures!r}.")
    if chunk_seconds is not None and not (isinstance(chunk_seconds, (int, float))
                                          and not isinstance(chunk_seconds, bool) and chunk_seconds > 0):
        raise ValueError(f"chunk_seconds must be a positive number or None, got {chunk_seconds!r}.")
    if not (directions is True or directions is False
            or (isinstance(directions, int) and directions >= 1)):
        raise ValueError(f"directions must be True, False or a positive integer, got {directions!r}.")
    if progress not in (True, False, "runs"):
        raise ValueError(f"progress must be True, False or 'runs', got {progress!r}.")


def _progress_bar(progress: bool | Literal["runs"], runs: Sequence[Run], done: Iterable[int]) -> _Bar | None:
    """A bar over steps (``progress=True``) or runs (``'runs'``), started at the runs
    already ``done``; None without progress."""
    if not progress:
        return None
    from tqdm import tqdm

    per_run = progress is True
    bar: _Bar = tqdm(total=sum(r.steps if per_run else 1 for r in runs), unit="step" if per_run else "run",
                initial=sum(runs[i].steps if per_run else 1 for i in done), mininterval=1.0)
    return bar


#: :func:`train_chunk`'s arguments up to ``directions`` (a chunk's runs, X, y, norms, …),
#: then where a worker stores them itself (:func:`train_chunk_into`; None: it hands them back).
_ChunkArgs = tuple[list[Run], torch.Tensor, torch.Tensor, tuple[str | Norm, ...], int, bool,
                   "str | torch.device | None", "Observer | None", str, "str | None", "bool | int",
                   "stores.WorkerStore | None"]
_ChunkTask = Callable[[Sequence[int], "str | None"], _ChunkArgs]


def _chunk_task(runs: Sequence[Run], datasets: Datasets, norms: tuple[str | Norm, ...], log_points: int,
                frame: bool, device: str | torch.device | None, observe: Observer | None, failures: str,
                directions: bool | int, session: stores.Session | None, remote: bool) -> _ChunkTask:
    """``task(chunk, reason)``: the arguments of :func:`train_chunk_into` for one chunk (for a
    ``remote`` worker, its data on the CPU: the worker moves them to its own device; with a
    ``session``, the worker stores the chunk itself where it can)."""
    def task(c: Sequence[int], why: str | None) -> _ChunkArgs:
        X, y = datasets[runs[c[0]].data]
        if remote:
            X, y = X.cpu(), y.cpu()
        return ([runs[i] for i in c], X, y, norms, log_points, frame, device, observe, failures, why,
                directions, None if session is None else session.for_workers(c))

    return task


def train_chunk_into(*args: Any) -> list[History | RunFailed | stores.Stored]:
    """:func:`train_chunk` on a worker (its arguments, then a :class:`store.WorkerStore` or
    None): with a store the worker can reach, it writes the chunk's runs itself and hands
    back their keys (a history crosses no process boundary); else the histories."""
    *chunk_args, into = args
    histories: list[History | RunFailed] = train_chunk(*chunk_args)
    if into is None or not into.reachable():
        return list(histories)
    regimes = [None if isinstance(h, RunFailed) else regime.check(h) for h in histories]
    stored: list[History | RunFailed | stores.Stored] = into.save(histories, _input_dim(chunk_args[1]),
                                                                   "executor", regimes)
    return stored


class _Collected:
    """What :func:`train` hands back: the histories in the order of the runs, and the
    failures by index; with a store :class:`~store.Session`, each chunk saved as it comes."""

    def __init__(self, runs: Sequence[Run], datasets: Datasets, session: stores.Session | None,
                 device: str) -> None:
        self.runs, self.datasets, self.session, self.device = runs, datasets, session, device
        self.out: list[History | RunFailed | None] = [None] * len(runs)
        self.failed: dict[int, RunFailed] = {}

    def add(self, c: Sequence[int], hists: Results) -> list[RunFailed]:
        """Keep (or store) chunk ``c``'s histories; return its failures."""
        new: list[RunFailed] = []
        for i, h in zip(c, hists, strict=True):
            if isinstance(h, RunFailed):
                self.out[i] = self.failed[i] = h
                new.append(h)
            elif self.session is None:
                self.out[i] = cast(History, h)  # without a store, no worker stores
        if self.session is not None:
            dims = [_input_dim(self.datasets[self.runs[i].data][0]) for i in c]
            self.session.save(c, hists, dims, self.device)
        return new

    def result(self) -> list[History | RunFailed] | stores.StoredHistories:
        # every run has its history or failure by now: no None is left
        return cast(list[History | RunFailed], self.out) if self.session is None else \
            self.session.result(self.failed)


def _train_chunks(todo: list[stores.Chunk], task: _ChunkTask, executor: executors.Executor | None,
                  bar: _Bar | None, progress: bool | Literal["runs"], collected: _Collected,
                  failures: str) -> None:
    """Train the chunks, here one after another or on ``executor``, keeping each as it
    finishes. With a store, Ctrl-C keeps every finished chunk (one caught while it was being
    saved too) and raises :class:`SweepInterrupted`."""
    in_hand: tuple[Sequence[int], Results] | None
    finished: Iterator[tuple[Sequence[int], Results]]
    runs, in_hand = collected.runs, None
    try:
        if executor is None:
            finished = ((c, train_chunk(*task(c, why)[:-1], bar=bar if progress is True else None))
                        for c, why in todo)
        else:
            finished = executors.dispatch(executor, todo, train_chunk_into, task)
        for c, hists in finished:
            in_hand = (c, hists)  # finished: stored whole even if Ctrl-C comes while storing it
            regime.warn(hists)
            new = collected.add(c, hists)
            in_hand = None
            if bar is not None and (executor is not None or progress == "runs"):
                bar.update(sum(runs[i].steps if progress is True else 1 for i in c))
            if new and failures == "raise":
                raise new[0]
    except KeyboardInterrupt:
        if collected.session is None:
            raise
        if in_hand is not None:
            collected.add(*in_hand)
        raise SweepInterrupted(collected.session.interrupted()) from None
    finally:
        if bar is not None:
            bar.close()
        if collected.session is not None:
            collected.session.close()


def chunks(runs: Sequence[Run], datasets: Datasets, engine: str = "auto", max_batch: int | None = None,
           dev: torch.device | None = None,
           limit: Callable[[list[int], int], int] | None = None) -> list[stores.Chunk]:
    """The units a sweep trains in, as ``(indices into runs, reason)``: each group of
    compatible runs (:func:`batched.group_key`) cut into stacks of at most ``max_batch``
    runs or what fits (:func:`batched.chunk_size`), reason None; and every run the batched
    engine cannot take alone, with the reason it goes to the reference loop.
    ``limit(members, size)``, if given, may lower a group's stack size (:func:`_time_limit`)."""
    dev = dev if dev is not None else default_device()
    groups: dict[Any, list[int]] = {}
    alone: list[stores.Chunk] = []
    for i, run in enumerate(runs):
        reason = batched.why_not(run) if engine != "loop" else "engine='loop'"
        if reason is None:
            groups.setdefault(batched.group_key(run), []).append(i)
        elif engine == "batched":
            raise ValueError(f"Run {run.label!r} cannot be batched: {reason}. Use engine='auto'.")
        else:
            alone.append(([i], reason))
    out: list[stores.Chunk] = []
    for members in groups.values():
        first = runs[members[0]]
        X, _ = datasets[first.data]
        n_params = _parameter_count(first, _input_dim(X))
        size = max_batch or batched.chunk_size(first, X.shape[0], n_params, dev)
        if limit is not None:
            size = limit(members, size)
        out += [(members[at:at + size], None) for at in range(0, len(members), size)]
    return out + alone


def _parameter_count(run: Run, d: int | tuple[int, ...]) -> int:
    """``run``'s parameter count: from its config (nothing built), or its factory's model."""
    if isinstance(run.model, dict):
        return models.parameter_count(run.model, d)
    return sum(p.numel() for p in run.build_model(d, DTYPE).parameters())


# --- chunks bounded by time ---------------------------------------------------------------


def _time_limit(runs: Sequence[Run], datasets: Datasets, keys: Sequence[str], store: stores.RunStore,
                seconds: float, dev: torch.device, norms: tuple[str | Norm, ...], log_points: int,
                frame: bool) -> Callable[[list[int], int], int]:
    """For :func:`chunks`: a group's stack size such that no chunk is estimated to train
    longer than ``seconds`` (an interrupt then loses at most that). Each optimizer of the
    group is timed on the first steps of a stack (:func:`_timed_size`), once: the size is
    kept in the store (``<root>/chunks/``), since a resumed sweep must cut its chunks as
    the first did (a stack's size can change its runs' last bits)."""

    def limit(members: list[int], size: int) -> int:
        if size == 1 or len(members) == 1 or all(store.has(keys[i]) for i in members):
            return size
        plan = stores._hash({"runs": [keys[i] for i in members], "seconds": seconds, "device": dev.type})
        path = store.root / "chunks" / f"{plan}.json"
        try:
            return max(1, min(size, int(json.loads(path.read_text())["size"])))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not timed yet (an unreadable plan is timed again)
        X, y = datasets[runs[members[0]].data]
        kinds: dict[str, list[Run]] = {}  # one optimizer's stack may be slower than a mixed one: time each
        for i in members:
            name = getattr(runs[i].optimizer, "__name__", runs[i].optimizer)
            kinds.setdefault(str(name), []).append(runs[i])
        bound = min(_timed_size(kind, X, y, size, seconds, dev, norms, log_points, frame)
                    for kind in kinds.values())
        stores._atomic_write(path, json.dumps({"size": bound, "seconds": seconds}).encode())
        return bound

    return limit


def _timed_size(runs: Sequence[Run], X: torch.Tensor, y: torch.Tensor, size: int, seconds: float,
                dev: torch.device, norms: tuple[str | Norm, ...], log_points: int, frame: bool) -> int:
    """The largest stack (≤ ``size``) of runs like ``runs`` (of one optimizer) estimated to
    train within ``seconds``: timed at up to ``size`` of them, then at fewer while too slow
    (three probes at most)."""
    k = min(size, len(runs))
    for _ in range(3):
        t = _probe(runs[:k], X, y, seconds, dev, norms, log_points, frame)
        if t <= seconds:  # a stack's time grows slower than its size: scaling up is safe
            return size if t <= 0 else min(size, max(k, int(k * seconds / t)))
        if k == 1:
            return 1
        k = max(1, int(k * seconds / t))
    return k


class _ProbeDone(Exception):
    """Ends a time probe (raised by its clock)."""


class _StepClock:
    """A probe's stand-in for a progress bar: the engine calls ``update`` once a step; the
    clock notes when, and ends the probe after :data:`PROBE_STEPS` steps or ``limit`` s."""

    def __init__(self, limit: float) -> None:
        self.limit, self.start = limit, time.perf_counter()
        self.times: list[float] = []

    def update(self, n: int = 1) -> None:
        self.times.append(time.perf_counter())
        if len(self.times) >= PROBE_STEPS or self.times[-1] - self.start > self.limit:
            raise _ProbeDone

    def estimate(self, steps: int, log_points: int) -> float:
        """Seconds for the whole stack: set-up + steps × a step + log points × a log point.
        Gap 0 is the set-up and step 1; gap 1 is step 1's log point and step 2; the rest
        are steps. With fewer gaps, each counts as a step (an overestimate)."""
        gaps = np.diff([self.start, *self.times])
        if len(gaps) < 3:
            return steps * float(gaps.max()) if len(gaps) else 0.0
        step = float(np.median(gaps[2:]))
        total: float = max(0.0, gaps[0] - step) + steps * step + log_points * max(0.0, gaps[1] - step)
        return total


def _probe(runs: Sequence[Run], X: torch.Tensor, y: torch.Tensor, seconds: float, dev: torch.device,
           norms: tuple[str | Norm, ...], log_points: int, frame: bool) -> float:
    """The estimated seconds to train ``runs`` as one stack, timed on its first steps (for
    at most ``seconds / 20``). The observer is left out: it may have side effects."""
    clock = _StepClock(seconds / 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the chunk itself warns
        try:
            batched.train_group(runs, X, y, norms, 2, frame, dev, clock)
        except (_ProbeDone, RunFailed):
            pass  # what was timed is the estimate; a failing run fails again in its chunk
    return clock.estimate(runs[0].steps, log_points)


def train_chunk(runs: Sequence[Run], X: torch.Tensor | npt.ArrayLike, y: torch.Tensor | npt.ArrayLike,
                norms: Iterable[str | Norm] = ("l2", "linf", "spectral"), log_points: int = 60,
                frame: bool = True, device: str | torch.device | None = None, observe: Observer | None = None,
                failures: str = "raise", reason: str | None = None, directions: bool | int = True,
                bar: Updates | None = None) -> list[History | RunFailed]:
    """Train one chunk of :func:`chunks` (what an executor runs): compatible ``runs`` as
    one stack in the batched engine, or (``reason`` given) one run in the reference loop.
    Returns their histories, or with ``failures='return'`` a :class:`RunFailed` in a failed
    run's place (a stack with a failed run is trained again without it: runs in a stack
    do not affect each other)."""
    dev = torch.device(device) if device is not None else default_device()
    X, y = torch.as_tensor(X).to(dev, DTYPE), torch.as_tensor(y).to(dev, DTYPE)
    out: list[History | RunFailed | None] = [None] * len(runs)
    chunk = list(range(len(runs)))
    while chunk:
        try:
            if reason is not None:
                hists = [_train_one(runs[i], X, y, norms, log_points, frame, dev, bar, observe, reason)
                         for i in chunk]
            else:
                hists = batched.train_group([runs[i] for i in chunk], X, y, norms, log_points, frame,
                                            dev, bar, observe)
        except RunFailed as err:
            if failures == "raise":
                raise
            failed = next(i for i in chunk if runs[i] is err.run)
            out[failed] = err
            chunk = [i for i in chunk if i != failed]
            continue
        for i, h in zip(chunk, hists):
            out[i] = _thin(h, directions)
        chunk = []
    return cast(list[History | RunFailed], out)  # every run has its history or failure by now


def _thin(h: History, directions: bool | int) -> History:
    """Keep ``directions`` of ``h``'s direction rows (True: all; False: none; an int:
    about that many, evenly spread over the log points, the first and the last kept)."""
    if directions is True:
        return h
    n = len(h.steps)
    keep = (np.zeros(0, dtype=int) if directions is False
            else np.unique(np.linspace(0, n - 1, min(directions, n)).round().astype(int)))
    h.directions = np.ascontiguousarray(h.directions.reshape(n, -1)[keep])
    h.direction_steps = np.asarray(h.steps)[keep]
    return h


def _input_dim(X: torch.Tensor) -> int | tuple[int, ...]:
    return X.shape[1] if X.dim() == 2 else tuple(X.shape[1:])


def _train_one(run: Run, X: torch.Tensor, y: torch.Tensor, norms: Iterable[str | Norm], log_points: int,
               frame: bool, dev: torch.device, bar: Updates | None, observe: Observer | None = None,
               reason: str | None = None) -> History:
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
    rec = Recording(margin_norms(norms, params))
    F = 0.0  # the frame: we differentiate e^F L
    next_log = 0
    n = X.shape[0]
    sampler: Iterator[torch.Tensor] | None = None
    if run.batch != "full":
        assert run.batch_size is not None  # Run sets it for every batch scheme
        sampler = batches(run.batch, n, run.batch_size, run.seed)
    per_sample = getattr(opt, "needs_per_sample_gradients", False)
    try:
        for t in range(1, run.steps + 1):
            F = _loop_step(t, run, model, opt, X, y, F, frame, reframe, sampler, per_sample)
            schedule.step()
            if bar is not None:
                bar.update(1)
            if t == grid[next_log]:
                with torch.no_grad():
                    q = y * model(X)
                    # A net that cannot move (every unit dead) would log one point to the end.
                    dead = dead_output(q, [p.grad for p in params if p.grad is not None])
                    if dead is not None:
                        raise RunFailed(run, f"{describe(run)}, step {t}: {dead}.")
                    degree = cast(float, model.degree)  # a HomogeneousModel (check_homogeneous)
                    rec.add([p.detach() for p in model.parameters()], q, degree, run.loss)
                if observe is not None:
                    rec.observe(observe, model, opt, F, run, t)
                next_log += 1
    except RunFailed as err:  # hand back what the run logged before it failed
        seconds = time.perf_counter() - start
        err.history = rec.history(run, grid, model, seconds, {"name": "loop", "failed": True})
        raise
    engine = {"name": "loop"} if reason is None else {"name": "loop", "reason": reason}
    return rec.history(run, grid, model, time.perf_counter() - start, engine)


def _loop_step(t: int, run: Run, model: torch.nn.Module, opt: torch.optim.Optimizer, X: torch.Tensor,
               y: torch.Tensor, F: float, frame: bool, reframe: Callable[[float], object] | None,
               sampler: Iterator[torch.Tensor] | None, per_sample: bool) -> float:
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
    shift = cast(Callable[[float], object], reframe)  # None only without a frame: then never called
    moved = step_frames(np.array([log_l]), np.array([F]), lambda d: shift(float(d[0])), [run], t, frame)
    F = float(moved[0])
    if sampler is None and not per_sample:
        torch.exp(terms + F).sum().backward()
    else:
        idx = slice(None) if sampler is None else next(sampler)
        _backward_batch(model, X[idx], y[idx], run.loss, F, n / len(y[idx]), per_sample)
    try:
        opt.step()
    except FloatingPointError as err:
        raise RunFailed(run, f"{describe(run)}, step {t}: {err}") from err
    return F


def _backward_batch(model: torch.nn.Module, Xb: torch.Tensor, yb: torch.Tensor, loss: str, frame: float,
                    scale: float, per_sample: bool) -> None:
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
        p.grad_sample = g  # type: ignore[attr-defined]  # a new attribute, read by AdamProxy (as Opacus's)
        p.grad = g.sum(dim=0)


def adaptive_scales(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    frame: float) -> dict[str, float]:
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


__all__ = ["Run", "History", "train", "train_chunk", "chunks", "TRAINING_VERSION", "RunFailed",
           "SweepInterrupted", "describe", "log_grid", "summary", "adaptive_scales",
           "batches", "per_sample_gradients", "BATCH_SCHEMES", "DTYPES", "FRAME_SLACK"]
