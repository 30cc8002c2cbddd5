"""Damaged store files are found, never trusted: a resumed sweep moves them to
``<root>/quarantine/`` and trains exactly their runs again; the report and ``histories()``
skip and list them (the command line then exits 1); a file of another training version
says whether its run was retrained; killed writers' temporary files are removed; a store
that cannot be written is refused before anything trains."""

from __future__ import annotations

import os
import time
import zipfile

import numpy as np
import pytest
from forge import NET, QUIET, forge, stored, tiny_data, tiny_runs
from implicit_bias import runs as runs_module
from implicit_bias import store, sweep
from implicit_bias import train as training
from implicit_bias.__main__ import main
from implicit_bias.train import Run


def truncated(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def zero_bytes(path):
    path.write_bytes(b"")


def random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


def bad_crc(path):
    """One byte of the parameters' compressed data flipped: the zip's directory is intact,
    so only reading the array finds it."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("parameters.npy")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def edited(path):
    """Its config edited but not re-hashed: another training version written in."""
    forge(path, lambda m: m.update(training_version=0), path.parent.parent, rehash=False)


DAMAGE = {"truncated": truncated, "zero bytes": zero_bytes, "random bytes": random_bytes,
          "bad CRC": bad_crc, "edited version": edited}


def counting(monkeypatch) -> list:
    """The runs trained from now on."""
    trained, real = [], training.train_chunk
    monkeypatch.setattr(training, "train_chunk", lambda rs, *a, **k: trained.extend(rs) or real(rs, *a, **k))
    return trained


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_resumed_sweep_quarantines_a_damaged_file_and_trains_exactly_its_run(damage, tmp_path,
                                                                              monkeypatch):
    runs = tiny_runs(3)
    paths = stored(tmp_path, runs, max_batch=1)
    before = [store.RunStore(tmp_path).load(p) for p in paths]
    good = paths[1].read_bytes()
    DAMAGE[damage](paths[1])
    assert paths[1].read_bytes() != good
    trained = counting(monkeypatch)
    with pytest.warns(store.StoreWarning, match="quarantine"):
        again = training.train(runs, tiny_data(), store=tmp_path, max_batch=1, **QUIET)
    assert trained == [runs[1]]
    assert (tmp_path / "quarantine" / paths[1].name).exists()
    for a, b in zip(before, again, strict=True):  # the retrained run equals the lost one, to the bit
        assert np.array_equal(a.log_loss, b.log_loss) and np.array_equal(a.margins["l2"], b.margins["l2"])
    trained.clear()
    training.train(runs, tiny_data(), store=tmp_path, max_batch=1, **QUIET)
    assert trained == []


def test_has_checks_the_structure_and_verified_reads_all(tmp_path):
    paths = stored(tmp_path, tiny_runs(4), max_batch=1)
    s = store.RunStore(tmp_path)
    assert all(s.has(p.stem) for p in paths) and not s.has("0" * 20)
    truncated(paths[0])
    zero_bytes(paths[1])
    random_bytes(paths[2])
    bad_crc(paths[3])
    assert [s.has(p.stem) for p in paths] == [False, False, False, True]  # a CRC needs a read
    with pytest.warns(store.StoreWarning):
        assert not s.verified(paths[3].stem)
    assert not paths[3].exists() and (tmp_path / "quarantine" / paths[3].name).exists()


def test_the_report_skips_damaged_files_lists_them_and_exits_1(tmp_path, capsys):
    paths = stored(tmp_path, tiny_runs(4), max_batch=1)
    truncated(paths[0])
    zero_bytes(paths[1])
    errors = []
    rows, _ = sweep.report(tmp_path, figures=False, errors=errors)
    assert rows[0]["seeds"] == 2 and len(errors) == 2
    assert {str(paths[0]), str(paths[1])} == {str(e).split(": ")[0] for e in errors}
    assert "skipped 2 stored file(s)" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--no-figures"]) == 1
    out, err = capsys.readouterr()
    assert "2 runs in 1 groups" in out and str(paths[0]) in err and str(paths[1]) in err
    assert "Traceback" not in err
    errors = []
    assert len(list(store.RunStore(tmp_path).histories(errors=errors))) == 2 and len(errors) == 2
    with pytest.warns(store.StoreWarning, match="skipped 2 stored files"):
        assert len(list(store.RunStore(tmp_path).histories())) == 2


def test_a_file_of_another_training_version_says_if_its_run_was_retrained(tmp_path, monkeypatch):
    runs = tiny_runs(2)
    old = stored(tmp_path, runs, max_batch=1)
    monkeypatch.setattr(runs_module, "TRAINING_VERSION", runs_module.TRAINING_VERSION + 1)
    (new,) = stored(tmp_path, runs[:1])  # the first run retrained by the current code
    errors = []
    rows, _ = sweep.report(tmp_path, figures=False, errors=errors)
    assert len(rows) == 1 and len(errors) == 2
    message = {str(e).split(": ")[0]: str(e) for e in errors}
    version = runs_module.TRAINING_VERSION - 1
    assert f"stale: written by training version {version}" in message[str(old[0])]
    assert f"retrained by the current code as {new.stem}" in message[str(old[0])]
    assert "rerun the sweep to retrain it" in message[str(old[1])]


def test_leftover_temporary_files_are_removed_when_a_sweep_opens_the_store(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    old, fresh = runs / ".abc.npz.k1x2.tmp", runs / ".def.npz.z9y8.tmp"
    old.write_bytes(b"half a file")
    fresh.write_bytes(b"being written")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    stored(tmp_path)
    assert not old.exists() and fresh.exists()  # a young one may be another writer's
    assert store.RunStore(tmp_path).clean(age=-1) == [fresh] and not fresh.exists()


def test_a_store_that_cannot_be_written_is_refused_before_training(tmp_path, monkeypatch):
    trained = counting(monkeypatch)
    (tmp_path / "runs").write_text("a file where the store's folder goes")
    with pytest.raises(store.StoreError, match="cannot write the store"):
        training.train(tiny_runs(), tiny_data(), store=tmp_path, **QUIET)
    assert trained == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_store_is_refused_before_training(tmp_path, monkeypatch):
    trained = counting(monkeypatch)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs").chmod(0o555)
    try:
        with pytest.raises(store.StoreError, match="cannot write the store"):
            training.train(tiny_runs(), tiny_data(), store=tmp_path, **QUIET)
    finally:
        (tmp_path / "runs").chmod(0o755)
    assert trained == []


def test_a_stacked_sweep_retrains_the_damaged_runs_chunk(tmp_path, monkeypatch):
    # A chunk is trained again whole (a stack's size can change its runs' last bits).
    runs = [Run("NormalizedGD", 0.1, 10, seed=s, model=NET) for s in range(4)]
    paths = stored(tmp_path, runs, max_batch=2)
    zero_bytes(paths[3])
    trained = counting(monkeypatch)
    with pytest.warns(store.StoreWarning, match="quarantine"):
        training.train(runs, tiny_data(), store=tmp_path, max_batch=2, **QUIET)
    assert trained == runs[2:]
