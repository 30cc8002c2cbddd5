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
figures (:func:`report`). :func:`executor` turns a short spec into an executor for
``train(executor=...)``.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import config
from . import data as datasets

#: Run fields a sweep file may set (a list is a dimension of the product).
FIELDS = ("optimizer", "lr", "steps", "schedule", "seed", "model", "data", "options", "loss",
          "label", "dtype", "batch", "batch_size")

#: Top-level keys of a sweep file other than its tables, and the train() options they set.
TRAIN_OPTIONS = ("norms", "log_points", "frame", "directions", "engine", "max_batch")


@dataclass
class Sweep:
    """A sweep file read for the active run size: its runs, data, store and train options."""

    runs: list
    data: dict  # name -> (X, y)
    store: Path | None
    options: dict = field(default_factory=dict)


def _toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(path, "rb") as f:
        return tomllib.load(f)


def _sized(value):
    """A ``{smoke, book[, paper]}`` table resolved for the run size; anything else as is."""
    if isinstance(value, dict) and {"smoke", "book"} <= set(value) <= set(config.PROFILES):
        return config.sized(**value)
    return value


def _loader(name: str):
    if name in getattr(datasets, "LOADERS", {}):
        return datasets.LOADERS[name]
    fn = getattr(datasets, name, None)
    if not callable(fn) or name.startswith("_"):
        raise ValueError(f"Unknown data set {name!r}: name a loader of implicit_bias.data ("
                         f"{sorted(getattr(datasets, 'LOADERS', {}))} or a function like 'digits_even_odd').")
    return fn


def runs_of(block: dict) -> list:
    """The runs of one ``[[runs]]`` block: the product of its list-valued fields."""
    from .runs import Run

    block = {k: _sized(v) for k, v in block.items()}
    if "seeds" in block:
        if "seed" in block:
            raise ValueError("give either seed or seeds (a count), not both.")
        block["seed"] = list(range(int(block.pop("seeds"))))
    unknown = set(block) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown run fields {sorted(unknown)}; a run has {list(FIELDS)} (and seeds).")
    names = list(block)
    axes = [[_sized(x) for x in v] if isinstance(v, list) else [v] for v in block.values()]
    out = []
    for values in itertools.product(*axes):
        spec = dict(zip(names, values))
        if isinstance(spec.get("options", {}).get("betas"), list):
            spec["options"] = {**spec["options"], "betas": tuple(spec["options"]["betas"])}
        out.append(Run(**spec))
    return out


def load(path, store=None) -> Sweep:
    """Read a sweep file for the active run size (``IMPLICIT_BIAS_PROFILE``)."""
    path = Path(path)
    spec = _toml(path)
    unknown = set(spec) - {"store", "data", "runs", *TRAIN_OPTIONS}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; a sweep file has store, data, runs "
                         f"and {list(TRAIN_OPTIONS)}.")
    if not spec.get("runs"):
        raise ValueError(f"{path}: no [[runs]] block.")
    tables = spec.get("data", {})
    tables = {"data": tables} if "set" in tables else tables
    data = {}
    for name, table in tables.items():
        table = {k: _sized(v) for k, v in table.items()}
        data[name] = _loader(table.pop("set"))(**table)
    runs = [r for block in spec["runs"] for r in runs_of(block)]
    where = store if store is not None else spec.get("store")
    if where is not None and store is None:
        where = path.parent / where
    options = {k: _sized(spec[k]) for k in TRAIN_OPTIONS if k in spec}
    if isinstance(options.get("norms"), str):
        options["norms"] = (options["norms"],)
    return Sweep(runs, data, Path(where) if where is not None else None, options)


def run(path, store=None, executor=None, progress="runs", **overrides):
    """Train the sweep file ``path`` into its store (or ``store``); runs already stored
    are skipped. Returns the :class:`Sweep` and its histories."""
    from .train import train

    sweep = load(path, store)
    if sweep.store is None:
        raise ValueError(f"{path}: no store: set store = '<folder>' in the file or pass one.")
    hists = train(sweep.runs, sweep.data, store=sweep.store, executor=executor, progress=progress,
                  **{**sweep.options, **overrides})
    return sweep, hists


