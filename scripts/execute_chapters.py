"""Execute the book's chapters into its execution cache, several at a time.

Jupyter Book executes notebooks one after another; on a machine with N cores this runs N
chapters at once (jupyter-cache's parallel executor, each kernel with its share of the
threads), then the build reads every chapter's outputs from the cache
(``execute_notebooks: cache`` in ``_config.yml``).

The cache is never stale. jupyter-cache keys a chapter by its code cells only, so a chapter
whose code changed runs again and a prose edit runs nothing; and the whole cache is emptied
when anything else a chapter's output depends on changes: the library's source, the pinned
requirements, the stored paper-size tables (``results/``), the ``IMPLICIT_BIAS_*``
environment (the run size, the device, the data) or the Python and torch versions
(:func:`inputs_key`). A chapter that fails is executed once more, alone (a kernel whose
reply was lost on a loaded machine once left a build waiting, idle, for its timeout); one
that fails again is reported with its traceback, exit status 1.

    .venv/bin/python scripts/execute_chapters.py      # run by scripts/build_book.sh
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
#: Where Jupyter Book looks for executed notebooks (myst-nb's default: next to the HTML).
CACHE = ROOT / "_build" / ".jupyter_cache"
#: Chapters by execution time at the book size (longest first, so they do not start last).
LONGEST_FIRST = ("08", "04", "06", "05", "02", "11", "12", "10", "03", "90", "07", "09", "01")


def chapters() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [ROOT / f"{c['file']}.ipynb" for part in toc["parts"] for c in part["chapters"]]
    files = [f for f in files if f.exists()]
    rank = {prefix: i for i, prefix in enumerate(LONGEST_FIRST)}
    return sorted(files, key=lambda f: rank.get(f.name[:2], len(rank)))


def inputs_key() -> str:
    """A hash of everything but a chapter's own code that its outputs depend on (torch's
    version read from its metadata: torch is not imported in the process that starts the
    workers)."""
    from importlib.metadata import version

    h = hashlib.sha256(f"{platform.python_version()} {version('torch')}".encode())
    files = [*sorted((ROOT / "lib").rglob("*.py")), ROOT / "requirements.txt", ROOT / "pyproject.toml",
             *sorted((ROOT / "results").rglob("*.json"))]
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith("IMPLICIT_BIAS_"))
    h.update(repr(env).encode())
    return h.hexdigest()


def cell_timeout() -> int:
    """Seconds a cell may run: 5 minutes at the smoke size (its cells take seconds), 30
    otherwise; ``BOOK_CELL_TIMEOUT`` overrides. A cell past it fails its chapter, which is
    then executed once more."""
    default = 300 if os.environ.get("IMPLICIT_BIAS_PROFILE") == "smoke" else 1800
    return int(os.environ.get("BOOK_CELL_TIMEOUT", default))


def main() -> int:
    from jupyter_cache import get_cache
    from jupyter_cache.executors import load_executor

    files = chapters()
    key, stamp = inputs_key(), CACHE / "inputs-key"
    if not (stamp.exists() and stamp.read_text() == key):
        shutil.rmtree(CACHE, ignore_errors=True)  # the library, data or run size changed: run all
    cache = get_cache(str(CACHE))
    for f in files:
        cache.add_nb_to_project(str(f))
    todo, cores = len(cache.list_unexecuted()), os.cpu_count() or 1
    # Each kernel inherits the environment: the pool runs up to one kernel per core.
    threads = max(1, cores // max(1, min(cores, todo)))
    os.environ["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS") or str(threads)
    start = time.perf_counter()
    # Fresh worker processes (spawn), not forks of this one: a forked client lost a kernel's
    # reply twice in smoke builds, leaving its chapter waiting, idle, for the timeout.
    multiprocessing.set_start_method("spawn", force=True)
    result = load_executor("local-parallel", cache).run_and_cache(timeout=cell_timeout())
    failed = [*result.excepted, *result.errored]
    if failed:  # once more, one at a time: a kernel whose reply was lost under load is not a failure
        print(f"{len(failed)} chapter(s) failed; executing them again, one at a time", file=sys.stderr)
        again = load_executor("local-serial", cache).run_and_cache(filter_uris=failed, timeout=cell_timeout())
        failed = [*again.excepted, *again.errored]
        result.succeeded.extend(again.succeeded)
    stamp.write_text(key)
    print(f"executed {len(result.succeeded)} of {todo} outdated chapters ({len(files)} in all) on {cores} "
          f"cores in {time.perf_counter() - start:.0f} s; the others' cached outputs are current")
    for uri in failed:
        record = cache.get_project_record(uri)
        print(f"\n{Path(uri).relative_to(ROOT)} failed:\n{record.traceback}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
