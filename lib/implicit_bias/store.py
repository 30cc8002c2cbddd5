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
points, frame, directions, engine, observer) and :data:`runs.TRAINING_VERSION`, the
version of *what training computes*, bumped only by a change that alters a history. The
package version is recorded in each file but is not in the key: a release that does not
touch training keeps every stored result found, and one that does makes them not found
(never stale). :data:`FORMAT` is the file layout's version.

Every file is validated when it is read: a file that is not a zip of the right layout,
whose content does not hash to its name, whose fields or arrays have the wrong type or
length, or written by another format or training version, raises :class:`StoreError`
naming it. Files are written to a temporary name and renamed (atomic on POSIX), so a kill
leaves either the whole file or none; leftover temporary files are removed when a sweep
next opens the store.

**A stored file is data, not code.** A run config may name code by its import path (an
optimizer class, a model factory, an observer), and anyone can write a file that hashes to
its own name. So a name is resolved only if the library registers it
(:func:`library_names`), this process stored it (the user's own objects), or the user
allows it (``RunStore(root, allow=["mypkg.models:make_net", "mypkg.*"])``, ``--allow``);
nothing is imported before that check. A damaged file met on resume is moved to
``<root>/quarantine/`` and its run trained again (:meth:`RunStore.verified`); the report
and :meth:`RunStore.histories` skip and list damaged or stale files.
"""

from __future__ import annotations

import dataclasses
import datetime
import fnmatch
import hashlib
import importlib
import io
import itertools
import json
import math
import os
import re
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, overload

import numpy as np
import numpy.typing as npt
import torch

if TYPE_CHECKING:
    from .history import History, RunFailed
    from .norms import Norm
    from .runs import Run

#: A value read from JSON (a stored file's): anything until it is checked where it is used.
JSON: TypeAlias = Any
#: Where a message says the trouble is: a file, or words such as ``"a stored file"``.
Where = Path | str
#: Names or patterns of code a store may import (see :func:`allowed`): one, several, or none.
Allow = str | Iterable[str] | None
#: A store: a :class:`RunStore` or its folder.
StoreLike: TypeAlias = "RunStore | str | os.PathLike[str]"
#: A field's check and what it expects, for the tables of fields below.
FieldCheck = tuple[Callable[[Any], bool], str]
#: A unit of a sweep (:func:`train.chunks`): indices into its runs, and why it goes to the
#: reference loop (None: batched).
Chunk = tuple[Sequence[int], str | None]

#: The layout of a stored run file; bumped when the layout changes.
FORMAT = 1

#: Stored table files together stay below this (they live in the repository).
MAX_TOTAL_BYTES = 5 * 2**20


#: Bounds on what a stored file may describe: an input of at most this many features (in
#: at most 8 axes), a model of at most this many parameters.
MAX_FEATURES = 2**26
MAX_PARAMETERS = 2**28

#: Temporary files older than this (seconds) are a killed writer's, and are removed.
TMP_AGE = 600


class StoreError(ValueError):
    """A stored file that cannot be trusted: the message (one line) names the file and what
    is wrong."""

    def __init__(self, message: object = "") -> None:
        super().__init__(" ".join(str(message).split()))


class StoreWarning(UserWarning):
    """A damaged stored file moved aside, or files a report skipped."""


def _training_version() -> int:
    from . import runs

    return runs.TRAINING_VERSION


def _library_version() -> str:
    from . import __version__

    return __version__


#: The permissions of a new file: what the process's umask allows (tempfile's are 0600,
#: which a store shared with a group or with other workers could not read).
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename,
    so that a reader (or a resumed sweep) sees the whole file or none."""
    _atomic_writes([(path, data)])


def _atomic_writes(files: Sequence[tuple[Path, bytes]]) -> None:
    """:func:`_atomic_write` of several files, made durable together: each is written to a
    temporary file, then all are flushed to disk, then each is renamed into place and each
    folder flushed once. A kill or a full disk leaves every file whole or absent."""
    temps: list[str] = []
    current = Path()  # the file being written, flushed or renamed: an error names it
    try:
        for current, data in files:
            current.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{current.name}.", suffix=".tmp", dir=current.parent)
            temps.append(tmp)
            with os.fdopen(fd, "wb") as f:
                if hasattr(os, "fchmod"):  # POSIX
                    os.fchmod(f.fileno(), _FILE_MODE)
                f.write(data)
        for i, tmp in enumerate(temps):  # after all the writes: one go for the disk
            current = files[i][0]
            _fsync(tmp, os.O_RDONLY)
        for i, tmp in enumerate(temps):
            current = files[i][0]
            os.replace(tmp, current)
    except BaseException as err:
        for tmp in temps:
            Path(tmp).unlink(missing_ok=True)  # no half-written file stays (a full disk, a kill)
        if isinstance(err, OSError) and err.errno is not None and err.filename is None:
            # a failed write names no file: name the one it was for (the store, for its user)
            raise OSError(err.errno, err.strerror, str(current)) from err
        raise
    for folder in {path.parent for path, _ in files}:
        _fsync(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))  # the renames themselves


def _fsync(path: str | Path, flags: int) -> None:
    try:
        fd = os.open(path, flags)
    except OSError:
        if Path(path).is_dir():
            return  # a folder that cannot be opened (Windows): its renames are the OS's to keep
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not Path(path).is_dir():
            raise
    finally:
        os.close(fd)


def _hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:20]


# --- names in a stored file: the library's, the user's own, or allowed --------------------

# A run config names code (an optimizer class, a model factory) and loading calls it; a
# file's name is a hash anyone can recompute. So a stored name is resolved only when the
# library registers it, this process stored it, or the user allows it, and nothing is
# imported before that check: importing a module runs its code.

_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")

#: Objects this process stored by name: the user's own factories, classes and observers.
_ENCODED: dict[str, Callable[..., object]] = {}


def _name_of(obj: object) -> str:
    return f"{getattr(obj, '__module__', None)}:{getattr(obj, '__qualname__', '')}"


def _import(name: str) -> Any:  # whatever the name is: a class, a function, a module
    """The object at ``module:qualname``; imports the module, so only for trusted names."""
    module, _, qualname = name.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def library_names() -> dict[str, type]:
    """The names a stored file may use without being allowed, by import path: the optimizer
    classes of :data:`optim.OPTIMIZERS` (with any added by :func:`optim.register`) and of
    ``torch.optim``, and the model classes of :mod:`implicit_bias.models`."""
    from . import models, optim

    classes = [*optim.OPTIMIZERS.values(),
               *(c for c in vars(torch.optim).values()
                 if isinstance(c, type) and issubclass(c, torch.optim.Optimizer)),
               *(c for c in vars(models).values()
                 if isinstance(c, type) and issubclass(c, models.HomogeneousModel))]
    return {_name_of(c): c for c in classes}


