"""Run a chapter at the paper size; its sweeps are stored run by run (and resumed), and the
chapter writes its table to ``results/``.

    .venv/bin/python scripts/paper_results.py 08_hybrid                       # a GPU machine
    .venv/bin/python scripts/paper_results.py 08_hybrid --executor dask:tcp://host:8786

The chapter is executed top to bottom with ``IMPLICIT_BIAS_PROFILE=paper`` (every verdict
cell runs too, at the paper size). Every ``train`` call in it goes through the same
machinery as ``python -m implicit_bias sweep``: its runs are written to a run store
(``--store``, default ``~/.cache/implicit_bias/runs/<chapter>``) as their chunks finish,
runs already there are not trained again, so an interrupted paper run resumes where it
stopped when this command is run again; ``--executor`` (``processes:N``, ``dask-local:N``,
``dask:ADDRESS``) sends the chunks to other processes or machines. The chapter saves what
its paper-size figure needs with ``implicit_bias.store.Store.save``; commit the new file
under ``results/<chapter>/``. Old files of the same chapter (other configs or training
versions) are listed so that they can be removed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("chapter", help="a chapter's file name without .ipynb, e.g. 08_hybrid")
    parser.add_argument("--store", help="where the chapter's runs are stored (and resumed from)")
    parser.add_argument("--executor", help="processes:N, dask-local:N or dask:ADDRESS (default: the "
                        "chapter's own process)")
    args = parser.parse_args()
    path = ROOT / "chapters" / f"{args.chapter}.ipynb"
    if not path.exists():
        names = sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb"))
        sys.exit(f"No chapter {path}; choose one of {names}.")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    store = Path(args.store) if args.store else cache / "implicit_bias" / "runs" / args.chapter
    # The kernel inherits these: train() then stores, resumes and dispatches every sweep.
    os.environ.update(IMPLICIT_BIAS_PROFILE="paper", IMPLICIT_BIAS_STORE=str(store.resolve()))
    if args.executor:
        os.environ["IMPLICIT_BIAS_EXECUTOR"] = args.executor
    before = set((ROOT / "results" / args.chapter).glob("*.json"))
    start, wall = time.perf_counter(), time.time()
    print(f"{args.chapter} at the paper size; runs stored in {store}")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=None, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    written = sorted(p for p in (ROOT / "results" / args.chapter).glob("*.json") if p.stat().st_mtime >= wall)
    print(f"{args.chapter} at the paper size: {time.perf_counter() - start:.0f} s")
    for p in written:
        print(f"wrote {p.relative_to(ROOT)}")
    for p in sorted(before - set(written)):
        print(f"older file (another config or training version): {p.relative_to(ROOT)}")
    if not written:
        sys.exit("The chapter wrote no results file: does it call Store.save at the paper size?")


if __name__ == "__main__":
    main()
