"""Executors: where the chunks of a sweep train, and how they come back.

:func:`executor` turns a short spec (``processes:N``, ``dask-local:N``, ``dask:ADDRESS``)
into an executor whose workers split the machine's cores; :func:`dispatch` sends chunks to
any executor (a ``concurrent.futures`` pool, dask's, submitit's) and yields their results
as they finish, retrying a chunk whose worker process was killed. :func:`train.train` calls
it with ``executor=``; nothing here knows what a chunk computes.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from .history import RunFailed
from .runs import describe

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

    from distributed import Worker
    from distributed.diagnostics.plugin import WorkerPlugin


class Executor(Protocol):
    """What ``train(executor=...)`` takes: anything with ``submit(fn, *args)`` returning a
    future with ``result()`` (a ``concurrent.futures`` pool, dask's, submitit's)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any: ...


#: How many times a chunk whose worker process was killed is submitted again.
WORKER_RETRIES = 2

_EXECUTORS: dict[str, Executor] = {}

#: A chunk of a sweep (its runs' indices) and why it goes to the executor (None: no reason given).
_Chunk = tuple[Sequence[int], str | None]
#: What makes a chunk's arguments to ``work``; its first is the chunk's runs.
_Task = Callable[[Sequence[int], str | None], tuple[Any, ...]]
#: A chunk in a process pool's queue: chunk, reason, tries so far.
_Try = tuple[Sequence[int], str | None, int]


def executor(spec: str) -> Executor:
    """An executor from a short spec, made once per process: ``processes:N`` (a local
    process pool), ``dask-local:N`` (a dask LocalCluster of N single-thread worker
    processes), ``dask:ADDRESS`` (a running dask scheduler, e.g. ``tcp://host:8786``).
    For Slurm build a submitit executor yourself (``examples/submitit_sweep.py``)."""
    if spec in _EXECUTORS:
        return _EXECUTORS[spec]
    kind, workers = _executor_spec(spec)
    # Workers split the cores: each gets its share of torch's threads (by default every
    # worker would start one thread per core, and N workers would run N× too many).
    cores = os.cpu_count() or 1
    threads = max(1, cores // (workers if isinstance(workers, int) else cores))
    if kind == "processes":
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the parent may hold CUDA state, which a forked worker cannot use
        count = cast(int | None, workers)  # processes:N gives a count (None: one per CPU)
        ex: Executor = ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_use_threads, initargs=(threads,))
    else:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ImportError(f"executor {spec!r} needs dask.distributed: pip install 'distributed', "
                              "or use processes:N.") from None
        if kind == "dask-local":
            client = Client(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True))
            client.register_plugin(_dask_threads(threads))  # also on workers started later
        else:
            client = Client(workers)
        ex = client.get_executor()
    _EXECUTORS[spec] = ex
    return ex


def default(executor: Executor | None) -> Executor | None:
    """``executor``, or when None the one the environment names (``IMPLICIT_BIAS_EXECUTOR``,
    a spec for :func:`executor`), or None."""
    if executor is None and os.environ.get("IMPLICIT_BIAS_EXECUTOR"):
        made: Executor = globals()["executor"](os.environ["IMPLICIT_BIAS_EXECUTOR"])
        return made
    return executor


def _use_threads(threads: int) -> None:
    """A pool worker's initializer: use ``threads`` of torch's threads."""
    import torch

    torch.set_num_threads(threads)


