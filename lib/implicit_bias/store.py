"""Stored results of paper-size sweeps: small JSON files keyed by the runs and the version.

A paper-size sweep needs a GPU; a reader building the book on a laptop should still see
its result beside the live default-size one. A chapter saves what its figure needs (a
table of final margins, not whole histories) at the paper size with :meth:`Store.save`,
and loads it at any size with :meth:`Store.load`. A file's name is a hash of the sweep's
run configs and the library version, so a changed sweep or a new version never shows a
stale result: it is simply not found.

    results/<chapter>/<key>.json = {"chapter", "key", "version", "runs": [Run.config()],
                                    "data", "results": {...}, "device", "created", "seconds"}

``scripts/paper_results.py CHAPTER`` runs a chapter at the paper size, which writes its
file; :func:`check` is what CI runs on every stored file.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from pathlib import Path

#: Stored files together stay below this (they live in the repository).
MAX_TOTAL_BYTES = 5 * 2**20


def _version() -> str:
    from . import __version__

    return __version__


def _configs(runs) -> list[dict]:
    # Through JSON so that tuples and lists (betas) hash alike before and after a round trip.
    return json.loads(json.dumps([r.config() if hasattr(r, "config") else dict(r) for r in runs]))


def key(runs, data: dict, version: str | None = None) -> str:
    """The hash that names a sweep's file: its run configs, a description of its data
    (``data``, e.g. ``{"set": "digits_even_odd", "n": None}``: the runs only name it) and
    the library version."""
    text = json.dumps({"runs": _configs(runs), "data": data, "version": version or _version()},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Store:
    """The results directory (``results/`` at the repository root)."""

    def __init__(self, root):
        self.root = Path(root)

    def path(self, chapter: str, runs, data: dict) -> Path:
        return self.root / chapter / f"{key(runs, data)}.json"

    def save(self, chapter: str, runs, data: dict, results: dict, device: str = "",
             seconds: float = 0.0) -> Path:
        """Write ``results`` (JSON-serializable, small) for the sweep ``runs`` on ``data``."""
        entry = {"chapter": chapter, "key": key(runs, data), "version": _version(),
                 "runs": _configs(runs), "data": data, "results": results, "device": device,
                 "seconds": round(float(seconds), 1), "created": datetime.date.today().isoformat()}
        path = self.path(chapter, runs, data)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")
        return path

    def load(self, chapter: str, runs, data: dict) -> dict | None:
        """The stored entry of the sweep ``runs`` on ``data`` at this version, or None."""
        path = self.path(chapter, runs, data)
        return json.loads(path.read_text()) if path.exists() else None

    def files(self) -> list[Path]:
        return sorted(self.root.glob("*/*.json"))


def check(path) -> dict:
    """Raise ``ValueError`` unless the stored file loads, is named by its own key, and
    its run configs are valid :class:`train.Run` configs of the current code (no missing
    or unknown fields, values the constructor accepts). Returns the entry."""
    from .train import Run

    path = Path(path)
    entry = json.loads(path.read_text())
    missing = {"chapter", "key", "version", "runs", "data", "results"} - set(entry)
    if missing:
        raise ValueError(f"{path}: missing fields {sorted(missing)}.")
    fields = {f.name for f in dataclasses.fields(Run)}
    for config in entry["runs"]:
        if set(config) != fields:
            raise ValueError(f"{path}: a run config has fields {sorted(set(config) ^ fields)} that "
                             "the current Run does not (or lacks); re-run scripts/paper_results.py.")
        Run(**config)
    if key(entry["runs"], entry["data"], entry["version"]) != entry["key"] or path.stem != entry["key"]:
        raise ValueError(f"{path}: its name and key do not match its runs and version.")
    if path.parent.name != entry["chapter"]:
        raise ValueError(f"{path}: stored under {path.parent.name!r} but written by {entry['chapter']!r}.")
    return entry


__all__ = ["Store", "key", "check", "MAX_TOTAL_BYTES"]
