"""The results store: run files (NPZ + JSON, keyed by run, data, settings and the training
version, validated on load, written atomically) and the chapters' table files; the CI check
that every stored file loads and matches the current code."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import implicit_bias as ib
import numpy as np
import pytest
import torch
from implicit_bias import runs as runs_module
from implicit_bias import store
from implicit_bias import train as training
from implicit_bias.train import Run, train

RESULTS = Path(__file__).resolve().parent.parent / "results"
DATA = {"set": "digits_even_odd", "n": None}
NET = {"kind": "two_layer", "width": 8, "activation": "relu2"}


def sweep(steps=100):
    return [Run("Adam", 0.1, steps, seed=s, options={"betas": (0.9, 0.95)}) for s in range(2)]


@pytest.fixture(scope="module")
def digits():
    return ib.data.digits_even_odd(n=120)


def small_runs(steps=40):
    return [Run(o, lr, steps, schedule=0.5, seed=s, model=NET, options=opts)
            for o, lr, opts in [("NormalizedGD", 0.5, {}), ("Adam", 0.01, {"betas": (0.9, 0.95)})]
            for s in range(2)]


def same(a, b):
    """Two histories equal to the bit: every series, the direction rows, the parameters."""
    assert a.run == b.run
    assert np.array_equal(a.steps, b.steps) and np.array_equal(a.log_loss, b.log_loss)
    assert a.margins.keys() == b.margins.keys()
    assert all(np.array_equal(a.margins[n], b.margins[n]) for n in a.margins)
    assert np.array_equal(a.param_norm, b.param_norm) and np.array_equal(a.directions, b.directions)
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert p.dtype == q.dtype and torch.equal(p, q)


# --- run files ------------------------------------------------------------------------------


def test_a_sweep_round_trips_through_the_store_to_the_bit(tmp_path, digits):
    live = train(small_runs(), digits, norms=("l2", "linf"), progress=False)
    stored = train(small_runs(), digits, norms=("l2", "linf"), progress=False, store=tmp_path)
    assert isinstance(stored, store.StoredHistories) and len(stored) == 4
    assert len(store.RunStore(tmp_path)) == 4
    for a, b in zip(live, stored):
        same(a, b)
    # The file is open: a zip of config.json and .npy arrays.
    path = next((tmp_path / "runs").glob("*.npz"))
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("config.json"))
        assert {"steps.npy", "log_loss.npy", "margin_0.npy", "parameters.npy"} <= set(z.namelist())
    assert meta["run"]["model"] == NET and meta["margins"] == ["l2", "linf"]
    assert meta["library_version"] == ib.__version__ and meta["training_version"] == training.TRAINING_VERSION
    # ... and read back as a RunFile, which writes the same text again
    described = store.RunStore(tmp_path).meta(path)
    assert described.run == meta["run"] and described.margins == ["l2", "linf"] and described.input_dim == 64
    assert json.loads(described.to_json()) == meta
    assert np.load(path)["log_loss"].shape == (len(stored[0].steps),)


def test_every_field_of_a_run_file_is_checked_and_the_required_ones_are_required(tmp_path, digits):
    import dataclasses

    train(small_runs()[:1], digits, norms="l2", progress=False, store=tmp_path)
    path = next((tmp_path / "runs").glob("*.npz"))
    with zipfile.ZipFile(path) as z:
        meta = json.loads(z.read("config.json"))
    assert store.RunFile.from_json(path, meta) == store.RunStore(tmp_path).meta(path)
    for field in dataclasses.fields(store.RunFile):
        with pytest.raises(store.StoreError, match=field.name):
            store.RunFile.from_json(path, {**meta, field.name: [[1]]})  # no field's type
    required = {"format", "key", "training_version", "run", "data", "settings", "margins", "observed",
                "input_dim", "dtype"}
    for name in required:
        with pytest.raises(store.StoreError, match=f"lacks \\['{name}'\\]"):
            store.RunFile.from_json(path, {k: v for k, v in meta.items() if k != name})
    # notes may be missing (older files), and a newer note is ignored
    old = {k: v for k, v in meta.items() if k in required}
    assert store.RunFile.from_json(path, {**old, "a later note": 1}).seconds == 0.0


def test_a_failure_record_that_cannot_be_read_is_skipped(tmp_path):
    folder = tmp_path / "failed"
    folder.mkdir()
    good = {"key": "a", "run": {"optimizer": "Adam"}, "label": "Adam", "reason": "diverged", "step": 3}
    (folder / "a.json").write_text(json.dumps(good))
    (folder / "b.json").write_text(json.dumps({**good, "key": "b", "step": "three"}))
    (folder / "c.json").write_text(json.dumps({**good, "key": "another"}))
    (folder / "d.json").write_text("{not json")
    records = store.failed_runs(tmp_path)
    assert list(records) == ["a"] and records["a"].step == 3 and records["a"].margins == []


def test_directions_can_be_dropped_or_thinned(tmp_path, digits):
    full = train(small_runs()[:1], digits, norms="l2", progress=False)[0]
    (none,) = train(small_runs()[:1], digits, norms="l2", progress=False, directions=False, store=tmp_path)
    assert none.directions.shape == (0, full.directions.shape[1]) and len(none.direction_steps) == 0
    (few,) = train(small_runs()[:1], digits, norms="l2", progress=False, directions=5)
    assert len(few.directions) == len(few.direction_steps) == 5
    assert few.direction_steps[0] == full.steps[0] and few.direction_steps[-1] == full.steps[-1]
    index = list(full.steps).index(few.direction_steps[2])
    assert np.array_equal(few.directions[2], full.directions[index])
    assert few.cosine_to_final()[-1] == pytest.approx(1.0)
    big = store.RunStore(tmp_path).path(store.RunStore(tmp_path).keys()[0]).stat().st_size
    assert big < 8000, big  # no directions: the series and the final parameters only


def test_a_file_is_validated_and_errors_name_it(tmp_path, digits):
    train(small_runs()[:1], digits, norms="l2", progress=False, store=tmp_path)
    s = store.RunStore(tmp_path)
    (key,) = s.keys()
    path = s.path(key)
    good = path.read_bytes()

    def rewrite(change):
        with zipfile.ZipFile(path.with_suffix(".orig"), "w") as out, zipfile.ZipFile(path) as z:
            files = {n: z.read(n) for n in z.namelist()}
            change(files)
            for n, b in files.items():
                out.writestr(n, b)
        path.with_suffix(".orig").replace(path)

    def broken(change, match):
        path.write_bytes(good)
        rewrite(change)
        with pytest.raises(store.StoreError, match=match) as err:
            s.load(key)
        assert str(path) in str(err.value)

    def meta(update):
        def change(files):
            m = json.loads(files["config.json"])
            update(m)
            files["config.json"] = json.dumps(m).encode()
        return change

    broken(meta(lambda m: m["run"].update(lr=0.7)), "does not hash to its name")
    broken(meta(lambda m: m.update(format=99)), "store format 99")
    # the version is hashed too: an edited one is not a stale file (test_store_damage.py)
    broken(meta(lambda m: m.update(training_version=0)), "does not hash to its name")
    broken(meta(lambda m: m.pop("settings")), "lacks")
    broken(lambda f: f.pop("log_loss.npy"), "log_loss.npy is missing")
    broken(lambda f: f.update({"config.json": b"[1, 2]"}), "holds a list")

    def short(files):
        import io
        buf = io.BytesIO()
        np.save(buf, np.zeros(3))
        files["param_norm.npy"] = buf.getvalue()
    broken(short, "param_norm has shape")
    path.write_bytes(b"not a zip")
    with pytest.raises(store.StoreError, match="not a readable stored run"):
        s.load(key)
    # A file copied under another run's name is refused by its content.
    path.write_bytes(good)
    other = s.path("0" * 20)
    other.write_bytes(good)
    with pytest.raises(store.StoreError, match=str(other)):
        s.load(other)


def test_a_release_that_does_not_touch_training_keeps_results_found(tmp_path, digits, monkeypatch):
    first = train(small_runs()[:2], digits, norms="l2", progress=False, store=tmp_path)
    monkeypatch.setattr(ib, "__version__", "9.9.9")  # a new release, training unchanged
    def trained_again(*args, **kwargs):
        raise RuntimeError("trained again")

    monkeypatch.setattr(training, "train_chunk", trained_again)
    again = train(small_runs()[:2], digits, norms="l2", progress=False, store=tmp_path)
    same(first[0], again[0])
    # A change of training (its version) makes them not found, never stale ...
    monkeypatch.setattr(runs_module, "TRAINING_VERSION", runs_module.TRAINING_VERSION + 1)
    with pytest.raises(RuntimeError, match="trained again"):
        train(small_runs()[:2], digits, norms="l2", progress=False, store=tmp_path)
    # ... and an old file read directly is an error naming it.
    with pytest.raises(store.StoreError, match="training version"):
        store.RunStore(tmp_path).load(store.RunStore(tmp_path).keys()[0])


def test_the_key_holds_the_run_the_data_and_the_settings(tmp_path, digits):
    X, y = digits
    base = train(small_runs()[:1], (X, y), norms="l2", progress=False, store=tmp_path)
    n = len(store.RunStore(tmp_path))
    train(small_runs()[:1], (X, y), norms=("l2", "linf"), progress=False, store=tmp_path)
    train(small_runs(steps=41)[:1], (X, y), norms="l2", progress=False, store=tmp_path)
    train(small_runs()[:1], (X, -y), norms="l2", progress=False, store=tmp_path)  # other data
    assert len(store.RunStore(tmp_path)) == n + 3
    # The same data under another name, or as numpy arrays, is the same data.
    again = train(small_runs()[:1], {"data": (X.numpy(), y.numpy())}, norms="l2", progress=False,
                  store=tmp_path)
    assert again.keys == base.keys and len(store.RunStore(tmp_path)) == n + 3


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    import os
    target = tmp_path / "runs" / "x.npz"
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        store._atomic_write(target, b"data")
    assert list((tmp_path / "runs").iterdir()) == []


def test_runs_with_a_lambda_model_cannot_be_stored(tmp_path, digits):
    run = Run("NormalizedGD", 0.1, 5, model=lambda d: ib.models.Linear(d))
    with pytest.raises(TypeError, match="top level of an importable module"):
        train(run, digits, progress=False, store=tmp_path)


def test_a_name_that_does_not_import_back_is_refused(tmp_path, digits):
    # a generated factory (its qualname is not an attribute path) would store a run no load finds
    run = Run("NormalizedGD", 0.1, 5, model=ib.models.pairwise_factory(ib.models.TwoLayerMulticlass, width=4))
    with pytest.raises(TypeError, match="top level of an importable module"):
        store.run_config(run)


def test_a_store_from_the_environment_skips_a_call_it_cannot_key(tmp_path, digits, monkeypatch):
    monkeypatch.setenv("IMPLICIT_BIAS_STORE", str(tmp_path))
    run = Run("NormalizedGD", 0.1, 5, model=lambda d: ib.models.Linear(d))
    with pytest.warns(UserWarning, match="IMPLICIT_BIAS_STORE ignored"):
        (h,) = train(run, digits, progress=False)
    assert len(h.steps) and not any(tmp_path.rglob("*.npz"))


def test_norm_objects_are_keyed_by_their_whole_state():
    a, b = torch.eye(3), torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    keys = {store.norm_key(ib.norms.Mahalanobis(m)) for m in (a.double(), b, b.clone())}
    assert len(keys) == 2 and store.norm_key("l2") == "l2"

# --- chapters' tables --------------------------------------------------------------------------


def test_round_trip_and_keys(tmp_path, monkeypatch):
    s = store.Store(tmp_path)
    assert s.load("ch", sweep(), DATA) is None
    path = s.save("ch", sweep(), DATA, {"final": [{"label": "Adam", "l2": 0.5}]}, device="cpu", seconds=3)
    assert path.parent.name == "ch" and path.stem == store.key(sweep(), DATA)
    entry = s.load("ch", sweep(), DATA)
    assert entry["results"] == {"final": [{"label": "Adam", "l2": 0.5}]}
    assert entry["version"] == ib.__version__ and entry["runs"][0]["options"]["betas"] == [0.9, 0.95]
    assert store.check(path)["key"] == path.stem
    # Another sweep or other data: another key, so nothing stale is found.
    assert s.load("ch", sweep(steps=200), DATA) is None
    assert s.load("ch", sweep(), {**DATA, "n": 600}) is None
    assert s.files() == [path]
    # A release that does not touch training keeps the table; a training change does not.
    monkeypatch.setattr(ib, "__version__", "9.9.9")
    assert s.load("ch", sweep(), DATA)["key"] == path.stem
    monkeypatch.setattr(runs_module, "TRAINING_VERSION", runs_module.TRAINING_VERSION + 1)
    assert s.load("ch", sweep(), DATA) is None


def test_load_refuses_a_file_that_is_not_its_table(tmp_path):
    s = store.Store(tmp_path)
    path = s.save("ch", sweep(), DATA, {"x": 1})
    path.write_text("[1, 2, 3]")
    with pytest.raises(store.StoreError, match=str(path)):
        s.load("ch", sweep(), DATA)


def test_check_refuses_stale_or_tampered_files(tmp_path):
    s = store.Store(tmp_path)
    path = s.save("ch", sweep(), DATA, {"x": 1})
    entry = json.loads(path.read_text())

    def bad(change, match):
        broken = json.loads(json.dumps(entry))
        change(broken)
        target = tmp_path / "ch" / f"{broken['key']}.json"
        target.write_text(json.dumps(broken))
        with pytest.raises(store.StoreError, match=match):
            store.check(target)
        target.unlink()

    bad(lambda e: e["runs"][0].pop("dtype"), "fields")  # an older Run without a field
    bad(lambda e: e["runs"][0].update(warmup=10), "fields")  # a field this Run does not know
    bad(lambda e: e["runs"][0].update(optimizer="Lino"), "Unknown optimizer")
    bad(lambda e: e.update(training_version=0), "training version 0")
    bad(lambda e: e["runs"][0].update(lr=0.2), "key")
    bad(lambda e: e.pop("results"), "missing")


def test_every_stored_result_loads_and_matches_the_code():
    files = store.Store(RESULTS).files()
    total = sum(p.stat().st_size for p in files)
    assert total < store.MAX_TOTAL_BYTES, f"stored results take {total / 2**20:.1f} MiB"
    for path in files:
        entry = store.check(path)
        assert entry["results"], path