def allowed(name: str, allow: Iterable[str]) -> bool:
    """Whether ``name`` (``module:qualname``) matches one of the ``allow`` patterns: a whole
    name (``'mypkg.models:make_net'``) or a glob over names or modules (``'mypkg.*'``: the
    package ``mypkg`` and everything in it)."""
    module = name.partition(":")[0]
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(module, p)
               or (p.endswith(".*") and module == p[:-2]) for p in allow)


def _allow(allow: Allow) -> tuple[str, ...]:
    allow = (allow,) if isinstance(allow, str) else tuple(allow or ())
    if not all(isinstance(p, str) and p.strip() for p in allow):
        raise TypeError("allow must hold names such as 'mypkg.models:make_net' or patterns such as "
                        f"'mypkg.*', got {allow!r}.")
    return allow


def _short(value: object, size: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= size else text[:size] + "…"


def _valid_name(where: Where, name: object) -> str:
    if isinstance(name, str) and len(name) <= 300 and _NAME.fullmatch(name):
        return name
    raise StoreError(f"{where}: {_short(name)} is not an import path module:name.")


def _refused(where: Where, name: str) -> StoreError:
    return StoreError(f"{where}: names {name!r}, which the library does not register; loading it "
                      "would import and run that code. If you trust this file, allow it: "
                      f"RunStore(root, allow=[{name!r}]) or --allow {name}.")


def _resolve(where: Where, name: object, allow: Iterable[str] = ()) -> Any:
    """The object a stored ``{"import": name}`` stands for, if it may be trusted."""
    name = _valid_name(where, name)
    if name in _ENCODED:
        return _ENCODED[name]
    known = library_names()
    if name in known:
        return known[name]
    if not allowed(name, allow):
        raise _refused(where, name)
    try:
        return _import(name)
    except Exception as err:  # the user's own module: whatever it raises is about it
        raise StoreError(f"{where}: the allowed name {name!r} does not import "
                         f"({type(err).__name__}: {err}).") from None


# --- run configs as JSON ------------------------------------------------------------------


def _encode(value: object) -> object:
    """A run config's value as JSON: an optimizer class or a model factory by its import
    path (``{"import": "module:qualname"}``), tuples as lists."""
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if callable(value):
        name = _name_of(value)
        try:  # a name that does not import back to this very object would store a wrong run
            found = _NAME.fullmatch(name) is not None and _import(name) is value
        except Exception:
            found = False
        if not found:
            raise TypeError(f"{value!r} cannot be stored by name: define it at the top level of an "
                            "importable module (not a lambda, a local function or a generated "
                            "class) to store its runs.")
        _ENCODED[name] = value  # the user's own object: this process may read it back
        return {"import": name}
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def _decode(value: JSON, where: Where = "a stored file", allow: Iterable[str] = ()) -> Any:
    """A stored config's JSON with its ``{"import": name}`` resolved by :func:`_resolve`."""
    if isinstance(value, dict):
        if set(value) == {"import"}:
            return _resolve(where, value["import"], allow)
        return {k: _decode(v, where, allow) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, where, allow) for v in value]
    return value


def norm_key(norm: Norm | str) -> str:
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


def run_config(run: Run | Mapping[str, Any]) -> dict[str, Any]:
    """``run.config()`` as JSON (see :func:`_encode`)."""
    config: dict[str, Any] = json.loads(json.dumps(_encode(run.config() if hasattr(run, "config")
                                                           else dict(run))))
    return config


def data_fingerprint(X: torch.Tensor | npt.ArrayLike, y: torch.Tensor | npt.ArrayLike) -> str:
    """A SHA-256 of the data as float64 (shapes and bytes): the same data give the same
    fingerprint whatever they are called, other data another."""
    h = hashlib.sha256()
    for a in (X, y):
        array: np.ndarray = a.detach().cpu().to(torch.float64).contiguous().numpy() if torch.is_tensor(a) \
            else np.ascontiguousarray(np.asarray(a, dtype=np.float64))
        h.update(repr(array.shape).encode())
        h.update(array.tobytes())
    return h.hexdigest()


# --- one file per run ---------------------------------------------------------------------


def run_key(config: dict[str, Any], data: str, settings: dict[str, Any],
            training_version: int | None = None) -> str:
    """The name of a run's file: a hash of its JSON config, its data's :func:`data_fingerprint`,
    the training ``settings`` and the training version (not the package version)."""
    tv = _training_version() if training_version is None else training_version
    return _hash({"run": config, "data": data, "settings": settings, "training_version": tv})


_SERIES = ("steps", "log_loss", "param_norm")


# --- what a stored file may hold ----------------------------------------------------------


def _integer(x: object, low: int | None = None, high: int | None = None) -> bool:
    return (isinstance(x, int) and not isinstance(x, bool) and (low is None or x >= low)
            and (high is None or x <= high))


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_import(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"import"}


def _names(x: object) -> bool:
    """Margin or observed names: distinct short strings."""
    return (isinstance(x, list) and len(x) <= 10_000 and len(set(map(repr, x))) == len(x)
            and all(isinstance(n, str) and 0 < len(n) <= 200 for n in x))


def _dtype(x: object) -> bool:
    from .runs import DTYPES

    return isinstance(x, str) and x in DTYPES


def _input_dim(x: object) -> bool:
    """A stored input dimension: a positive integer, or a shape (a list) of at most 8."""
    shape = x if isinstance(x, list) else [x]
    return (1 <= len(shape) <= 8 and all(_integer(k, 1) for k in shape)
            and math.prod(shape) <= MAX_FEATURES)


def _checked(check: Callable[[Any], bool], expected: str, **default: Any) -> Any:
    """A :class:`RunFile` field with the check its stored value must pass (and its default)."""
    return dataclasses.field(metadata={"check": (check, expected)}, **default)


