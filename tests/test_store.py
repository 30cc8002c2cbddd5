"""The results store: files named by their sweep and version, and the CI check that every
stored file loads and matches the current code's run configs."""

from __future__ import annotations

import json
from pathlib import Path

import implicit_bias as ib
import pytest
from implicit_bias import store
from implicit_bias.train import Run

RESULTS = Path(__file__).resolve().parent.parent / "results"
DATA = {"set": "digits_even_odd", "n": None}


def sweep(steps=100):
    return [Run("Adam", 0.1, steps, seed=s, options={"betas": (0.9, 0.95)}) for s in range(2)]


def test_round_trip_and_keys(tmp_path):
    s = store.Store(tmp_path)
    assert s.load("ch", sweep(), DATA) is None
    path = s.save("ch", sweep(), DATA, {"final": [{"label": "Adam", "l2": 0.5}]}, device="cpu", seconds=3)
    assert path.parent.name == "ch" and path.stem == store.key(sweep(), DATA)
    entry = s.load("ch", sweep(), DATA)
    assert entry["results"] == {"final": [{"label": "Adam", "l2": 0.5}]}
    assert entry["version"] == ib.__version__ and entry["runs"][0]["options"]["betas"] == [0.9, 0.95]
    assert store.check(path)["key"] == path.stem
    # Another sweep, other data or another version: another key, so nothing stale is found.
    assert s.load("ch", sweep(steps=200), DATA) is None
    assert s.load("ch", sweep(), {**DATA, "n": 600}) is None
    assert store.key(sweep(), DATA, version="0.0.1") != store.key(sweep(), DATA)
    assert s.files() == [path]


def test_check_refuses_stale_or_tampered_files(tmp_path):
    s = store.Store(tmp_path)
    path = s.save("ch", sweep(), DATA, {"x": 1})
    entry = json.loads(path.read_text())

    def bad(change, match):
        broken = json.loads(json.dumps(entry))
        change(broken)
        target = tmp_path / "ch" / f"{broken['key']}.json"
        target.write_text(json.dumps(broken))
        with pytest.raises((ValueError, TypeError), match=match):
            store.check(target)
        target.unlink()

    bad(lambda e: e["runs"][0].pop("dtype"), "fields")  # an older Run without a field
    bad(lambda e: e["runs"][0].update(warmup=10), "fields")  # a field this Run does not know
    bad(lambda e: e["runs"][0].update(optimizer="Lino"), "Unknown optimizer")
    bad(lambda e: e.update(version="0.0.1"), "key")
    bad(lambda e: e.pop("results"), "missing")


def test_every_stored_result_loads_and_matches_the_code():
    files = store.Store(RESULTS).files()
    total = sum(p.stat().st_size for p in files)
    assert total < store.MAX_TOTAL_BYTES, f"stored results take {total / 2**20:.1f} MiB"
    for path in files:
        entry = store.check(path)
        assert entry["results"], path
