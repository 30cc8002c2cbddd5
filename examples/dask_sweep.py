"""A sweep on a Dask cluster: each chunk of compatible runs (one stack of the batched
engine) is one Dask task; this process stores the runs as their chunks finish.

    python examples/dask_sweep.py                          # a LocalCluster: 2 worker processes
    python examples/dask_sweep.py tcp://scheduler:8786     # a running cluster (dask-scheduler,
                                                           # dask-worker --nthreads 1 on each node)
    python -m implicit_bias report examples/sweeps/example # the table and the figures

The workers need the same ``implicit_bias`` (and torch) as this process. Killed and run
again, the sweep skips the runs already stored.
"""

from __future__ import annotations

import sys
from pathlib import Path

from distributed import Client, LocalCluster
from implicit_bias import sweep

HERE = Path(__file__).resolve().parent


def main(address: str | None = None) -> None:
    if address:
        client = Client(address)
    else:  # single-threaded workers: the engine's batching is the parallelism inside a task
        client = Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True))
    with client:
        spec, histories = sweep.run(HERE / "sweep.toml", executor=client.get_executor())
    print(f"{len(histories)} runs in {spec.store}")
    sweep.report(spec.store)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
