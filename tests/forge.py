"""Store files written the way an attacker or a crash would: a real stored run whose
config.json is changed and whose name is the hash of the new content (anyone can recompute
it with :func:`store.run_key`), and side-effect modules that leave a marker file if they
are ever imported. Shared by test_store_forged.py and test_store_damage.py."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

from implicit_bias import data, store
from implicit_bias.train import Run, train

NET = {"kind": "two_layer", "width": 4, "activation": "relu2"}
QUIET = dict(norms=("l2",), progress=False, log_points=8)


def tiny_data():
    return data.gaussian(n=20, d=5, seed=0)


def tiny_runs(n: int = 1, **kw) -> list:
    return [Run("NormalizedGD", 0.1, 10, seed=s, model=NET, **kw) for s in range(n)]


def stored(root, runs=None, **kw) -> list[Path]:
    """Train ``runs`` (default one tiny run) into the store ``root``; their files."""
    runs = tiny_runs() if runs is None else runs
    out = train(runs, tiny_data(), store=root, **{**QUIET, **kw})
    return [store.RunStore(root).path(k) for k in out.keys]


def read(path) -> tuple[dict, dict]:
    """A stored file's config.json and its other members (bytes)."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    return json.loads(members.pop("config.json")), members


def forge(path, change, root, rehash: bool = True) -> Path:
    """A copy of the stored file ``path`` in store ``root`` with ``change(meta)`` applied
    to its config.json and, with ``rehash``, named by the hash of its new content."""
    meta, members = read(path)
    change(meta)
    key = Path(path).stem
    if rehash:
        key = store.run_key(meta["run"], meta["data"], meta["settings"], meta["training_version"])
        meta["key"] = key
    target = Path(root) / "runs" / f"{key}.npz"
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", json.dumps(meta))
        for name, b in members.items():
            z.writestr(name, b)
    return target


SIDE_EFFECT = '''
import pathlib
pathlib.Path({marker!r}).write_text("imported")

def make_net(d):
    pathlib.Path({marker!r}).write_text("called")

def observe(model, optimizer, frame):
    return {{}}
'''


def side_effect_module(folder: Path, name: str) -> Path:
    """A module ``name`` in ``folder`` that writes a marker file when imported; the marker."""
    marker = folder / f"{name}.marker"
    (folder / f"{name}.py").write_text(SIDE_EFFECT.format(marker=str(marker)))
    sys.modules.pop(name, None)
    return marker
