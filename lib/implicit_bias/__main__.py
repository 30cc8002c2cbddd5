"""The command line: ``python -m implicit_bias sweep FILE.toml`` and ``report STORE``.

    python -m implicit_bias sweep examples/sweep.toml              # train into its store
    python -m implicit_bias sweep examples/sweep.toml --executor dask-local:2
    python -m implicit_bias report examples/sweeps/example         # table + PNG figures

A sweep that is interrupted (Ctrl-C, a killed job) is resumed by the same command: the
runs already stored are skipped.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from .executors import Executor
    from .store import FailedRun, StoreError

os.environ.setdefault("MPLBACKEND", "Agg")  # the command line saves figures, it shows none


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m implicit_bias", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="on an error, show its traceback (before "
                        "the command: python -m implicit_bias --debug sweep FILE)")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep", help="train the runs of a TOML sweep file into a store (resumes)")
    s.add_argument("file", help="a sweep file (see examples/sweep.toml)")
    s.add_argument("--store", help="the store folder (default: the file's store)")
    s.add_argument("--profile", choices=("smoke", "book", "paper"), help="the run size (default: "
                   "IMPLICIT_BIAS_PROFILE, else book)")
    s.add_argument("--executor", help="processes:N, dask-local:N or dask:ADDRESS (default: this process)")
    s.add_argument("--max-batch", type=int, help="at most this many runs per stack")
    s.add_argument("--report", action="store_true", help="print the report when done")
    s.add_argument("--failures", choices=("return", "raise"), help="a run that fails: record it and go on "
                   "(return: the default, the summary lists it, exit status 1) or stop the sweep (raise)")
    s.add_argument("--allow", action="append", default=[], metavar="NAME",
                   help="trust code the store's files name beyond the library's: module:name or a "
                   "pattern such as 'mypkg.*' (repeatable; loading imports and runs it)")
    r = sub.add_parser("report", help="summarize a store: mean ± interval over seeds, and figures")
    r.add_argument("store", help="a store folder (the one holding runs/)")
    r.add_argument("--out", help="where to save the figures (default: STORE/report)")
    r.add_argument("--level", type=float, default=0.95, help="the confidence level (default 0.95)")
    r.add_argument("--no-figures", action="store_true", help="print the table only")
    r.add_argument("--allow", action="append", default=[], metavar="NAME",
                   help="trust code the store's files name beyond the library's: module:name or a "
                   "pattern such as 'mypkg.*' (repeatable; loading imports and runs it)")
    args = parser.parse_args(argv)
    return _as_message(lambda: _until_ctrl_c(lambda: _command(args)), debug=args.debug)


#: Errors whose message says what to change on its own; others are named by their type.
_SELF_EXPLAINED = (ValueError, TypeError, FileNotFoundError, MemoryError, ImportError)


def _as_message(command: Callable[[], int], debug: bool = False) -> int:
    """``command()``'s exit status; any error ends it with one message, ``error: …``, and
    status 2, with no traceback unless ``debug`` (``--debug``)."""
    try:
        return command()
    except Exception as err:  # noqa: BLE001 - every error becomes a message
        if debug:
            raise
        print(f"error: {_message(err)}", file=sys.stderr)
        return 2


def _message(err: Exception) -> str:
    """What went wrong and what to change, from an error of any kind."""
    text = str(err).strip()
    if isinstance(err, OSError) and not isinstance(err, FileNotFoundError) and err.strerror:
        where = f"{err.filename}: " if err.filename else ""
        fix = {errno.ENOSPC: "free some space, or choose another --store",
               errno.EFBIG: "free some space (or raise the file-size limit, ulimit -f), or choose another "
                            "--store",
               errno.EDQUOT: "free some space (your disk quota is full), or choose another --store",
               errno.EROFS: "choose a writable folder with --store",
               errno.EACCES: "choose a folder you may write to with --store"}.get(err.errno or 0, "")
        return f"{where}{err.strerror}" + (f": {fix}." if fix else ".")
    memory = "lower --max-batch, the model's width or the number of samples n"
    if isinstance(err, MemoryError) and not text:  # the allocator's own, with no message
        return f"out of memory: {memory}."
    if type(err).__name__ == "OutOfMemoryError":  # torch's, on a GPU
        return f"{text.splitlines()[0]} Out of GPU memory: {memory}."
    if not isinstance(err, _SELF_EXPLAINED):  # store.StoreError is a ValueError
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
        return f"{text} (run with --debug for the traceback)"
    return text or type(err).__name__


def _command(args: argparse.Namespace) -> int:
    from . import sweep

    if args.command == "sweep":
        return _sweep(args, sweep)
    # Files that cannot be trusted and runs that failed: listed after the table, exit status 1.
    skipped: list[StoreError] = []
    failed: list[FailedRun] = []
    try:
        sweep.report(args.store, out=args.out, level=args.level, figures=not args.no_figures,
                     allow=args.allow, errors=skipped, failed=failed)
    except ValueError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 1 if skipped or failed else 0


def _sweep(args: argparse.Namespace, sweep: ModuleType) -> int:
    """The sweep command: train, then one line per failed run. Exit status 0 when every
    run is stored, 1 when some failed (they are recorded; a rerun tries them again), 2 for
    a file or option that is wrong."""
    if args.profile:
        os.environ["IMPLICIT_BIAS_PROFILE"] = args.profile
    ex = sweep.executor(args.executor) if args.executor else None
    extra = {"max_batch": args.max_batch} if args.max_batch else {}
    if args.failures:
        extra["failures"] = args.failures
    try:
        spec, hists = sweep.run(args.file, store=args.store, executor=ex, **extra)
    except (ValueError, FileNotFoundError) as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _stop_workers(ex)
        raise
    except FloatingPointError as err:  # failures = "raise": a RunFailed, its stack's good runs stored
        if args.debug:
            raise
        print(f"error: {err}\nThe sweep stopped there (failures = 'raise'); the runs finished so far "
              "are stored, and a rerun resumes.", file=sys.stderr)
        return 1
    failed = getattr(hists, "failed", {})
    print(f"{len(hists) - len(failed)} runs stored in {spec.store}"
          + (f", {len(failed)} failed:" if failed else ""))
    for failure in failed.values():
        print(f"  {failure}")
    if failed:
        print("The failures are recorded in the store's failed/ folder; a rerun trains them again.")
    skipped: list[StoreError] = []
    if args.report:
        sweep.report(spec.store, allow=args.allow, errors=skipped)
    return 1 if skipped or failed else 0


def _stop_workers(executor: Executor | None) -> None:
    """After Ctrl-C, end a process pool's workers now, not once their chunks finish (a
    terminal's Ctrl-C reaches them too; ``kill -INT`` reaches only this process)."""
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        process.terminate()
    if executor is not None and hasattr(executor, "shutdown"):
        executor.shutdown(wait=False, cancel_futures=True)


def _until_ctrl_c(command: Callable[[], int]) -> int:
    """``command()``'s exit status; Ctrl-C ends it with one line and status 130. The
    handler notes the signal, so an interrupt that some library swallowed still ends so."""
    from .train import SweepInterrupted

    caught: list[int] = []

    def on_ctrl_c(signum: int, frame: FrameType | None) -> NoReturn:
        caught.append(signum)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, on_ctrl_c)
    except ValueError:  # not the main thread: signals stay as they are
        previous = None
    try:
        status = command()
    except KeyboardInterrupt as err:
        print(str(err) if isinstance(err, SweepInterrupted) else "interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if caught:
        print("interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
