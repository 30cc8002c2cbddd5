"""Run a chapter at the paper size; the chapter writes its results to ``results/``.

    .venv/bin/python scripts/paper_results.py 08_hybrid      # on a GPU machine

The chapter is executed top to bottom with ``IMPLICIT_BIAS_PROFILE=paper`` (every verdict
cell runs too, at the paper size); it saves what its paper-size figure needs with
``implicit_bias.store.Store.save``. Commit the new file under ``results/<chapter>/``; the
book then shows it beside the live default-size figure. Old files of the same chapter
(other versions or configs) are listed so that they can be removed.
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
    args = parser.parse_args()
    path = ROOT / "chapters" / f"{args.chapter}.ipynb"
    if not path.exists():
        names = sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb"))
        sys.exit(f"No chapter {path}; choose one of {names}.")
    os.environ["IMPLICIT_BIAS_PROFILE"] = "paper"
    before = set((ROOT / "results" / args.chapter).glob("*.json"))
    start, wall = time.perf_counter(), time.time()
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=None, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    written = sorted(p for p in (ROOT / "results" / args.chapter).glob("*.json") if p.stat().st_mtime >= wall)
    print(f"{args.chapter} at the paper size: {time.perf_counter() - start:.0f} s")
    for p in written:
        print(f"wrote {p.relative_to(ROOT)}")
    for p in sorted(before - set(written)):
        print(f"older file (another version or config): {p.relative_to(ROOT)}")
    if not written:
        sys.exit("The chapter wrote no results file: does it call Store.save at the paper size?")


if __name__ == "__main__":
    main()