def _dask_threads(threads: int) -> WorkerPlugin:
    """A dask worker plugin (defined here: dask is optional) by which each worker, also one
    started later, uses ``threads`` of torch's threads."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class Threads(WorkerPlugin):
        name = "implicit-bias-threads"

        def setup(self, worker: Worker) -> None:
            _use_threads(threads)

    return Threads()


def _executor_spec(spec: str) -> tuple[str, str | int | None]:
    """``(kind, workers)`` of an executor spec: a worker count ≥ 1 (None: one per CPU) for
    ``processes`` and ``dask-local``, the address for ``dask``; anything else is refused."""
    usage = "use processes:N, dask-local:N (N an integer ≥ 1) or dask:ADDRESS"
    if not isinstance(spec, str):
        raise ValueError(f"Unknown executor {spec!r}: {usage}.")
    kind, _, arg = spec.partition(":")
    if kind == "dask":
        if not arg:
            raise ValueError(f"executor {spec!r} names no scheduler: {usage}, e.g. dask:tcp://host:8786.")
        return kind, arg
    if kind not in ("processes", "dask-local"):
        raise ValueError(f"Unknown executor {spec!r}: {usage}.")
    if not arg:
        return kind, None if kind == "processes" else 2
    if not (arg.isdigit() and int(arg) >= 1):
        raise ValueError(f"executor {spec!r}: the worker count must be an integer ≥ 1, got {arg!r}; {usage}.")
    most = 4 * (os.cpu_count() or 1)  # local workers beyond this only compete for the CPUs
    if int(arg) > most:
        raise ValueError(f"executor {spec!r}: {int(arg):,} local workers for {os.cpu_count()} CPUs; use at "
                         f"most {most}, or a dask scheduler (dask:ADDRESS) for more machines.")
    return kind, int(arg)


def dispatch(executor: Executor, todo: Sequence[tuple[Sequence[int], str | None]],
             work: Callable[..., list[Any]], task: Callable[[Sequence[int], str | None], tuple[Any, ...]],
             ) -> Iterator[tuple[Sequence[int], list[Any]]]:
    """Submit every chunk (``todo``: ``(chunk, reason)`` pairs) to ``executor`` as
    ``work(*task(chunk, reason))`` and yield ``(chunk, histories)`` as each
    finishes: ``concurrent.futures`` futures through ``as_completed``, others (dask's,
    submitit's jobs) by polling ``done()``. Pending chunks are cancelled on an error. A
    chunk whose worker was lost for good (dask's ``KilledWorker`` after its scheduler's
    retries, submitit's ``UncompletedJobError``) comes back as its runs' failures; a
    process pool has its own dispatch (:func:`_pool_dispatch`)."""
    import concurrent.futures as cf

    if isinstance(executor, cf.ProcessPoolExecutor):
        yield from _pool_dispatch(executor, todo, work, task)
        return
    pending = [executor.submit(work, *task(c, why)) for c, why in todo]
    chunk_of = {id(f): (c, why) for f, (c, why) in zip(pending, todo)}
    try:  # only `pending` holds futures: a finished chunk's histories are freed once stored
        if all(isinstance(f, cf.Future) for f in pending):
            for f in cf.as_completed(list(pending)):
                pending.remove(f)
                yield chunk_of[id(f)][0], _result(f, chunk_of[id(f)], task)
            return
        while pending:
            ready = [f for f in pending if not hasattr(f, "done") or f.done()]
            if not ready:
                time.sleep(0.05)
            for f in ready:
                pending.remove(f)
                yield chunk_of[id(f)][0], _result(f, chunk_of[id(f)], task)
    finally:
        for f in pending:
            if hasattr(f, "cancel"):
                f.cancel()


def _lost_worker(err: BaseException | None) -> bool:
    """Whether ``err`` says a chunk's worker process died (rather than the chunk failing)."""
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(err, BrokenProcessPool) or type(err).__name__ in ("KilledWorker", "UncompletedJobError")


def _lost(chunk: _Chunk, task: _Task, how: str) -> list[RunFailed]:
    """The failures of a chunk whose worker died ``how``."""
    return [RunFailed(run, f"{describe(run)}: the worker process training it died {how} (out of memory, "
                           "or killed?); rerun to try it again.")
            for run in task(*chunk)[0]]


def _result(future: Any, chunk: _Chunk, task: _Task) -> list[Any]:
    try:
        histories: list[Any] = future.result()  # any executor's future (dask's, submitit's job)
        return histories
    except Exception as err:
        if not _lost_worker(err):
            raise
        return _lost(chunk, task, f"after the executor's own retries ({type(err).__name__})")


def _pool_dispatch(pool: ProcessPoolExecutor, todo: Sequence[_Chunk], work: Callable[..., list[Any]],
                   task: _Task) -> Iterator[tuple[Sequence[int], list[Any]]]:
    """:func:`dispatch` for a process pool, which a killed worker breaks: one chunk per
    worker is in flight, so a kill loses only those; the pool is rebuilt and each lost
    chunk submitted again, at most :data:`WORKER_RETRIES` times, the last time alone (so
    that a chunk that kills its worker every time does not take others with it). A chunk
    killed even alone is split into its runs, each tried once alone: the run that kills
    its worker comes back as a failure, the others are trained."""
    import concurrent.futures as cf

    queue: deque[_Try] = deque((c, why, 0) for c, why in todo)  # chunk, reason, tries so far
    flying: dict[Future[list[Any]], _Try] = {}
    built: ProcessPoolExecutor | None = None
    try:
        while queue or flying:
            broken = not _fill(pool, queue, flying, work, task)
            done, _ = cf.wait(list(flying), return_when=cf.FIRST_COMPLETED)
            broken = broken or any(_lost_worker(f.exception()) for f in done)
            if broken:  # the pool fails every chunk in flight: collect them all
                done, _ = cf.wait(list(flying))
            lost: list[_Try] = []
            for f in done:
                c, why, tries = flying.pop(f)
                if not _lost_worker(f.exception()):
                    yield c, f.result()
                elif tries < WORKER_RETRIES:
                    lost.append((c, why, tries + 1))
                elif len(c) > 1:  # killed even alone: find the run that kills it, one by one
                    lost += [([i], why, tries) for i in c]
                else:
                    yield c, _lost((c, why), task, "at every try, the last one alone")
            queue.extendleft(reversed(lost))
            if broken and queue:  # a pool like the broken one (the user's stays theirs)
                if built is not None:
                    built.shutdown(wait=False)
                # _max_workers: private, and not in typeshed's stub
                pool = built = type(pool)(pool._max_workers, mp_context=pool._mp_context,  # type: ignore[attr-defined]
                                          initializer=pool._initializer, initargs=pool._initargs)
    finally:
        for f in flying:
            f.cancel()
        if built is not None:
            built.shutdown(wait=False, cancel_futures=True)


def _fill(pool: ProcessPoolExecutor, queue: deque[_Try], flying: dict[Future[list[Any]], _Try],
          work: Callable[..., list[Any]], task: _Task) -> bool:
    """Submit queued chunks while a worker is free; a chunk on its last try goes alone.
    False if the pool was found broken."""
    from concurrent.futures.process import BrokenProcessPool

    last = WORKER_RETRIES
    while queue and len(flying) < pool._max_workers:  # type: ignore[attr-defined]  # private, not in typeshed
        if any(t == last for *_, t in flying.values()) or (queue[0][2] == last and flying):
            break
        c, why, tries = queue[0]
        try:
            flying[pool.submit(work, *task(c, why))] = (c, why, tries)
        except BrokenProcessPool:
            return False
        queue.popleft()
    return True


__all__ = ["executor", "default", "dispatch", "WORKER_RETRIES"]