_EXECUTORS: dict = {}


def executor(spec: str):
    """An executor from a short spec, made once per process: ``processes:N`` (a local
    process pool), ``dask-local:N`` (a dask LocalCluster of N single-thread worker
    processes), ``dask:ADDRESS`` (a running dask scheduler, e.g. ``tcp://host:8786``).
    For Slurm build a submitit executor yourself (``examples/submitit_sweep.py``)."""
    if spec in _EXECUTORS:
        return _EXECUTORS[spec]
    kind, _, arg = spec.partition(":")
    if kind == "processes":
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the parent may hold CUDA state, which a forked worker cannot use
        ex = ProcessPoolExecutor(int(arg) if arg else None, mp_context=multiprocessing.get_context("spawn"))
    elif kind in ("dask", "dask-local"):
        from distributed import Client, LocalCluster

        if kind == "dask-local":
            cluster = LocalCluster(n_workers=int(arg or 2), threads_per_worker=1, processes=True)
            client = Client(cluster)
        else:
            client = Client(arg)
        ex = client.get_executor()
    else:
        raise ValueError(f"Unknown executor {spec!r}: use processes:N, dask-local:N or dask:ADDRESS.")
    _EXECUTORS[spec] = ex
    return ex


# --- the report ---------------------------------------------------------------------------


def _groups(store):
    """Stored runs grouped by everything but the seed: name -> summary arrays. One history
    is in memory at a time."""
    groups: dict = {}
    for key in store.keys():
        meta = store.meta(key)
        run = dict(meta["run"])
        seed = run.pop("seed")
        gid = json.dumps([run, meta["data"], meta["settings"]], sort_keys=True)
        h = store.load(key)
        g = groups.setdefault(gid, {"run": run, "seeds": [], "steps": h.steps, "loss": [], "margins": {}})
        if len(h.steps) != len(g["steps"]) or np.any(h.steps != g["steps"]):
            raise ValueError(f"{store.path(key)}: another step grid than its group's.")
        g["seeds"].append(seed)
        g["loss"].append(h.log_loss / math.log(10))
        for norm, m in h.margins.items():
            g["margins"].setdefault(norm, []).append(m)
    # Name each group by its label and whatever distinguishes it from the others of that label.
    by_label: dict = {}
    for g in groups.values():
        by_label.setdefault(g["run"]["label"], []).append(g)
    for label, gs in by_label.items():
        varying = [k for k in gs[0]["run"] if len({json.dumps(g["run"][k], sort_keys=True) for g in gs}) > 1]
        for g in gs:
            extra = ", ".join(f"{k}={_short(g['run'][k])}" for k in varying)
            g["name"] = f"{label} ({extra})" if extra else label
    return sorted(groups.values(), key=lambda g: g["name"])


def _short(value) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def report(store, out=None, level: float = 0.95, figures: bool = True):
    """The summary of a stored sweep: one row per group of runs that differ only in their
    seed, with the mean ± ``level`` Student-t half-width over seeds of the final log10 loss
    and of every final margin. Prints the table; with ``figures`` saves
    ``final_margins.png``, ``margins.png`` and ``loss.png`` under ``out`` (default
    ``<store>/report``). Returns the rows and the figure paths."""
    from .stats import mean_interval
    from .store import RunStore

    store = RunStore.of(store)
    groups = _groups(store)
    if not groups:
        raise ValueError(f"{store.root}: no stored runs.")
    norms = list(dict.fromkeys(n for g in groups for n in g["margins"]))
    rows = []
    for g in groups:
        row = {"runs": g["name"], "seeds": len(g["seeds"])}
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
    return rows, paths


def _figures(groups, norms, out: Path, level: float) -> list:
    import matplotlib.colors

    from .plots import _pyplot, color, norm_label
    from .stats import mean_interval

    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    # Groups of one optimizer share its colour, from dark to light (e.g. over its rates).
    shades, by_label = {}, {}
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


def _save(fig, path: Path, plt) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["Sweep", "load", "run", "runs_of", "report", "executor", "FIELDS", "TRAIN_OPTIONS"]