@dataclasses.dataclass(frozen=True)
class RunFile:
    """What a stored run file says about its run: its ``config.json``, checked.

    ``run`` is the :class:`runs.Run` as JSON (:func:`run_config`), ``data`` the data's
    fingerprint and ``settings`` the training settings: the three with ``training_version``
    hash to ``key``, the file's name. ``margins`` and ``observed`` name its arrays. The
    fields with defaults are notes (older files may lack them); the others are required.
    """

    format: int = _checked(_integer, "an integer")
    key: str = _checked(lambda v: isinstance(v, str), "a string")
    training_version: int = _checked(_integer, "an integer")
    run: dict[str, Any] = _checked(lambda v: isinstance(v, dict), "a run config (a table)")
    data: str = _checked(lambda v: isinstance(v, str) and len(v) <= 200, "a data fingerprint")
    settings: dict[str, Any] = _checked(lambda v: isinstance(v, dict), "a table of training settings")
    margins: list[str] = _checked(_names, "a list of distinct names")
    observed: list[str] = _checked(_names, "a list of distinct names")
    input_dim: int | tuple[int, ...] = _checked(_input_dim, "a positive integer or a shape of at most 8 "
                                                f"of them, with at most {MAX_FEATURES} features")
    dtype: str = _checked(_dtype, "'float64' or 'float32'")
    seconds: float = _checked(lambda v: _finite(v) and v >= 0, "a number ≥ 0", default=0.0)
    engine: dict[str, Any] = _checked(lambda v: isinstance(v, dict), "a table", default_factory=dict)
    device: str = _checked(lambda v: isinstance(v, str), "a string", default="")
    library_version: str = _checked(lambda v: isinstance(v, str), "a string", default="")
    created: str = _checked(lambda v: isinstance(v, str), "a string", default="")

    @classmethod
    def from_json(cls, path: Where, meta: JSON, allow: Iterable[str] = ()) -> RunFile:
        """The description in a file's parsed ``config.json``: its fields, their types and the
        names it holds checked (:class:`StoreError` naming ``path`` if not)."""
        if not isinstance(meta, dict):
            raise StoreError(f"{path}: config.json holds a {type(meta).__name__}, not a stored run.")
        known = _fields_of(cls, path, meta, "config.json")
        if meta["format"] != FORMAT:
            raise StoreError(f"{path}: written in store format {_short(meta['format'])}, this code reads "
                             f"{FORMAT}.")
        _check_fields(path, known, _checks(cls), "its")
        _check_run_config(path, known["run"])
        _check_observer(path, known["settings"].get("observe"), allow)
        dim = known["input_dim"]
        return cls(**{**known, "input_dim": tuple(dim) if isinstance(dim, list) else dim})

    def to_json(self) -> str:
        """The ``config.json`` text: :meth:`from_json` reads it back equal."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # no deep copy
        return json.dumps({**fields, "input_dim": _encode(self.input_dim)}, indent=1, sort_keys=True)

    def array_names(self) -> list[str]:
        """The arrays the file holds besides ``config.json``."""
        return [*_SERIES, "directions", "direction_steps", "parameters",
                *(f"margin_{i}" for i in range(len(self.margins))),
                *(f"observed_{i}" for i in range(len(self.observed)))]


@dataclasses.dataclass(frozen=True)
class FailedRun:
    """A failed run's record (``<root>/failed/<key>.json``, :func:`save_failed`): which run,
    at which step (None: unknown) and why; ``margins`` names the series of its partial
    history (:func:`failed_history`). The fields with defaults are notes."""

    key: str = _checked(lambda v: isinstance(v, str), "a string")
    run: dict[str, Any] = _checked(lambda v: isinstance(v, dict), "a run config (a table)")
    label: str | None = _checked(lambda v: v is None or isinstance(v, str), "a string or null")
    reason: str = _checked(lambda v: isinstance(v, str), "a string")
    step: int | None = _checked(lambda v: v is None or _integer(v, 0), "a step or null", default=None)
    margins: list[str] = _checked(_names, "a list of distinct names", default_factory=list)
    data: str = _checked(lambda v: isinstance(v, str), "a data fingerprint", default="")
    settings: dict[str, Any] = _checked(lambda v: isinstance(v, dict), "a table", default_factory=dict)
    training_version: int = _checked(_integer, "an integer", default=0)
    library_version: str = _checked(lambda v: isinstance(v, str), "a string", default="")
    created: str = _checked(lambda v: isinstance(v, str), "a string", default="")
    format: int = _checked(_integer, "an integer", default=FORMAT)

    @classmethod
    def from_json(cls, path: Path, record: JSON) -> FailedRun:
        """The record in a parsed ``<key>.json``, checked (:class:`StoreError` if not)."""
        if not isinstance(record, dict) or record.get("key") != path.stem:
            raise StoreError(f"{path}: not the failure record of run {path.stem}.")
        known = _fields_of(cls, path, record, "a failure record")
        _check_fields(path, known, _checks(cls), "its")
        return cls(**known)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True) + "\n"


def _fields_of(cls: type, path: Where, record: dict[str, Any], what: str) -> dict[str, Any]:
    """The entries of ``record`` that are fields of the dataclass ``cls`` (a newer note is
    ignored), raising unless every required field (one without a default) is there."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    required = {name for name, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    if required - set(record):
        raise StoreError(f"{path}: {what} lacks {sorted(required - set(record))}.")
    return {name: value for name, value in record.items() if name in fields}


def _checks(cls: type) -> dict[str, FieldCheck]:
    """The checks a dataclass's fields carry (:func:`_checked`)."""
    return {f.name: f.metadata["check"] for f in dataclasses.fields(cls)}


def _check_fields(where: Where, table: dict[str, Any], checks: Mapping[str, FieldCheck], what: str) -> None:
    for name, (ok, expected) in checks.items():
        if name in table and not ok(table[name]):
            raise StoreError(f"{where}: {what} {name} is {_short(table[name])}, not {expected}.")


def _check_run_config(where: Where, config: JSON) -> None:
    """A stored run config's fields have the types :class:`runs.Run` takes (checked
    before anything is decoded or built)."""
    from .runs import FIELD_CHECKS, Run

    if not isinstance(config, dict):
        raise StoreError(f"{where}: a run config is a {type(config).__name__}, not a table.")
    unknown = set(config) - {f.name for f in dataclasses.fields(Run)}
    if unknown:
        raise StoreError(f"{where}: a run config has fields {sorted(unknown)} that the current Run "
                         "does not know.")
    # the run's own table (runs.FIELD_CHECKS); an optimizer or model may be an import path
    checks = {name: check for name, check in FIELD_CHECKS.items()
              if not (name in ("optimizer", "model") and _is_import(config.get(name)))}
    _check_fields(where, config, checks, "the run's")


