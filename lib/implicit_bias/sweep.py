"""Sweeps described in a TOML file, trained into a store, and their report.

A sweep file lists runs as products of their settings (every list is a dimension) and
names its data and its store (see ``examples/sweep.toml``)::

    store = "sweeps/adam_vs_sign"      # relative to the file; --store overrides it
    norms = ["l2", "linf"]
    directions = false                 # or an int: keep about that many per run

    [data]                             # a loader of implicit_bias.data and its options;
    set = "digits_even_odd"            # several sets: [data.<name>] tables, Run.data names one
    n = 600

    [[runs]]                           # one product of runs; several [[runs]] blocks add up
    optimizer = ["SignGD", "Signum"]
    lr = 0.01
    schedule = 0.5
    seed = [0, 1, 2]
    steps = {smoke = 100, book = 3000, paper = 30000}   # per run size
    model = {kind = "two_layer", width = 16, activation = "relu2"}

Any value may be a table ``{smoke = …, book = …, paper = …}``, resolved for the active run
size (:func:`config.sized`); ``seeds = N`` is short for ``seed = [0, …, N − 1]``.

``python -m implicit_bias sweep FILE`` trains it (:func:`run`) with a progress bar over
runs, skipping runs already stored; ``python -m implicit_bias report STORE`` prints the
mean ± interval over seeds of every final margin per optimizer and norm and saves the
figures (:func:`report`). :func:`executor` (from :mod:`implicit_bias.executors`) turns a short
spec into an executor for ``train(executor=...)``.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
import math
import os
import re
import sys
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np

from . import config
from . import data as datasets
from .executors import executor
from .runs import FIELD_CHECKS as RUN_FIELDS
from .runs import Run, _integer

if TYPE_CHECKING:
    from typing import NotRequired, TypedDict

    import torch
    from matplotlib.figure import Figure

    from .executors import Executor
    from .history import History, RunFailed
    from .store import Allow, FailedRun, RunFile, RunStore, StoreError, StoreLike

    class _Group(TypedDict):
        """Stored runs that differ only in their seed (:func:`_groups`)."""

        run: dict[str, Any]  # their config without the seed, with the label
        seeds: list[int]
        steps: np.ndarray
        loss: list[np.ndarray]  # log10 loss, per seed
        margins: dict[str, list[np.ndarray]]  # norm -> normalized margins, per seed
        name: NotRequired[str]  # set once every group is known

#: A value read from a TOML file: anything until it is checked where it is used.
TOML: TypeAlias = Any
#: A field's check and what it expects (the tables of checks below).
FieldCheck = tuple[Callable[[Any], bool], str]

#: Run fields a sweep file may set (a list is a dimension of the product).
FIELDS = tuple(f.name for f in dataclasses.fields(Run))

#: Top-level keys of a sweep file other than its tables, and the train() options they set.
TRAIN_OPTIONS = ("norms", "log_points", "frame", "directions", "engine", "max_batch", "failures",
                 "chunk_seconds")


@dataclass
class Sweep:
    """A sweep file read for the active run size: its runs, data, store and train options."""

    runs: list[Run]
    data: dict[str, tuple[torch.Tensor, torch.Tensor]]  # name -> (X, y)
    store: Path | None
    options: dict[str, Any] = field(default_factory=dict)


def _toml(path: Path) -> dict[str, TOML]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10
        import tomli as tomllib
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such sweep file.")
    with open(path, "rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: not a valid TOML file: {err}.") from None


def _sized(value: TOML) -> TOML:
    """A ``{smoke, book[, paper]}`` table resolved for the run size; anything else as is."""
    if isinstance(value, dict) and {"smoke", "book"} <= set(value) <= set(config.PROFILES):
        return config.sized(**value)
    return value


def _loader(name: object) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    if not isinstance(name, str):
        raise ValueError(f"set must name a data set (a string), got {name!r}.")
    if name in getattr(datasets, "LOADERS", {}):
        return datasets.LOADERS[name]
    fn: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = getattr(datasets, name, None)
    if not callable(fn) or name.startswith("_"):
        raise ValueError(f"Unknown data set {name!r}: name a loader of implicit_bias.data ("
                         f"{sorted(getattr(datasets, 'LOADERS', {}))} or a function like 'digits_even_odd').")
    return fn


# --- checking a sweep file, field by field -------------------------------------------------

#: More runs than this in one sweep file are refused before they are expanded; above
#: :data:`EXPAND_NOTICE` their count is printed first (each run takes tens of µs to check).
MAX_RUNS = 1_000_000
EXPAND_NOTICE = 10_000


def _is(kind: type | tuple[type, ...]) -> Callable[[object], bool]:
    return lambda v: isinstance(v, kind)


def _import_path(v: object) -> bool:
    return isinstance(v, str) and re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", v) is not None


def _user_object(value: str, name: str, where: str, base: Path | None) -> object:
    """A sweep file's ``"module:attribute"``: the user's own model factory or optimizer
    class, imported as a script's imports are (a sweep file is the user's own configuration,
    like Hydra's ``_target_``; a stored result naming code is another matter, see
    :mod:`implicit_bias.store`). ``module`` is found on ``sys.path`` or beside the file."""
    module, _, attribute = value.partition(":")
    added = base is not None and str(base) not in sys.path
    if added:
        sys.path.insert(0, str(base))
    try:
        obj = importlib.import_module(module)
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except Exception as err:  # the user's module: any error it raises is theirs to read
        raise ValueError(f"{where}: {name} = {value!r}: cannot import it "
                         f"({type(err).__name__}: {err}).") from None
    finally:
        if added:
            sys.path.remove(str(base))
    return obj


#: What each run field must hold (a check, and what to write in its place): the run's own
#: table, and ``seeds``. The rest of a value (a known optimizer, loss, model kind) is checked
#: by :class:`runs.Run`.
FIELD_CHECKS = {**RUN_FIELDS, "data": (RUN_FIELDS["data"][0], "the name of a [data.<name>] table"),
                "seeds": (lambda v: _integer(v, 1), "a count of seeds, an integer ≥ 1"),
                "optimizer": (_is(str), "an optimizer name such as 'SignGD', or your own class as "
                                        "'module:Class'"),
                "model": (lambda v: isinstance(v, dict) or _import_path(v),
                          "a table such as {kind = 'two_layer', width = 16}, or your own factory as "
                          "'module:function'")}


def _check(name: str, value: object, where: str, checks: Mapping[str, FieldCheck] = FIELD_CHECKS) -> None:
    ok, expected = checks[name]
    if not ok(value):
        raise ValueError(f"{where}: {name} = {value!r}: expected {expected}.")


def _axes(block: TOML, where: str) -> dict[str, list[TOML] | range]:
    """One ``[[runs]]`` block as ``name -> values`` (a list or a range, not yet expanded),
    every value checked. ``seeds = N`` becomes ``seed = range(N)``."""
    if not isinstance(block, dict):
        raise ValueError(f"{where}: a [[runs]] block is a table of run fields, got {block!r}.")
    block = {k: _sized(v) for k, v in block.items()}
    unknown = set(block) - set(FIELDS) - {"seeds"}
    if unknown:
        raise ValueError(f"{where}: unknown run fields {sorted(unknown)}; a run has {list(FIELDS)} "
                         "(and seeds).")
    if "seeds" in block:
        if "seed" in block:
            raise ValueError(f"{where}: give either seed or seeds (a count), not both.")
        _check("seeds", block["seeds"], where)
        block["seed"] = range(block.pop("seeds"))
    axes: dict[str, list[TOML] | range] = {}
    for name, value in block.items():
        if isinstance(value, list) and not value:
            raise ValueError(f"{where}: {name} = []: an empty list; give at least one value.")
        values = [_sized(v) for v in value] if isinstance(value, list) else value
        values = values if isinstance(values, (list, range)) else [values]
        if not isinstance(values, range):
            for v in values:
                _check(name, v, where)
        axes[name] = values
    return axes


def _expand(axes: Mapping[str, Sequence[TOML]], where: str, base: Path | None = None) -> list[Run]:
    """The runs of a checked block: the product of its axes, each run built and checked
    (``"module:attribute"`` models and optimizers imported, ``base``: the file's folder)."""
    from .runs import Run

    out: list[Run] = []
    for values in itertools.product(*axes.values()):
        spec = dict(zip(axes, values))
        for name in ("model", "optimizer"):
            if _import_path(spec.get(name)):
                spec[name] = _user_object(spec[name], name, where, base)
        try:
            out.append(Run(**spec))
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"{where}: {err}") from None
    return out


