"""The command line: ``python -m implicit_bias sweep FILE.toml`` and ``report STORE``.

    python -m implicit_bias sweep examples/sweep.toml              # train into its store
    python -m implicit_bias sweep examples/sweep.toml --executor dask-local:2
    python -m implicit_bias report examples/sweeps/example         # table + PNG figures

A sweep that is interrupted (Ctrl-C, a killed job) is resumed by the same command: the
runs already stored are skipped.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("MPLBACKEND", "Agg")  # the command line saves figures, it shows none


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m implicit_bias", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep", help="train the runs of a TOML sweep file into a store (resumes)")
    s.add_argument("file", help="a sweep file (see examples/sweep.toml)")
    s.add_argument("--store", help="the store folder (default: the file's store)")
    s.add_argument("--profile", choices=("smoke", "book", "paper"), help="the run size (default: "
                   "IMPLICIT_BIAS_PROFILE, else book)")
    s.add_argument("--executor", help="processes:N, dask-local:N or dask:ADDRESS (default: this process)")
    s.add_argument("--max-batch", type=int, help="at most this many runs per stack")
    s.add_argument("--report", action="store_true", help="print the report when done")
    r = sub.add_parser("report", help="summarize a store: mean ± interval over seeds, and figures")
    r.add_argument("store", help="a store folder (the one holding runs/)")
    r.add_argument("--out", help="where to save the figures (default: STORE/report)")
    r.add_argument("--level", type=float, default=0.95, help="the confidence level (default 0.95)")
    r.add_argument("--no-figures", action="store_true", help="print the table only")
    args = parser.parse_args(argv)

    from . import sweep

    if args.command == "sweep":
        if args.profile:
            os.environ["IMPLICIT_BIAS_PROFILE"] = args.profile
        ex = sweep.executor(args.executor) if args.executor else None
        extra = {"max_batch": args.max_batch} if args.max_batch else {}
        try:
            spec, hists = sweep.run(args.file, store=args.store, executor=ex, **extra)
        except (ValueError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{len(hists)} runs stored in {spec.store}")
        if args.report:
            sweep.report(spec.store)
        return 0
    try:
        sweep.report(args.store, out=args.out, level=args.level, figures=not args.no_figures)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