def _check_observer(where: Where, observe: JSON, allow: Iterable[str]) -> None:
    """The observer a run was trained with is only a name in its key (loading never calls
    it): the library's, this process's own or an allowed one."""
    if observe is None:
        return
    if not _is_import(observe):
        raise StoreError(f"{where}: its observer is {_short(observe)}, not an import path.")
    name = _valid_name(where, observe["import"])
    if not (name in _ENCODED or name.partition(".")[0].partition(":")[0] == "implicit_bias"
            or allowed(name, allow)):
        raise _refused(where, name)


def _array(path: Path, z: zipfile.ZipFile, name: str) -> np.ndarray:
    try:
        info = z.getinfo(f"{name}.npy")
    except KeyError:
        raise StoreError(f"{path}: the array {name}.npy is missing.") from None
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise StoreError(f"{path}: {name}.npy uses compression {info.compress_type}, not deflate.")
    with z.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _check_arrays(path: Path, meta: RunFile, arrays: dict[str, np.ndarray]) -> None:
    """Every array of a run file has the type and length its config implies."""
    steps = arrays["steps"]
    if (steps.ndim != 1 or steps.dtype.kind != "i" or len(steps) == 0 or steps[0] < 1
            or np.any(np.diff(steps) <= 0)):
        raise StoreError(f"{path}: steps must be a non-empty increasing vector of integers ≥ 1.")
    n = len(steps)
    for name in ["log_loss", "param_norm", *(f"margin_{i}" for i in range(len(meta.margins)))]:
        if arrays[name].shape != (n,) or arrays[name].dtype != np.float64:
            raise StoreError(f"{path}: {name} has shape {arrays[name].shape} and type "
                             f"{arrays[name].dtype}, not ({n},) float64.")
    for i in range(len(meta.observed)):
        a = arrays[f"observed_{i}"]
        if a.ndim == 0 or a.shape[0] != n or a.dtype != np.float64:
            raise StoreError(f"{path}: observed_{i} has shape {a.shape} and type {a.dtype}, not "
                             f"({n}, …) float64.")
    p = arrays["parameters"]
    if p.ndim != 1 or p.dtype != np.float64 or not 1 <= p.size <= MAX_PARAMETERS:
        raise StoreError(f"{path}: parameters have shape {p.shape} and type {p.dtype}, not a float64 "
                         f"vector of 1 to {MAX_PARAMETERS}.")
    d, ds = arrays["directions"], arrays["direction_steps"]
    if (ds.ndim != 1 or ds.dtype.kind != "i" or d.dtype != np.float64 or d.shape != (len(ds), p.size)
            or not set(ds.tolist()) <= set(steps.tolist())):
        raise StoreError(f"{path}: directions have shape {d.shape} for {ds.shape} direction steps and "
                         f"{p.size} parameters.")


#: Parameter counts already made (a sweep's runs share a few model configs).
_COUNTS: dict[str, int] = {}


def _parameter_count(where: Where, model: dict[str, Any] | Callable[..., torch.nn.Module],
                     dim: int | tuple[int, ...] | None = None) -> int:
    """The parameters of ``model`` (a config, or a class of :mod:`models`) at ``dim`` (default:
    an input its config accepts), counted on torch's meta device: nothing is allocated, so a
    forged width costs nothing."""
    from . import models

    try:
        key = json.dumps([model if isinstance(model, dict) else _name_of(model), dim], sort_keys=True)
    except (TypeError, ValueError):  # an allowed object inside the config: count every time
        key = None
    if key in _COUNTS:
        return _COUNTS[key]
    try:
        with torch.device("meta"):
            built: torch.nn.Module
            if isinstance(model, dict):
                built = models.build(model, models.example_input_dim(model) if dim is None else dim)
            else:
                built = model(dim)
        count = sum(p.numel() for p in built.parameters())
    except Exception as err:  # the library's own code, on a config from a file
        raise StoreError(f"{where}: its model does not build ({type(err).__name__}: {err}).") from None
    if key is not None:
        if len(_COUNTS) > 4096:
            _COUNTS.clear()
        _COUNTS[key] = count
    return count


def _run_of(where: Where, config: JSON, allow: Iterable[str]) -> Run:
    """A stored run config as a :class:`runs.Run`: types checked, names resolved (the
    library's, this process's own or allowed), a model config's size bounded before the run
    builds it."""
    from .runs import Run

    _check_run_config(where, config)
    spec = _decode(config, where, allow)
    if isinstance(spec.get("model"), dict) and _parameter_count(where, spec["model"]) > MAX_PARAMETERS:
        raise StoreError(f"{where}: its model has more than {MAX_PARAMETERS} parameters.")
    try:
        return Run(**spec)
    except Exception as err:  # the library's own checks, on a config from a file
        raise StoreError(f"{where}: its run config does not fit the current code: {err}") from None


def _model_of(path: Path, run: Run, dim: int | tuple[int, ...], dtype: torch.dtype,
              vector: np.ndarray) -> torch.nn.Module:
    """The run's model rebuilt with the stored parameters ``vector``. A model of the library
    is counted first (nothing allocated) against the stored parameters."""
    from . import models

    own = isinstance(run.model, dict) or (isinstance(run.model, type) and run.model.__module__ ==
                                          models.__name__)
    if own and _parameter_count(path, run.model, dim) != vector.size:
        raise StoreError(f"{path}: {vector.size} stored parameters for a model with "
                         f"{_parameter_count(path, run.model, dim)}.")
    try:
        model = run.build_model(dim, dtype)
    except Exception as err:  # an allowed factory's own error, or a library check
        raise StoreError(f"{path}: its model could not be rebuilt ({type(err).__name__}: {err}).") from None
    params = list(model.parameters())
    if vector.size != sum(p.numel() for p in params):
        raise StoreError(f"{path}: {vector.size} stored parameters for a model with "
                         f"{sum(p.numel() for p in params)}.")
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.as_tensor(vector, dtype=dtype), params)
    return model


# --- one file per run: the store ----------------------------------------------------------