def _count(blocks: Sequence[Mapping[str, Sequence[TOML]]], where: str | Path) -> int:
    """The runs of ``blocks`` (lists of axes), counted before any is built: more than
    :data:`MAX_RUNS` is refused, more than :data:`EXPAND_NOTICE` is announced."""
    total = sum(math.prod(len(v) for v in axes.values()) for axes in blocks)
    if total > MAX_RUNS:
        raise ValueError(f"{where}: {total:,} runs, more than {MAX_RUNS:,}: split the sweep into "
                         "several files, or use fewer values (seeds, rates) per [[runs]] block.")
    if total > EXPAND_NOTICE:
        print(f"expanding {total:,} runs…", file=sys.stderr, flush=True)
    return total


def runs_of(block: dict[str, TOML], where: str = "[[runs]]") -> list[Run]:
    """The runs of one ``[[runs]]`` block: the product of its list-valued fields. Every
    field is checked (type and range) and the runs counted before any is built; errors
    start with ``where``."""
    axes = _axes(block, where)
    _count([axes], where)
    return _expand(axes, where)


def _option_checks() -> dict[str, FieldCheck]:
    """What each top-level option of a sweep file must hold (see :data:`TRAIN_OPTIONS`)."""
    from .history import LOG_POINTS_MAX
    from .norms import names
    from .train import ENGINES, FAILURES

    def norms_ok(v: object) -> bool:
        v = [v] if isinstance(v, str) else v
        return isinstance(v, list) and bool(v) and all(isinstance(x, str) and x in names() for x in v)

    return {
        "store": (_is(str), "a folder, relative to the file"),
        "norms": (norms_ok, f"a norm name or a list of them, from {names()}"),
        "log_points": (lambda v: _integer(v, 1) and v <= LOG_POINTS_MAX,
                       f"an integer in [1, {LOG_POINTS_MAX:,}]"),
        "frame": (_is(bool), "true or false"),
        "directions": (lambda v: isinstance(v, bool) or _integer(v, 1), "true, false or a count ≥ 1"),
        "engine": (lambda v: v in ENGINES, f"one of {list(ENGINES)}"),
        "max_batch": (lambda v: _integer(v, 1), "an integer ≥ 1"),
        "failures": (lambda v: v in FAILURES, f"one of {list(FAILURES)}"),
        "chunk_seconds": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
                          "a number of seconds > 0"),
    }


