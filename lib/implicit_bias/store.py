"""Results on disk: every run of a sweep as it finishes, and the chapters' paper-size tables.

Two kinds of file, both in open formats and both named by a hash of what produced them:

* :class:`RunStore` — one file per run, ``<root>/runs/<key>.npz``: a plain zip holding
  ``config.json`` (the run config, the data's fingerprint, the training settings, the
  versions) and one ``.npy`` array per logged series (steps, log-loss, parameter norm,
  each margin, optional directions, the final parameters, what ``observe`` logged).
  ``unzip`` and any NPY reader open it; :meth:`RunStore.load` reads it back into the same
  :class:`History`. ``train(runs, data, store=...)`` writes each finished chunk and skips
  runs already stored, so an interrupted sweep resumes where it stopped.
* :class:`Store` — the chapters' paper-size tables (small JSON files under ``results/``).

**What a key contains, and why.** A run's key hashes its config, the data (a SHA-256 of
the float64 bytes of ``X`` and ``y``, not their name), the training settings (norms, log
points, frame, directions, engine, observer) and :data:`train.TRAINING_VERSION`, the
version of *what training computes*, bumped only by a change that alters a history. The
package version is recorded in each file but is not in the key: a release that does not
touch training keeps every stored result found, and one that does makes them not found
(never stale). :data:`FORMAT` is the file layout's version.

Every file is validated when it is read: a file that is not a zip of the right layout,
whose content does not hash to its name, whose arrays disagree in length or type, or
written by another format or training version, raises :class:`StoreError` naming it.
Files are written to a temporary name and renamed (atomic on POSIX), so a kill leaves
either the whole file or none.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

#: The layout of a stored run file; bumped when the layout changes.
FORMAT = 1

#: Stored table files together stay below this (they live in the repository).
MAX_TOTAL_BYTES = 5 * 2**20


class StoreError(ValueError):
    """A stored file that cannot be trusted: the message names the file and what is wrong."""


def _training_version() -> int:
    from .train import TRAINING_VERSION

    return TRAINING_VERSION


def _library_version() -> str:
    from . import __version__

    return __version__


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename,
    so that a reader (or a resumed sweep) sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:20]


# --- run configs as JSON ------------------------------------------------------------------


def _encode(value):
    """A run config's value as JSON: an optimizer class or a model factory by its import
    path (``{"import": "module:qualname"}``), tuples as lists."""
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if callable(value):
        encoded = {"import": f"{getattr(value, '__module__', None)}:{getattr(value, '__qualname__', '')}"}
        try:  # a name that does not import back to this very object would store a wrong run
            found = _decode(encoded) is value
        except Exception:
            found = False
        if not found:
            raise TypeError(f"{value!r} cannot be stored by name: define it at the top level of an "
                            "importable module (not a lambda, a local function or a generated "
                            "class) to store its runs.")
        return encoded
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def _decode(value):
    if isinstance(value, dict):
        if set(value) == {"import"}:
            module, _, qualname = value["import"].partition(":")
            obj = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            return obj
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def norm_key(norm) -> str:
    """A norm in a store key: its name, or its class and a hash of all its attributes (a
    Mahalanobis matrix, hybrid weights) — its ``repr`` abbreviates them."""
    if isinstance(norm, str):
        return norm
    digest = hashlib.sha256()
    for name, value in sorted(vars(norm).items()):
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        data = value.tobytes() if isinstance(value, np.ndarray) else repr(value).encode()
        digest.update(name.encode() + data)
    return f"{type(norm).__module__}:{type(norm).__qualname__}:{digest.hexdigest()[:16]}"


def run_config(run) -> dict:
    """``run.config()`` as JSON (see :func:`_encode`)."""
    return json.loads(json.dumps(_encode(run.config() if hasattr(run, "config") else dict(run))))


def data_fingerprint(X, y) -> str:
    """A SHA-256 of the data as float64 (shapes and bytes): the same data give the same
    fingerprint whatever they are called, other data another."""
    h = hashlib.sha256()
    for a in (X, y):
        a = a.detach().cpu().to(torch.float64).contiguous().numpy() if torch.is_tensor(a) else \
            np.ascontiguousarray(np.asarray(a, dtype=np.float64))
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


# --- one file per run ---------------------------------------------------------------------


def run_key(config: dict, data: str, settings: dict, training_version: int | None = None) -> str:
    """The name of a run's file: a hash of its JSON config, its data's :func:`data_fingerprint`,
    the training ``settings`` and the training version (not the package version)."""
    tv = _training_version() if training_version is None else training_version
    return _hash({"run": config, "data": data, "settings": settings, "training_version": tv})


_SERIES = ("steps", "log_loss", "param_norm")


class RunStore:
    """A folder of stored runs (``<root>/runs/<key>.npz``), for one sweep or many."""

    def __init__(self, root):
        self.root = Path(root)
        self.folder = self.root / "runs"

    @classmethod
    def of(cls, store) -> RunStore:
        return store if isinstance(store, RunStore) else cls(store)

    def __repr__(self):
        return f"RunStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def has(self, key: str) -> bool:
        return self.path(key).exists()

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.npz"))

    def __len__(self):
        return len(self.keys())

    def save(self, key: str, history, data: str, settings: dict, input_dim, device: str = "") -> Path:
        """Write ``history`` (its run on data ``data``, of ``input_dim`` features, trained
        with ``settings``) as ``key``'s file."""
        config = run_config(history.run)
        if run_key(config, data, settings) != key:
            raise ValueError(f"key {key} is not the key of run {history.run.label!r} with these settings.")
        params = [p.detach().cpu() for p in history.model.parameters()]
        arrays = {"steps": np.asarray(history.steps, dtype=np.int64),
                  "log_loss": history.log_loss, "param_norm": history.param_norm,
                  "directions": np.asarray(history.directions, dtype=np.float64),
                  "direction_steps": np.asarray(history.steps if history.direction_steps is None
                                                else history.direction_steps, dtype=np.int64),
                  "parameters": torch.cat([p.reshape(-1) for p in params]).to(torch.float64).numpy()}
        margins, observed = list(history.margins), list(history.observed)
        for i, name in enumerate(margins):
            arrays[f"margin_{i}"] = history.margins[name]
        for i, name in enumerate(observed):
            arrays[f"observed_{i}"] = history.observed[name]
        meta = {"format": FORMAT, "key": key, "training_version": _training_version(),
                "library_version": _library_version(), "run": config, "data": data,
                "settings": settings, "margins": margins, "observed": observed,
                "input_dim": _encode(input_dim), "dtype": str(params[0].dtype).removeprefix("torch."),
                "seconds": float(history.seconds), "engine": _encode(history.engine),
                "device": device, "created": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("config.json", json.dumps(meta, indent=1, sort_keys=True))
            for name, a in arrays.items():
                with z.open(f"{name}.npy", "w") as f:
                    np.lib.format.write_array(f, np.asarray(a), allow_pickle=False)
        path = self.path(key)
        _atomic_write(path, buffer.getvalue())
        return path

    def meta(self, key_or_path) -> dict:
        """A stored run's ``config.json``, validated against its name (not its arrays)."""
        path = self._path(key_or_path)
        try:
            with zipfile.ZipFile(path) as z:
                return self._meta(path, z)
        except (zipfile.BadZipFile, OSError) as err:
            raise StoreError(f"{path}: not a readable stored run ({err}).") from None

    def _path(self, key_or_path) -> Path:
        p = Path(key_or_path)
        return p if p.suffix == ".npz" else self.path(str(key_or_path))

    def _meta(self, path: Path, z: zipfile.ZipFile) -> dict:
        try:
            meta = json.loads(z.read("config.json"))
        except (KeyError, ValueError) as err:
            raise StoreError(f"{path}: no valid config.json ({err}).") from None
        if not isinstance(meta, dict):
            raise StoreError(f"{path}: config.json holds a {type(meta).__name__}, not a stored run.")
        missing = {"format", "key", "training_version", "run", "data", "settings", "margins",
                   "observed", "input_dim", "dtype"} - set(meta)
        if missing:
            raise StoreError(f"{path}: config.json lacks {sorted(missing)}.")
        if meta["format"] != FORMAT:
            raise StoreError(f"{path}: written in store format {meta['format']}, this code reads {FORMAT}.")
        if meta["training_version"] != _training_version():
            raise StoreError(f"{path}: written by training version {meta['training_version']}, this "
                             f"code trains as version {_training_version()}; train the run again.")
        if meta["key"] != path.stem or run_key(meta["run"], meta["data"], meta["settings"]) != path.stem:
            raise StoreError(f"{path}: its content does not hash to its name (another sweep's file, "
                             "or an edited one).")
        return meta

    def load(self, key_or_path, expected: str | None = None):
        """The stored run as a :class:`History` (its model rebuilt from the stored
        parameters), every part checked; ``expected`` is the key the caller asked for."""
        from .runs import DTYPES, History, Run

        path = self._path(key_or_path)
        if expected is not None and path.stem != expected:
            raise StoreError(f"{path}: asked for run {expected}.")
        try:
            with zipfile.ZipFile(path) as z:
                meta = self._meta(path, z)
                names = set(z.namelist())
                arrays = {}
                need = [*_SERIES, "directions", "direction_steps", "parameters",
                        *(f"margin_{i}" for i in range(len(meta["margins"]))),
                        *(f"observed_{i}" for i in range(len(meta["observed"])))]
                for name in need:
                    if f"{name}.npy" not in names:
                        raise StoreError(f"{path}: the array {name}.npy is missing.")
                    with z.open(f"{name}.npy") as f:
                        arrays[name] = np.lib.format.read_array(f, allow_pickle=False)
        except (zipfile.BadZipFile, OSError, ValueError) as err:
            if isinstance(err, StoreError):
                raise
            raise StoreError(f"{path}: not a readable stored run ({err}).") from None
        steps = arrays["steps"]
        n = len(steps)
        series = ["log_loss", "param_norm", *(f"margin_{i}" for i in range(len(meta["margins"])))]
        if steps.ndim != 1 or steps.dtype.kind != "i" or n == 0 or np.any(np.diff(steps) <= 0):
            raise StoreError(f"{path}: steps must be a non-empty increasing integer vector.")
        for name in series:
            if arrays[name].shape != (n,) or arrays[name].dtype != np.float64:
                raise StoreError(f"{path}: {name} has shape {arrays[name].shape} and type "
                                 f"{arrays[name].dtype}, not ({n},) float64.")
        d, ds = arrays["directions"], arrays["direction_steps"]
        if d.ndim != 2 or d.shape[0] != len(ds) or not set(ds.tolist()) <= set(steps.tolist()):
            raise StoreError(f"{path}: directions have shape {d.shape} for {len(ds)} direction steps.")
        try:
            run = Run(**_decode(meta["run"]))
        except (TypeError, ValueError, KeyError, AttributeError, ImportError) as err:
            raise StoreError(f"{path}: its run config does not fit the current code: {err}") from None
        if isinstance(run.options.get("betas"), list):
            run.options["betas"] = tuple(run.options["betas"])
        dtype = DTYPES[meta["dtype"]] if meta["dtype"] in DTYPES else torch.float64
        dim = meta["input_dim"]
        model = run.build_model(tuple(dim) if isinstance(dim, list) else dim, dtype)
        vector = torch.as_tensor(arrays["parameters"], dtype=dtype)
        if vector.numel() != sum(p.numel() for p in model.parameters()):
            raise StoreError(f"{path}: {vector.numel()} stored parameters for a model with "
                             f"{sum(p.numel() for p in model.parameters())}.")
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(vector, list(model.parameters()))
        return History(
            run=run, steps=steps, log_loss=arrays["log_loss"],
            margins={name: arrays[f"margin_{i}"] for i, name in enumerate(meta["margins"])},
            param_norm=arrays["param_norm"], directions=d, model=model,
            seconds=float(meta.get("seconds", 0.0)),
            observed={name: arrays[f"observed_{i}"] for i, name in enumerate(meta["observed"])},
            engine=meta.get("engine", {}),
            direction_steps=None if np.array_equal(ds, steps) else ds)

    def histories(self):
        """Every stored run, loaded one at a time (memory stays that of one run)."""
        for key in self.keys():
            yield self.load(key)


class StoredHistories(Sequence):
    """What ``train(..., store=...)`` returns: the sweep's histories in the order of its
    runs, each read from the store when it is used (so a long sweep is not held in
    memory); a run that failed under ``failures='return'`` is its :class:`RunFailed`."""

    def __init__(self, store: RunStore, keys, failed: dict):
        self.store, self.keys, self.failed = store, list(keys), dict(failed)

    def __len__(self):
        return len(self.keys)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        if i in self.failed:
            return self.failed[i]
        return self.store.load(self.keys[i], expected=self.keys[i])

    def __repr__(self):
        return f"StoredHistories({len(self)} runs in {self.store.root})"


# --- chapters' paper-size tables ----------------------------------------------------------


def _configs(runs) -> list[dict]:
    # Through JSON so that tuples and lists (betas) hash alike before and after a round trip.
    return [run_config(r) for r in runs]


def key(runs, data: dict, version: int | None = None) -> str:
    """The hash that names a table file: its run configs, a description of its data
    (``data``, e.g. ``{"set": "digits_even_odd", "n": None}``: the runs only name it) and
    the training version ``version`` (default :data:`train.TRAINING_VERSION`; not the
    package version, so a release that does not change training keeps the table found)."""
    tv = _training_version() if version is None else version
    text = json.dumps({"runs": _configs(runs), "data": data, "training_version": tv}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Store:
    """The chapters' results directory (``results/`` at the repository root): one small
    JSON table per paper-size sweep, ``results/<chapter>/<key>.json``."""

    def __init__(self, root):
        self.root = Path(root)

    def path(self, chapter: str, runs, data: dict) -> Path:
        return self.root / chapter / f"{key(runs, data)}.json"

    def save(self, chapter: str, runs, data: dict, results: dict, device: str = "",
             seconds: float = 0.0) -> Path:
        """Write ``results`` (JSON-serializable, small) for the sweep ``runs`` on ``data``."""
        entry = {"chapter": chapter, "key": key(runs, data), "training_version": _training_version(),
                 "version": _library_version(), "runs": _configs(runs), "data": data,
                 "results": results, "device": device, "seconds": round(float(seconds), 1),
                 "created": datetime.date.today().isoformat()}
        path = self.path(chapter, runs, data)
        _atomic_write(path, (json.dumps(entry, indent=1, sort_keys=True) + "\n").encode())
        return path

    def load(self, chapter: str, runs, data: dict) -> dict | None:
        """The stored table of the sweep ``runs`` on ``data`` at this training version, or
        None; a file at that name that is not that table raises :class:`StoreError`."""
        path = self.path(chapter, runs, data)
        if not path.exists():
            return None
        entry = check(path)
        if entry["runs"] != _configs(runs) or entry["data"] != json.loads(json.dumps(data)):
            raise StoreError(f"{path}: holds another sweep's table.")
        return entry

    def files(self) -> list[Path]:
        return sorted(self.root.glob("*/*.json"))


def check(path) -> dict:
    """Raise :class:`StoreError` unless the stored table loads, is named by its own key, was
    written at the current training version, and its run configs are valid :class:`train.Run`
    configs of the current code (no missing or unknown fields, values the constructor
    accepts). Returns the entry."""
    from .train import Run

    path = Path(path)
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise StoreError(f"{path}: not a readable JSON table ({err}).") from None
    if not isinstance(entry, dict):
        raise StoreError(f"{path}: holds a {type(entry).__name__}, not a stored table.")
    missing = {"chapter", "key", "training_version", "version", "runs", "data", "results"} - set(entry)
    if missing:
        raise StoreError(f"{path}: missing fields {sorted(missing)}.")
    fields = {f.name for f in dataclasses.fields(Run)}
    for config in entry["runs"]:
        if set(config) != fields:
            raise StoreError(f"{path}: a run config has fields {sorted(set(config) ^ fields)} that "
                             "the current Run does not (or lacks); re-run scripts/paper_results.py.")
        try:
            Run(**_decode(config))
        except (TypeError, ValueError, KeyError, AttributeError, ImportError) as err:
            raise StoreError(f"{path}: {err}") from None
    if entry["training_version"] != _training_version():
        raise StoreError(f"{path}: written at training version {entry['training_version']}, the code "
                         f"trains as version {_training_version()}; re-run scripts/paper_results.py.")
    named = key(entry["runs"], entry["data"], entry["training_version"])
    if named != entry["key"] or path.stem != entry["key"]:
        raise StoreError(f"{path}: its name and key do not match its runs and training version.")
    if path.parent.name != entry["chapter"]:
        raise StoreError(f"{path}: stored under {path.parent.name!r} but written by {entry['chapter']!r}.")
    return entry


__all__ = ["Store", "RunStore", "StoredHistories", "StoreError", "key", "run_key", "run_config",
           "data_fingerprint", "check", "FORMAT", "MAX_TOTAL_BYTES"]