class RunStore:
    """A folder of stored runs (``<root>/runs/<key>.npz``), for one sweep or many.

    ``allow``: names of code its files may name beyond the library's (:func:`library_names`)
    and this process's own: ``'module:qualname'`` or a pattern such as ``'mypkg.*'``. Only
    allow what you trust: loading imports and calls it."""

    def __init__(self, root: str | os.PathLike[str], allow: Allow = ()) -> None:
        self.root = Path(root)
        self.folder = self.root / "runs"
        self.allow = _allow(allow)

    @classmethod
    def of(cls, store: StoreLike, allow: Allow = ()) -> RunStore:
        if isinstance(store, RunStore):
            return store if not allow else cls(store.root, (*store.allow, *_allow(allow)))
        return cls(store, allow)

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def has(self, key: str) -> bool:
        """Whether ``key``'s file is there and looks whole: a zip whose config.json is valid
        and hashes to its name, listing every array (:meth:`verified` reads it all)."""
        path = self.path(key)
        if not path.exists():
            return False
        try:
            with zipfile.ZipFile(path) as z:
                meta, names = self._meta(path, z), set(z.namelist())
        except Exception:  # a damaged file, whatever the damage, is not a stored run
            return False
        return all(f"{name}.npy" in names for name in meta.array_names())

    def verified(self, key: str) -> bool:
        """Whether ``key``'s file is there and loads whole (:meth:`load`). One that does not
        is moved to ``<root>/quarantine/`` with a warning, so that its run is trained again."""
        if not self.path(key).exists():
            return False
        try:
            self.load(key, expected=key)
        except StoreError as err:
            where = self.quarantine(key)
            then = f"moved to {where}" if where else "it could not be moved aside"
            warnings.warn(f"{err} Damaged: {then}; its run is trained again.", StoreWarning, stacklevel=2)
            return False
        return True

    def quarantine(self, key_or_path: str | os.PathLike[str]) -> Path | None:
        """Move a stored file to ``<root>/quarantine/`` (kept for a look, out of the store);
        returns where it went, or None when it could not be moved."""
        path = self._path(key_or_path)
        folder = self.root / "quarantine"
        dest = folder / path.name
        for n in itertools.count(1):
            if not dest.exists():
                break
            dest = folder / f"{path.stem}.{n}{path.suffix}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
        except OSError:
            return None
        return dest

    def check_writable(self) -> None:
        """Raise :class:`StoreError` unless files can be written in the store (called before
        a sweep trains anything), and remove the temporary files of killed writers."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".probe.", suffix=".tmp", dir=self.folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            raise StoreError(f"{self.folder}: cannot write the store there ({err.strerror or err}); choose "
                             "a writable folder (store=..., --store) or fix its permissions.") from None
        self.clean()

    def clean(self, age: float = TMP_AGE) -> list[Path]:
        """Remove the temporary files (``.<name>.*.tmp``) older than ``age`` seconds: a
        killed writer's. A younger one may be another process writing; it is left alone."""
        removed: list[Path] = []
        now = time.time()
        for tmp in self.folder.glob(".*.tmp"):
            try:
                if now - tmp.stat().st_mtime > age:
                    tmp.unlink()
                    removed.append(tmp)
            except OSError:  # gone meanwhile (its writer finished), or not ours to remove
                continue
        return removed

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.npz"))

    def __len__(self) -> int:
        return len(self.keys())

    def save(self, key: str, history: History, data: str, settings: dict[str, Any],
             input_dim: int | tuple[int, ...], device: str = "") -> Path:
        """Write ``history`` (its run on data ``data``, of ``input_dim`` features, trained
        with ``settings``) as ``key``'s file."""
        (path,) = self.save_many([(key, history, data, settings, input_dim, device)])
        return path

    def save_many(self, items: Sequence[tuple[str, History, str, dict[str, Any], int | tuple[int, ...], str]]
                  ) -> list[Path]:
        """:meth:`save` of several runs, ``(key, history, data, settings, input_dim, device)``
        each, made durable together (a sweep's chunk: one pass to the disk, not one a run)."""
        files = [(self.path(item[0]), self._file(*item)) for item in items]
        _atomic_writes(files)
        return [path for path, _ in files]

    def _file(self, key: str, history: History, data: str, settings: dict[str, Any],
              input_dim: int | tuple[int, ...], device: str) -> bytes:
        """The bytes of ``key``'s file: a zip of ``config.json`` and one array per series."""
        config = run_config(history.run)
        if run_key(config, data, settings) != key:
            raise ValueError(f"key {key} is not the key of run {history.run.label!r} with these settings.")
        params = [p.detach().cpu() for p in history.model.parameters()]
        arrays = {**history.arrays(),
                  "parameters": torch.cat([p.reshape(-1) for p in params]).to(torch.float64).numpy()}
        engine: dict[str, Any] = json.loads(json.dumps(_encode(history.engine)))  # tuples as lists
        meta = RunFile(format=FORMAT, key=key, training_version=_training_version(), run=config, data=data,
                       settings=settings, margins=list(history.margins), observed=list(history.observed),
                       input_dim=input_dim, dtype=str(params[0].dtype).removeprefix("torch."),
                       seconds=float(history.seconds), engine=engine, device=device,
                       library_version=_library_version(),
                       created=datetime.datetime.now(datetime.timezone.utc).isoformat())
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("config.json", meta.to_json())
            for name, a in arrays.items():
                with z.open(f"{name}.npy", "w") as f:
                    np.lib.format.write_array(f, np.asarray(a), allow_pickle=False)
        return buffer.getvalue()

    def meta(self, key_or_path: str | os.PathLike[str]) -> RunFile:
        """A stored run's description (its ``config.json``), validated against its name (not
        its arrays)."""
        path = self._path(key_or_path)
        try:
            with zipfile.ZipFile(path) as z:
                return self._meta(path, z)
        except StoreError:
            raise
        except Exception as err:  # any failure to read a file is that file's
            raise StoreError(f"{path}: not a readable stored run ({type(err).__name__}: {err}).") from None

    def _path(self, key_or_path: str | os.PathLike[str]) -> Path:
        p = Path(key_or_path)
        return p if p.suffix == ".npz" else self.path(str(key_or_path))

    def _meta(self, path: Path, z: zipfile.ZipFile) -> RunFile:
        try:
            if z.getinfo("config.json").file_size > 2**20:
                raise StoreError(f"{path}: config.json is over 1 MiB; a stored run's is a few kB.")
            parsed = json.loads(z.read("config.json"))
        except (KeyError, ValueError) as err:
            if isinstance(err, StoreError):
                raise
            raise StoreError(f"{path}: no valid config.json ({err}).") from None
        meta = RunFile.from_json(path, parsed, self.allow)
        version = meta.training_version  # the hash holds it: a stale file is still whole
        hashed = run_key(meta.run, meta.data, meta.settings, version)
        if meta.key != path.stem or hashed != path.stem:
            raise StoreError(f"{path}: its content does not hash to its name (another sweep's file, "
                             "or an edited one).")
        if version != _training_version():
            raise self._stale(path, meta)
        return meta

    def _stale(self, path: Path, meta: RunFile) -> StoreError:
        """A whole file of another training version: where its run is now, if retrained."""
        current = run_key(meta.run, meta.data, meta.settings)
        then = (f"retrained by the current code as {current}" if self.has(current)
                else "rerun the sweep to retrain it")
        return StoreError(f"{path}: stale: written by training version {meta.training_version} "
                          f"(the code trains as version {_training_version()}); {then}.")

    def _read(self, path: Path) -> tuple[RunFile, dict[str, np.ndarray]]:
        """A stored run's config.json and arrays, every part checked."""
        try:
            with zipfile.ZipFile(path) as z:
                meta = self._meta(path, z)
                arrays = {name: _array(path, z, name) for name in meta.array_names()}
        except StoreError:
            raise
        except Exception as err:  # any failure to read a file is that file's
            raise StoreError(f"{path}: not a readable stored run ({type(err).__name__}: {err}).") from None
        _check_arrays(path, meta, arrays)
        return meta, arrays

    def load(self, key_or_path: str | os.PathLike[str], expected: str | None = None) -> History:
        """The stored run as a :class:`History` (its model rebuilt from the stored
        parameters), every part checked; ``expected`` is the key the caller asked for."""
        from .history import History
        from .runs import DTYPES

        path = self._path(key_or_path)
        if expected is not None and path.stem != expected:
            raise StoreError(f"{path}: asked for run {expected}.")
        meta, arrays = self._read(path)
        run = _run_of(path, meta.run, self.allow)
        model = _model_of(path, run, meta.input_dim, DTYPES[meta.dtype], arrays["parameters"])
        return History.from_arrays(run, model, arrays, meta.margins, meta.observed, meta.seconds,
                                   meta.engine)

    def histories(self, errors: list[StoreError] | None = None) -> Iterator[History]:
        """Every stored run that can be trusted, loaded one at a time (memory stays that of
        one run). A file that cannot (damaged, stale, naming code not allowed) is skipped:
        its :class:`StoreError` is appended to ``errors``, or, without a list, all are named
        in one warning at the end."""
        skipped: list[StoreError] = [] if errors is None else errors
        start = len(skipped)
        for key in self.keys():
            try:
                history = self.load(key)
            except StoreError as err:
                skipped.append(err)
                continue
            yield history
        if errors is None and len(skipped) > start:
            lines = "\n".join(f"  {err}" for err in skipped[start:])
            warnings.warn(f"{self.root}: skipped {len(skipped) - start} stored files that cannot be "
                          f"trusted:\n{lines}", StoreWarning, stacklevel=2)


