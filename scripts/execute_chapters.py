"""Execute every chapter into the book's execution cache, several at a time.

Jupyter Book executes notebooks one after another; on a machine with N cores this runs N
chapters at once (jupyter-cache's parallel executor, each kernel with its share of the
threads), then the build reads every chapter's outputs from the cache
(``execute_notebooks: cache`` in ``_config.yml``). The cache is emptied first, so every
chapter runs again with the current library and run size: the cache keys only the
notebooks' code, not the library (a stale cache would show old results). A chapter that
fails is reported here with its traceback and the script exits 1.

    .venv/bin/python scripts/execute_chapters.py      # run by scripts/build_book.sh
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
#: Where Jupyter Book looks for executed notebooks (myst-nb's default: next to the HTML).
CACHE = ROOT / "_build" / ".jupyter_cache"
#: Chapters by execution time at the book size (longest first, so they do not start last).
LONGEST_FIRST = ("08", "04", "06", "02", "03", "05", "11", "10", "90", "07", "09", "01")


def chapters() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [ROOT / f"{c['file']}.ipynb" for part in toc["parts"] for c in part["chapters"]]
    files = [f for f in files if f.exists()]
    rank = {prefix: i for i, prefix in enumerate(LONGEST_FIRST)}
    return sorted(files, key=lambda f: rank.get(f.name[:2], len(rank)))


def main() -> int:
    from jupyter_cache import get_cache
    from jupyter_cache.executors import load_executor

    files = chapters()
    cores = os.cpu_count() or 1
    # Each kernel inherits the environment: the pool runs one kernel per core.
    os.environ["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS") or str(max(1, cores // len(files)))
    shutil.rmtree(CACHE, ignore_errors=True)
    cache = get_cache(str(CACHE))
    for f in files:
        cache.add_nb_to_project(str(f))
    start = time.perf_counter()
    result = load_executor("local-parallel", cache).run_and_cache(timeout=1800)
    print(f"executed {len(result.succeeded)} of {len(files)} chapters on {cores} cores in "
          f"{time.perf_counter() - start:.0f} s")
    failed = [*result.excepted, *result.errored]
    for uri in failed:
        record = cache.get_project_record(uri)
        print(f"\n{Path(uri).relative_to(ROOT)} failed:\n{record.traceback}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