def _data(tables: TOML, path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The data sets of a sweep file: name -> ``(X, y)``, each table's loader called with its
    options (a loader refuses a bad option, e.g. ``n`` above its data set's size)."""
    if not isinstance(tables, dict):
        raise ValueError(f"{path}: data must be a table such as [data] set = 'digits_even_odd', got "
                         f"{tables!r}.")
    tables = {"data": tables} if "set" in tables else tables
    data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, table in tables.items():
        where = f"{path}: [data.{name}]" if name != "data" else f"{path}: [data]"
        if not isinstance(table, dict) or "set" not in table:
            raise ValueError(f"{where}: a data table names its loader, e.g. set = 'digits_even_odd'.")
        table = {k: _sized(v) for k, v in table.items()}
        try:
            loader = _loader(table.pop("set"))
            data[name] = loader(**table)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{where}: {err}") from None
    return data


def load(path: str | os.PathLike[str], store: str | os.PathLike[str] | None = None) -> Sweep:
    """Read a sweep file for the active run size (``IMPLICIT_BIAS_PROFILE``). Every field
    is checked (its type and range: an error names the file and the field), the runs are
    counted before they are expanded, and their memory is estimated against the machine's
    (:func:`batched.check_limits`) before any model is built."""
    from .batched import check_limits

    path = Path(path)
    spec = _toml(path)
    unknown = set(spec) - {"store", "data", "runs", *TRAIN_OPTIONS}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; a sweep file has store, data, runs "
                         f"and {list(TRAIN_OPTIONS)}.")
    if not spec.get("runs"):
        raise ValueError(f"{path}: no [[runs]] block.")
    if not isinstance(spec["runs"], list):
        raise ValueError(f"{path}: runs must be [[runs]] blocks (tables), got {spec['runs']!r}.")
    options = {k: _sized(spec[k]) for k in TRAIN_OPTIONS if k in spec}
    checks = _option_checks()
    for key in ("store", *options):
        if key in spec and key in checks:
            _check(key, _sized(spec[key]), str(path), checks)
    data = _data(spec.get("data", {}), path)
    wheres = [f"{path}: [[runs]] block {i}" for i in range(1, len(spec["runs"]) + 1)]
    blocks = [_axes(block, where) for block, where in zip(spec["runs"], wheres)]
    _count(blocks, path)
    runs = [r for axes, where in zip(blocks, wheres) for r in _expand(axes, where, path.parent.resolve())]
    missing = sorted({r.data for r in runs} - set(data))
    if missing and data:  # no data at all: a Python caller may pass it to train itself
        raise ValueError(f"{path}: runs ask for data {missing}, but the file has {sorted(data) or 'none'}: "
                         "add a [data] table (or [data.<name>] tables).")
    try:
        check_limits(runs, data, max_batch=options.get("max_batch"), log_points=options.get("log_points", 60))
    except MemoryError as err:
        raise MemoryError(f"{path}: {err}") from None
    where = store if store is not None else spec.get("store")
    if where is not None and store is None:
        where = path.parent / where
    if isinstance(options.get("norms"), str):
        options["norms"] = (options["norms"],)
    return Sweep(runs, data, Path(where) if where is not None else None, options)


def run(path: str | os.PathLike[str], store: str | os.PathLike[str] | None = None,
        executor: Executor | None = None, progress: bool | Literal["runs"] = "runs",
        **overrides: Any) -> tuple[Sweep, Sequence[History | RunFailed]]:
    """Train the sweep file ``path`` into its store (or ``store``); runs already stored
    are skipped. Returns the :class:`Sweep` and its histories. A failed run is recorded
    and returned as its :class:`RunFailed` while the others train on (``failures =
    "return"``, the default here: nothing finished is lost); ``failures = "raise"`` in the
    file or in ``overrides`` stops the sweep at the first, once its stack's good runs are
    stored."""
    from .train import train

    sweep = load(path, store)
    if sweep.store is None:
        raise ValueError(f"{path}: no store: set store = '<folder>' in the file or pass one.")
    if not sweep.data:  # load() allows it: a Python caller may pass the data to train itself
        raise ValueError(f"{path}: no [data] table: add one, e.g. [data] set = 'digits_even_odd' "
                         "(a loader of implicit_bias.data and its options).")
    hists = train(sweep.runs, sweep.data, store=sweep.store, executor=executor, progress=progress,
                  **{"failures": "return", **sweep.options, **overrides})
    return sweep, hists

# --- the report ---------------------------------------------------------------------------


def _stored(store: RunStore, skipped: list[StoreError]) -> Iterator[tuple[str, RunFile, History]]:
    """Every stored run as ``(key, config.json, history)``, one in memory at a time; a file
    that cannot be trusted (damaged, stale, naming code not allowed) goes to ``skipped``."""
    from .store import StoreError

    for key in store.keys():
        try:
            meta, h = store.meta(key), store.load(key)
        except StoreError as err:
            skipped.append(err)
            continue
        yield key, meta, h


def _groups(store: RunStore, skipped: list[StoreError]) -> list[_Group]:
    """Stored runs grouped by everything but the seed: name -> summary arrays. One history
    is in memory at a time; files that cannot be trusted are skipped into ``skipped``."""
    from .store import StoreError

    groups: dict[str, _Group] = {}
    for key, meta, h in _stored(store, skipped):
        run = {**meta.run, "label": h.run.label}
        seed = run.pop("seed", h.run.seed)
        gid = json.dumps([run, meta.data, meta.settings], sort_keys=True)
        g = groups.setdefault(gid, {"run": run, "seeds": [], "steps": h.steps, "loss": [], "margins": {}})
        if len(h.steps) != len(g["steps"]) or np.any(h.steps != g["steps"]):
            skipped.append(StoreError(f"{store.path(key)}: another step grid than its group's."))
            continue
        g["seeds"].append(seed)
        g["loss"].append(h.log_loss / math.log(10))
        for norm, m in h.margins.items():
            g["margins"].setdefault(norm, []).append(m)
    # Name each group by its label and whatever distinguishes it from the others of that label.
    by_label: dict[str, list[_Group]] = {}
    for g in groups.values():
        by_label.setdefault(g["run"]["label"], []).append(g)
    for label, gs in by_label.items():
        keys = dict.fromkeys(k for g in gs for k in g["run"])
        varying = [k for k in keys if len({json.dumps(g["run"].get(k), sort_keys=True) for g in gs}) > 1]
        for g in gs:
            extra = ", ".join(f"{k}={_short(g['run'].get(k))}" for k in varying)
            g["name"] = f"{label} ({extra})" if extra else label
    return sorted(groups.values(), key=lambda g: g["name"])


def _short(value: object) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def report(store: StoreLike, out: str | os.PathLike[str] | None = None, level: float = 0.95,
           figures: bool = True, allow: Allow = (), errors: list[StoreError] | None = None,
           failed: list[FailedRun] | None = None) -> tuple[list[dict[str, object]], list[Path]]:
    """The summary of a stored sweep: one row per group of runs that differ only in their
    seed, with the mean ± ``level`` Student-t half-width over seeds of the final log10 loss
    and of every final margin. Prints the table; with ``figures`` saves
    ``final_margins.png``, ``margins.png`` and ``loss.png`` under ``out`` (default
    ``<store>/report``). Returns the rows and the figure paths.

    A stored file that cannot be trusted (damaged, stale, naming code that is neither the
    library's nor in ``allow``, see :class:`store.RunStore`) is skipped, listed on stderr at
    the end, and its :class:`store.StoreError` appended to ``errors`` when given. The runs
    that failed (recorded in ``<store>/failed/``, :func:`store.failed_runs`) are listed after
    the table, and their records appended to ``failed`` when given."""
    from .stats import mean_interval
    from .store import RunStore

    store = RunStore.of(store, allow)
    skipped: list[StoreError] = [] if errors is None else errors
    start = len(skipped)
    groups = _groups(store, skipped)
    records = _failed(store)
    if failed is not None:
        failed.extend(records)
    if not groups:
        _list_failed(store, records)
        _list_skipped(skipped[start:])
        if len(skipped) > start:
            raise ValueError(f"{store.root}: no stored run could be read ({len(skipped) - start} "
                             "skipped, listed above).")
        raise ValueError(f"{store.root}: no stored runs.")
    norms = list(dict.fromkeys(n for g in groups for n in g["margins"]))
    rows: list[dict[str, object]] = []
    for g in groups:
        row: dict[str, object] = {"runs": g["name"], "seeds": len(g["seeds"])}
        for name, values in [("log10 loss", g["loss"]), *((n, g["margins"].get(n)) for n in norms)]:
            if values is None:
                row[name] = "–"
                continue
            mean, half = mean_interval(np.array([v[-1] for v in values]), level)
            row[name] = f"{mean:.4g} ± {half:.2g}" if math.isfinite(half) else f"{mean:.4g}"
        rows.append(row)
    from .plots import table

    print(f"{store.root}: {sum(len(g['seeds']) for g in groups)} runs in {len(groups)} groups; "
          f"mean ± {level:.0%} interval over seeds of the final values")
    print(table(rows))
    paths = _figures(groups, norms, Path(out) if out is not None else store.root / "report", level) \
        if figures else []
    for p in paths:
        print(f"saved {p}")
    _list_failed(store, records)
    _list_skipped(skipped[start:])
    return rows, paths


def _failed(store: RunStore) -> list[FailedRun]:
    """The failure records of runs not stored (a rerun that stored a run removed its
    record; one left by a concurrent writer is no failure)."""
    from .store import failed_runs

    return [r for key, r in failed_runs(store).items() if not store.path(key).exists()]


def _list_failed(store: RunStore, records: list[FailedRun]) -> None:
    if records:
        print(f"{len(records)} run(s) failed, not in the table (recorded in {store.root / 'failed'}; "
              "rerun the sweep to train them again):")
        for r in records:
            print(f"  {r.reason}")


def _list_skipped(skipped: Sequence[StoreError]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} stored file(s) that cannot be trusted:", file=sys.stderr)
        for err in skipped:
            print(f"  {err}", file=sys.stderr)


def _figures(groups: Sequence[_Group], norms: Sequence[str], out: Path, level: float) -> list[Path]:
    import matplotlib.colors

    from .plots import _pyplot, color, norm_label
    from .stats import mean_interval

    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    # Groups of one optimizer share its colour, from dark to light (e.g. over its rates).
    shades: dict[str, tuple[float, ...]] = {}
    by_label: dict[str, list[str]] = {}
    for g in groups:
        by_label.setdefault(g["run"]["label"], []).append(g["name"])
    for label, names in by_label.items():
        base = np.array(matplotlib.colors.to_rgb(color(label)))
        for j, name in enumerate(names):
            shades[name] = tuple(base + (1 - base) * 0.6 * j / max(1, len(names) - 1))
    # 1. Final margins: one panel per norm, a point and its interval per group.
    fig, axes = plt.subplots(1, len(norms), figsize=(4 * len(norms), 0.6 + 0.35 * len(groups)),
                             squeeze=False)
    for ax, norm in zip(axes[0], norms):
        for i, g in enumerate(groups):
            if norm in g["margins"]:
                mean, half = mean_interval(np.array([v[-1] for v in g["margins"][norm]]), level)
                ax.errorbar(mean, i, xerr=0 if not math.isfinite(half) else half, fmt="o",
                            color=shades[g["name"]], capsize=3)
        ax.set_yticks(range(len(groups)), [g["name"] for g in groups] if ax is axes[0][0] else [])
        ax.set_title(f"final margin, {norm_label(norm)}")
        ax.invert_yaxis()
    fig.tight_layout()
    paths.append(_save(fig, out / "final_margins.png", plt))
    # 2. Margins and 3. the loss over training: the mean over seeds and its band.
    for name, panels in [("margins", norms), ("loss", ["log10 loss"])]:
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.3), squeeze=False)
        for ax, panel in zip(axes[0], panels):
            for g in groups:
                values = g["loss"] if panel == "log10 loss" else g["margins"].get(panel)
                if values is None:
                    continue
                mean, half = mean_interval(np.array(values), level)
                c = shades[g["name"]]
                ax.plot(g["steps"], mean, color=c, lw=1.3, label=g["name"])
                if len(values) > 1:
                    ax.fill_between(g["steps"], mean - half, mean + half, color=c, alpha=0.2, lw=0)
            ax.set_xscale("log")
            ax.set_xlabel("step")
            ax.set_title(panel if panel == "log10 loss" else f"normalized margin, {norm_label(panel)}")
        axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5),
                           ncol=1 + len(groups) // 16)
        fig.tight_layout()
        paths.append(_save(fig, out / f"{name}.png", plt))
    return paths


def _save(fig: Figure, path: Path, plt: types.ModuleType) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["Sweep", "load", "run", "runs_of", "report", "executor", "FIELDS", "TRAIN_OPTIONS"]