class StoredHistories(Sequence["History | RunFailed"]):
    """What ``train(..., store=...)`` returns: the sweep's histories in the order of its
    runs, each read from the store when it is used (so a long sweep is not held in
    memory); a run that failed under ``failures='return'`` is its :class:`RunFailed`."""

    def __init__(self, store: RunStore, keys: Iterable[str], failed: Mapping[int, RunFailed]) -> None:
        self.store, self.keys, self.failed = store, list(keys), dict(failed)

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, i: int) -> History | RunFailed: ...
    @overload
    def __getitem__(self, i: slice) -> list[History | RunFailed]: ...
    def __getitem__(self, i: int | slice) -> History | RunFailed | list[History | RunFailed]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        if i in self.failed:
            return self.failed[i]
        return self.store.load(self.keys[i], expected=self.keys[i])

    def __repr__(self) -> str:
        return f"StoredHistories({len(self)} runs in {self.store.root})"


@dataclasses.dataclass(frozen=True)
class Stored:
    """A run that a worker wrote into the store itself (:class:`WorkerStore`): its key, and
    what :func:`regime.check` said of it (None: inside its regime), in place of its history."""

    key: str
    regime: str | None = None


@dataclasses.dataclass(frozen=True)
class WorkerStore:
    """What a worker needs to write its chunk's runs into the store itself and hand back
    their keys (:class:`Stored`), not their histories: the store's folder, the runs' keys
    and data fingerprints, the settings. ``token`` names a file the sweep wrote there: a
    worker that cannot see it (another machine, another disk) hands back histories."""

    root: str
    token: str
    keys: list[str]
    data: list[str]
    settings: dict[str, Any]

    def reachable(self) -> bool:
        return (Path(self.root) / ".workers" / self.token).exists()

    def save(self, histories: Sequence[History | RunFailed], input_dim: int | tuple[int, ...],
             device: str, regimes: Sequence[str | None]) -> list[History | RunFailed | Stored]:
        """Store the chunk's histories (one durable write), each with what
        :func:`regime.check` said of it; failures stay as they are, for the sweep to record."""
        items = [(key, h, data, self.settings, input_dim, device)
                 for key, data, h in zip(self.keys, self.data, histories, strict=True)
                 if not isinstance(h, Exception)]
        RunStore(self.root).save_many(items)
        return [h if isinstance(h, Exception) else Stored(key, message)
                for key, h, message in zip(self.keys, histories, regimes, strict=True)]


