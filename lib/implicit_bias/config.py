"""One run-size switch and the numeric defaults.

``IMPLICIT_BIAS_PROFILE`` chooses the run size for every chapter:

* ``smoke`` — seconds per chapter, for the tests;
* ``book`` (default) — a few minutes per chapter on a laptop CPU, for building the book;
* ``paper`` — paper-scale runs, meant for a GPU.
"""

from __future__ import annotations

import os
import resource
import sys
from typing import TypeVar

import torch

PROFILES = ("smoke", "book", "paper")

#: float64 by default: theory experiments run to tiny losses and compare margins closely.
DTYPE = torch.float64


def profile() -> str:
    """The active run size, read from ``IMPLICIT_BIAS_PROFILE`` (default ``book``)."""
    name = os.environ.get("IMPLICIT_BIAS_PROFILE", "book").strip().lower()
    if name not in PROFILES:
        raise ValueError(
            f"IMPLICIT_BIAS_PROFILE={name!r} is not a run size; set it to one of {PROFILES}."
        )
    return name


_T = TypeVar("_T")


def sized(smoke: _T, book: _T, paper: _T | None = None) -> _T:
    """Pick the value for the active profile: ``sized(smoke=200, book=5000, paper=50000)``.
    ``paper`` defaults to ``book``."""
    return {"smoke": smoke, "book": book, "paper": book if paper is None else paper}[profile()]


#: The environment variable that caps every run's steps (a rehearsal of a run size).
MAX_STEPS_ENV = "IMPLICIT_BIAS_MAX_STEPS"


def max_steps() -> int | None:
    """The cap on every run's steps from ``IMPLICIT_BIAS_MAX_STEPS`` (None when unset): a
    rehearsal of the paper size on a CPU (``IMPLICIT_BIAS_PROFILE=paper
    IMPLICIT_BIAS_MAX_STEPS=3``) walks every chapter's code path, shapes, dtypes and
    solvers in a few steps, so a GPU run does not meet its first error after an hour. The
    verdicts cannot hold in 3 steps: ``scripts/rehearse.py`` tells their failures apart
    from errors."""
    raw = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not raw:
        return None
    if not (raw.isdigit() and int(raw) >= 1):
        raise ValueError(f"{MAX_STEPS_ENV}={raw!r} is not a positive integer (e.g. 3), or unset it.")
    return int(raw)


def device() -> torch.device:
    """CUDA when present, otherwise the CPU (override with ``IMPLICIT_BIAS_DEVICE``)."""
    name = os.environ.get("IMPLICIT_BIAS_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def free_memory(dev: torch.device) -> int:
    """Free bytes on ``dev``: CUDA's own count, or the system's available memory."""
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def peak_memory(dev: torch.device) -> int:
    """Peak bytes: CUDA's allocator peak on a GPU, the process's peak RSS on a CPU."""
    if dev.type == "cuda":
        return int(torch.cuda.max_memory_allocated(dev))
    scale = 1 if sys.platform == "darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale
