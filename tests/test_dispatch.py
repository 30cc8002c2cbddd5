"""Dispatch: train(..., executor=...) sends chunks of compatible runs (the batched engine's
stacks) to any Executor-like object; a process pool, a dask LocalCluster (2 worker
processes) and submitit's local executor all give results bit-identical to the local
engine on the CPU."""

from __future__ import annotations

import functools
import multiprocessing
import pickle
import warnings
from concurrent.futures import ProcessPoolExecutor

import implicit_bias as ib
import numpy as np
import pytest
import torch
from implicit_bias import store
from implicit_bias import train as training
from implicit_bias.train import Run, RunFailed

NET = {"kind": "two_layer", "width": 8, "activation": "relu2"}
OPTIONS = dict(norms=("l2", "linf"), max_batch=3, progress=False, device="cpu")


def sweep():
    data = ib.data.digits_even_odd(n=150)
    runs = [Run(o, lr, 80, schedule=0.5, seed=s, model=NET)
            for o, lr in [("NormalizedGD", 0.5), ("Signum", 0.01), ("Adam", 0.01)] for s in range(2)]
    runs.append(Run("TorchMuon", 0.05, 80, model=NET))  # a run for the reference loop: its own chunk
    return runs, data


@functools.cache
def local():
    with torch.random.fork_rng():
        runs, data = sweep()
        return training.train(runs, data, **OPTIONS)


def identical(a, b):
    for h, g in zip(a, b, strict=True):
        assert h.run == g.run and h.engine["name"] == g.engine["name"]
        for name in ("steps", "log_loss", "param_norm", "directions"):
            assert np.array_equal(getattr(h, name), getattr(g, name)), (h.run.label, name)
        assert all(np.array_equal(h.margins[n], g.margins[n]) for n in h.margins)
        assert all(torch.equal(p, q) for p, q in zip(h.model.parameters(), g.model.parameters()))


def test_chunks_are_the_engines_stacks():
    runs, data = sweep()
    chunks = training.chunks(runs, {"data": data}, max_batch=3)
    assert [c for c, _ in chunks] == [[0, 1, 2], [3, 4, 5], [6]]
    assert chunks[0][1] is None and "TorchMuon" in chunks[-1][1]


def test_a_process_pool_gives_the_local_results(tmp_path):
    runs, data = sweep()
    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        identical(local(), training.train(runs, data, executor=pool, **OPTIONS))
        stored = training.train(runs, data, executor=pool, store=tmp_path, **OPTIONS)
    identical(local(), stored)
    assert len(store.RunStore(tmp_path)) == len(runs)


def test_a_worker_that_reaches_the_store_writes_its_chunk_and_hands_back_keys(tmp_path):
    runs, data = sweep()
    X, y = (torch.as_tensor(a, dtype=torch.float64) for a in data)
    settings = {"norms": OPTIONS["norms"], "log_points": 60, "frame": True, "directions": True,
                "engine": "auto", "observe": None}
    session = store.Session.open(tmp_path, runs, {"data": (X, y)}, settings)
    task = training._chunk_task(runs, {"data": (X, y)}, OPTIONS["norms"], 60, True, "cpu", None, "return",
                                True, session, remote=True)
    back = training.train_chunk_into(*task([0, 1, 2], None))
    assert [b.key for b in back] == session.keys[:3] and all(isinstance(b, store.Stored) for b in back)
    identical(local()[:3], [store.RunStore(tmp_path).load(k) for k in session.keys[:3]])
    mode = (tmp_path / "runs" / f"{session.keys[0]}.npz").stat().st_mode & 0o777
    assert mode == store._FILE_MODE  # what the umask allows, not tempfile's 0600
    # A worker that cannot see the sweep's token (another machine) hands back the histories
    session.close()
    back = training.train_chunk_into(*task([3, 4, 5], None))
    assert all(isinstance(h, training.History) for h in back) and len(store.RunStore(tmp_path)) == 3
    identical(local()[3:6], back)


def test_a_run_a_worker_stored_brings_its_regime_warning():
    from implicit_bias import regime

    with pytest.warns(RuntimeWarning, match="left Adam's regime"):
        regime.warn([store.Stored("k", "run 'Adam' left Adam's regime at step 9")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        regime.warn([store.Stored("k", None)])


def test_a_dask_local_cluster_gives_the_local_results():
    distributed = pytest.importorskip("distributed")
    runs, data = sweep()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        identical(local(), training.train(runs, data, executor=client.get_executor(), **OPTIONS))
        identical(local(), training.train(runs, data, executor=client, **OPTIONS))  # dask's own futures
        assert len(client.scheduler_info()["workers"]) == 2


def test_submitit_local_executor_gives_the_local_results(tmp_path):
    submitit = pytest.importorskip("submitit")
    runs, data = sweep()
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    executor.update_parameters(timeout_min=5)
    identical(local(), training.train(runs[:3], data, executor=executor, **OPTIONS)[:3] + local()[3:])


def test_a_failed_run_crosses_processes():
    run = Run("NormalizedGD", 0.1, 5)
    err = pickle.loads(pickle.dumps(RunFailed(run, "boom at step 3")))
    assert isinstance(err, RunFailed) and str(err) == "boom at step 3" and err.run == run


@pytest.mark.parametrize("spec", ["processes:2", "dask-local:2"])
def test_executor_workers_split_the_cores(spec, monkeypatch):
    """Each of N local workers gets cores // N of torch's threads: without this, two workers
    on two cores ran four threads and a sweep took 9× longer. (The machine is told it has 8
    cores, so the answer, 4, differs from any thread count a worker could inherit.)"""
    import os

    from implicit_bias import executors
    from implicit_bias import sweep as sweeps

    if spec.startswith("dask"):
        pytest.importorskip("distributed")
    monkeypatch.setattr(executors, "_EXECUTORS", {})
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    ex = sweeps.executor(spec)
    try:
        threads = {ex.submit(torch.get_num_threads).result() for _ in range(4)}
    finally:
        ex.shutdown()
    assert threads == {4}
