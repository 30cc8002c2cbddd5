"""Rehearse a run size on this machine: every chapter's code path at that size, each run cut
to a few steps.

    .venv/bin/python scripts/rehearse.py                       # paper size, 3 steps, every chapter
    .venv/bin/python scripts/rehearse.py --steps 5 chapters/02_steepest_descent.ipynb

The chapters run with ``IMPLICIT_BIAS_PROFILE`` (default ``paper``) and
``IMPLICIT_BIAS_MAX_STEPS`` (default 3), so their widths, data sizes, dtypes and solvers
are the paper size's while training takes seconds: a shape, dtype or memory error shows
here, not after an hour on a GPU. Each chapter is executed cell by cell in its own kernel.
A cell that fails its own ``assert`` (a verdict: it cannot hold after 3 steps) is counted
and the chapter goes on. A :class:`~implicit_bias.margins.NotSeparatingError` (runs cut
short have not separated the data, which a certificate needs) stops the chapter without
an error, and says which cells were not rehearsed (more ``--steps`` reach further). Any
other error (an assertion inside the library included) stops the chapter and is reported
with its cell.
Per chapter it prints the seconds, the failed verdicts and the peak memory of its kernel
(the paper size's models and data, held on the CPU). Exit status 1 if any chapter had an
error.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
PEAK = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"


def cell_name(index: int, cell: nbformat.NotebookNode) -> str:
    first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
    return f"cell {index} ({first[:60]!r})"


def raised_by_the_cell(err: CellExecutionError) -> bool:
    """Whether the error's innermost frame is the cell's own code (an ``assert`` there is a
    verdict), not a function it called (a library's assertion is an error)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # IPython colours its tracebacks
    frames = re.findall(r"^(Cell In\[\d+\]|File \S+)", text, re.MULTILINE)
    return bool(frames) and frames[-1].startswith("Cell In")


def rehearse(path: Path, timeout: int) -> dict:
    """Run one chapter cell by cell: ``{'seconds', 'verdicts' (failed asserts), 'error'
    (None, or the first other error with its cell), 'peak_mib'}``."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    out: dict = {"verdicts": 0, "error": None, "unseparated": None, "peak_mib": None}
    start = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as err:
                if err.ename == "AssertionError" and raised_by_the_cell(err):  # a verdict
                    out["verdicts"] += 1
                    continue
                if err.ename == "NotSeparatingError":  # a run cut short has not separated the data
                    out["unseparated"] = cell_name(index, cell)
                    break
                out["error"] = f"{cell_name(index, cell)}: {err.ename}: {err.evalue}"
                break
        probe = nbformat.v4.new_code_cell(PEAK)
        nb.cells.append(probe)
        client.execute_cell(probe, len(nb.cells) - 1)
        text = "".join(o.get("text", "") for o in probe.outputs if o.get("name") == "stdout").strip()
        out["peak_mib"] = int(text) / 1024 if text.isdigit() else None
    out["seconds"] = time.perf_counter() - start
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="notebooks (default: every chapter)")
    parser.add_argument("--profile", default="paper", choices=("smoke", "book", "paper"))
    parser.add_argument("--steps", type=int, default=3, help="the cap on every run's steps")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds a cell may take")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    os.environ["IMPLICIT_BIAS_PROFILE"] = args.profile  # the kernels inherit the environment
    os.environ["IMPLICIT_BIAS_MAX_STEPS"] = str(args.steps)
    chapters = args.chapters or sorted((ROOT / "chapters").glob("[0-9]*.ipynb"))
    errors = 0
    print(f"rehearsing the {args.profile} size, every run cut to {args.steps} steps")
    for path in chapters:
        result = rehearse(path, args.timeout)
        peak = "?" if result["peak_mib"] is None else f"{result['peak_mib']:,.0f} MiB"
        status = "ok" if result["error"] is None else f"ERROR in {result['error']}"
        if result["unseparated"]:
            status += (f" (stopped at {result['unseparated']}: its runs have not separated the data "
                       f"in {args.steps} steps; the cells after it were not rehearsed)")
        print(f"{path.name}: {result['seconds']:.0f} s, {result['verdicts']} verdict(s) failed "
              f"(expected after {args.steps} steps), peak memory {peak}: {status}", flush=True)
        errors += result["error"] is not None
    print(f"{len(chapters) - errors} of {len(chapters)} chapters ran without an error")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
