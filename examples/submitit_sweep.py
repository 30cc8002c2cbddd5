"""A sweep on a Slurm cluster through submitit: each chunk of compatible runs (one stack of
the batched engine) is one Slurm job; this process (on the login node, or in a small job of
its own) waits for them and stores the runs as their chunks finish.

    python examples/submitit_sweep.py --partition gpu      # on a Slurm cluster
    python examples/submitit_sweep.py --local              # the same through local processes
    python -m implicit_bias report examples/sweeps/example # the table and the figures

If this process is killed, run it again: runs already stored are skipped, and only the
chunks that had not come back are submitted again. Set ``max_batch`` (or the sweep file's
``max_batch``) so that one chunk is a reasonable job: the engine's default chunk fits
half of the *submitting* machine's free memory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import submitit
from implicit_bias import sweep

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--partition", help="the Slurm partition")
    parser.add_argument("--gpus", type=int, default=0, help="GPUs per job (the engine uses one)")
    parser.add_argument("--local", action="store_true", help="run the jobs as local processes")
    parser.add_argument("--sweep", default=str(HERE / "sweep.toml"), help="the sweep file")
    args = parser.parse_args()
    executor = submitit.AutoExecutor(folder=HERE / "submitit_logs", cluster="local" if args.local else None)
    executor.update_parameters(timeout_min=120, cpus_per_task=1, gpus_per_node=args.gpus)
    if args.partition:
        executor.update_parameters(slurm_partition=args.partition)
    spec, histories = sweep.run(args.sweep, executor=executor)
    print(f"{len(histories)} runs in {spec.store}")
    sweep.report(spec.store)


if __name__ == "__main__":
    main()