class Session:
    """One ``train(..., store=...)`` call's use of a store: its runs' keys (config, data
    fingerprint and settings), the chunks still to train, each finished run saved as it
    comes (a failed one recorded, :func:`save_failed`), and what the call returns."""

    def __init__(self, store: RunStore, keys: list[str], prints: dict[str, str], settings: dict[str, Any],
                 runs: Sequence[Run], from_env: bool) -> None:
        self.store, self.keys, self.prints, self.settings = store, keys, prints, settings
        self._token: str | None = None  # the workers' (for_workers), once there are any
        self.runs, self.from_env = runs, from_env

    @classmethod
    def open(cls, store: StoreLike | Literal[False] | None, runs: Sequence[Run],
             datasets: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
             settings: dict[str, Any]) -> Session | None:
        """The session of a ``train`` call: ``store`` a folder, a :class:`RunStore`, None (the
        one ``IMPLICIT_BIAS_STORE`` names, if any) or False (none). None without a store, and
        for a call the environment's store cannot key (it trains unstored, with a warning)."""
        from_env = store is None and bool(os.environ.get("IMPLICIT_BIAS_STORE"))
        store = os.environ["IMPLICIT_BIAS_STORE"] if from_env else (None if store is False else store)
        if store is None:
            return None
        prints = {name: data_fingerprint(*xy) for name, xy in datasets.items()}
        try:
            observe, norms = settings["observe"], settings["norms"]
            settings = {**settings, "norms": [norm_key(n) for n in norms], "frame": bool(settings["frame"]),
                        "observe": None if observe is None else _encode(observe)}
            keys = [run_key(run_config(r), prints[r.data], settings) for r in runs]
        except TypeError as error:
            if not from_env:
                raise
            # IMPLICIT_BIAS_STORE covers every call; one that cannot be keyed trains unstored
            warnings.warn(f"IMPLICIT_BIAS_STORE ignored for this call: {error}", stacklevel=3)
            return None
        store = RunStore.of(store)
        store.check_writable()  # a read-only folder fails now, not after the first chunk
        return cls(store, keys, prints, settings, runs, from_env)

    def pending(self, todo: list[Chunk], progress: bool | Literal["runs"]) -> tuple[list[Chunk], set[int]]:
        """``(the chunks still to train, the indices of the runs stored)``. A chunk is trained
        again whole unless all its runs are stored: a stack's size can change its runs' last
        bits, and a resumed sweep must equal an uninterrupted one. A damaged file is moved to
        quarantine and its run trained again."""
        stored = {i for i, k in enumerate(self.keys) if self.store.verified(k)}
        todo = [(c, why) for c, why in todo if not stored.issuperset(c)]
        done = set(range(len(self.keys))).difference(*(c for c, _ in todo))
        again = sum(failed_path(self.store, k).exists() for i, k in enumerate(self.keys) if i not in stored)
        if again and progress:
            print(f"{again} run{'s' * (again > 1)} failed before; training again.", file=sys.stderr)
        return todo, done

    def save(self, chunk: Sequence[int], histories: Sequence[History | RunFailed | Stored],
             input_dims: Sequence[int | tuple[int, ...]], device: str) -> None:
        """Save a chunk's histories, runs ``chunk``, as one durable write (each file atomic),
        and record its failures (runs a worker stored itself are there already)."""
        new = []
        for i, h, dim in zip(chunk, histories, input_dims, strict=True):
            key, data = self.keys[i], self.prints[self.runs[i].data]
            if isinstance(h, Exception):
                save_failed(self.store, key, h, data, self.settings, failed_step(h))
            elif not isinstance(h, Stored) and not self.store.has(key):
                new.append((key, h, data, self.settings, dim, device))
        self.store.save_many(new)
        for i, h in zip(chunk, histories):
            if not isinstance(h, Exception):
                forget_failed(self.store, self.keys[i])

    def for_workers(self, chunk: Sequence[int]) -> WorkerStore:
        """What a worker needs to store chunk ``chunk`` itself; :meth:`close` ends it."""
        if self._token is None:
            self._token = f"{os.getpid()}-{time.time_ns()}"
            _atomic_write(self.store.root / ".workers" / self._token, b"")
        return WorkerStore(str(self.store.root), self._token, [self.keys[i] for i in chunk],
                           [self.prints[self.runs[i].data] for i in chunk], self.settings)

    def close(self) -> None:
        """Remove the workers' token (:meth:`for_workers`): the sweep has ended."""
        if self._token is not None:
            (self.store.root / ".workers" / self._token).unlink(missing_ok=True)

    def interrupted(self) -> str:
        """The message of a sweep stopped by Ctrl-C."""
        n = sum(self.store.has(k) for k in self.keys)
        return f"interrupted: {n} of {len(self.keys)} runs stored in {self.store.root}; rerun to resume."

    def result(self, failed: Mapping[int, RunFailed]) -> StoredHistories | list[History | RunFailed]:
        """What the call returns: a :class:`StoredHistories`, or for a store set by the
        environment a plain list (existing code then resumes without a change)."""
        stored = StoredHistories(self.store, self.keys, failed)
        return list(stored) if self.from_env else stored


# --- failed runs --------------------------------------------------------------------------
# A run that failed (it left the float range, or its worker was killed) is recorded beside
# the stored runs: ``<root>/failed/<key>.json`` (its config, the step, the reason) and, if
# it logged anything before failing, ``<key>.npz`` (steps, log-loss, parameter norm,
# margins). A record does not count as stored: a rerun trains the run again, and a run
# that then succeeds has its record removed.


def failed_step(err: object) -> int | None:
    """The step a :class:`RunFailed` names ("… at step 12 …"), or None."""
    found = re.search(r"\bstep (\d+)", str(err))
    return int(found[1]) if found else None


def failed_path(store: StoreLike, key: str) -> Path:
    """Where run ``key``'s failure is recorded (its partial history: the same name, ``.npz``)."""
    return RunStore.of(store).root / "failed" / f"{key}.json"


def save_failed(store: StoreLike, key: str, error: RunFailed, data: str, settings: dict[str, Any],
                step: int | None = None) -> Path:
    """Record ``error`` (a :class:`history.RunFailed`) as the failure of run ``key`` (its run on
    data ``data``, trained with ``settings``), failed at ``step`` (None: unknown)."""
    config = run_config(error.run)
    if run_key(config, data, settings) != key:
        raise ValueError(f"key {key} is not the key of run {error.run.label!r} with these settings.")
    path = failed_path(store, key)
    h = error.history
    partial = h is not None and len(h.steps) > 0
    record = FailedRun(key=key, run=config, label=error.run.label, reason=str(error), step=step,
                       margins=list(h.margins) if h is not None and partial else [], data=data,
                       settings=settings, training_version=_training_version(),
                       library_version=_library_version(),
                       created=datetime.datetime.now(datetime.timezone.utc).isoformat())
    if h is not None and partial:
        buffer = io.BytesIO()
        series: dict[str, Any] = h.series()  # numpy's hints type savez's keywords as its own
        np.savez(buffer, **series)
        _atomic_write(path.with_suffix(".npz"), buffer.getvalue())
    else:
        path.with_suffix(".npz").unlink(missing_ok=True)
    _atomic_write(path, record.to_json().encode())
    return path


def failed_runs(store: StoreLike) -> dict[str, FailedRun]:
    """The failures recorded in ``store``: key → :class:`FailedRun`. A record that cannot be
    read is skipped: it is a note, not a result."""
    out: dict[str, FailedRun] = {}
    for path in sorted((RunStore.of(store).root / "failed").glob("*.json")):
        try:  # a StoreError is a ValueError
            out[path.stem] = FailedRun.from_json(path, json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out


def failed_history(store: StoreLike, key: str) -> dict[str, np.ndarray] | None:
    """What run ``key`` logged before it failed, as arrays (``steps``, ``log_loss``,
    ``param_norm``, ``margin_<i>`` for the record's ``margins``), or None."""
    path = failed_path(store, key).with_suffix(".npz")
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def forget_failed(store: StoreLike, key: str) -> None:
    """Remove run ``key``'s failure record (it was trained again and stored)."""
    path = failed_path(store, key)
    path.with_suffix(".npz").unlink(missing_ok=True)
    path.unlink(missing_ok=True)


# --- chapters' paper-size tables ----------------------------------------------------------


def _configs(runs: Iterable[Run | Mapping[str, Any]]) -> list[dict[str, Any]]:
    # Through JSON so that tuples and lists (betas) hash alike before and after a round trip.
    return [run_config(r) for r in runs]


def key(runs: Iterable[Run | Mapping[str, Any]], data: dict[str, Any], version: int | None = None) -> str:
    """The hash that names a table file: its run configs, a description of its data
    (``data``, e.g. ``{"set": "digits_even_odd", "n": None}``: the runs only name it) and
    the training version ``version`` (default :data:`runs.TRAINING_VERSION`; not the
    package version, so a release that does not change training keeps the table found)."""
    tv = _training_version() if version is None else version
    text = json.dumps({"runs": _configs(runs), "data": data, "training_version": tv}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Store:
    """The chapters' results directory (``results/`` at the repository root): one small
    JSON table per paper-size sweep, ``results/<chapter>/<key>.json``. ``allow``: names of
    code its run configs may name beyond the library's (see :class:`RunStore`)."""

    def __init__(self, root: str | os.PathLike[str], allow: Allow = ()) -> None:
        self.root = Path(root)
        self.allow = _allow(allow)

    def path(self, chapter: str, runs: Sequence[Run], data: dict[str, Any]) -> Path:
        return self.root / chapter / f"{key(runs, data)}.json"

    def save(self, chapter: str, runs: Sequence[Run], data: dict[str, Any], results: dict[str, Any],
             device: str = "",
             seconds: float = 0.0) -> Path:
        """Write ``results`` (JSON-serializable, small) for the sweep ``runs`` on ``data``."""
        entry = {"chapter": chapter, "key": key(runs, data), "training_version": _training_version(),
                 "version": _library_version(), "runs": _configs(runs), "data": data,
                 "results": results, "device": device, "seconds": round(float(seconds), 1),
                 "created": datetime.date.today().isoformat()}
        path = self.path(chapter, runs, data)
        _atomic_write(path, (json.dumps(entry, indent=1, sort_keys=True) + "\n").encode())
        return path

    def load(self, chapter: str, runs: Sequence[Run], data: dict[str, Any]) -> dict[str, Any] | None:
        """The stored table of the sweep ``runs`` on ``data`` at this training version, or
        None; a file at that name that is not that table raises :class:`StoreError`."""
        path = self.path(chapter, runs, data)
        if not path.exists():
            return None
        entry = check(path, self.allow)
        if entry["runs"] != _configs(runs) or entry["data"] != json.loads(json.dumps(data)):
            raise StoreError(f"{path}: holds another sweep's table.")
        return entry

    def files(self) -> list[Path]:
        return sorted(self.root.glob("*/*.json"))


#: A table file's fields: what each must be.
_TABLE_FIELDS: dict[str, FieldCheck] = {
    "chapter": (lambda v: isinstance(v, str), "a chapter's name"),
    "key": (lambda v: isinstance(v, str), "a string"),
    "training_version": (_integer, "an integer"),
    "version": (lambda v: isinstance(v, str), "a version string"),
    "runs": (lambda v: isinstance(v, list) and all(isinstance(c, dict) for c in v), "a list of run configs"),
    "device": (lambda v: isinstance(v, str), "a string"),
    "seconds": (lambda v: _finite(v) and v >= 0, "a number ≥ 0"),
}


def check(path: str | os.PathLike[str], allow: Allow = ()) -> dict[str, Any]:
    """Raise :class:`StoreError` unless the stored table loads, is named by its own key, was
    written at the current training version, and its run configs are valid :class:`train.Run`
    configs of the current code (no missing or unknown fields, values the constructor
    accepts, names of code that the library registers or ``allow`` allows). Returns the entry."""
    from .runs import Run

    path = Path(path)
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as err:
        raise StoreError(f"{path}: not a readable JSON table ({err}).") from None
    if not isinstance(entry, dict):
        raise StoreError(f"{path}: holds a {type(entry).__name__}, not a stored table.")
    missing = {"chapter", "key", "training_version", "version", "runs", "data", "results"} - set(entry)
    if missing:
        raise StoreError(f"{path}: missing fields {sorted(missing)}.")
    _check_fields(path, entry, _TABLE_FIELDS, "its")
    fields = {f.name for f in dataclasses.fields(Run)}
    for config in entry["runs"]:
        if set(config) != fields:
            raise StoreError(f"{path}: a run config has fields {sorted(set(config) ^ fields)} that "
                             "the current Run does not (or lacks); re-run scripts/paper_results.py.")
        _run_of(path, config, _allow(allow))
    if entry["training_version"] != _training_version():
        raise StoreError(f"{path}: written at training version {entry['training_version']}, the code "
                         f"trains as version {_training_version()}; re-run scripts/paper_results.py.")
    named = key(entry["runs"], entry["data"], entry["training_version"])
    if named != entry["key"] or path.stem != entry["key"]:
        raise StoreError(f"{path}: its name and key do not match its runs and training version.")
    if path.parent.name != entry["chapter"]:
        raise StoreError(f"{path}: stored under {path.parent.name!r} but written by {entry['chapter']!r}.")
    return entry


__all__ = ["Store", "RunStore", "StoredHistories", "StoreError", "StoreWarning", "key", "run_key",
           "run_config", "data_fingerprint", "check", "library_names", "allowed", "FORMAT",
           "MAX_TOTAL_BYTES", "MAX_FEATURES", "MAX_PARAMETERS", "TMP_AGE", "failed_path", "save_failed",
           "failed_runs", "failed_history", "forget_failed", "failed_step", "Session", "RunFile",
           "FailedRun", "Stored", "WorkerStore"]
