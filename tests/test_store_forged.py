"""A store file is data: loading one never imports or calls what the user did not allow.

Every file here is forged the way an attacker would: a real stored run whose config.json
names other code or holds ill-typed fields, renamed to the hash of its new content. Each
must be refused with a :class:`store.StoreError` naming the file, with no side effect
(no marker file, no module imported), by ``RunStore.load``, ``histories()``,
``sweep.report``, ``store.check`` and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import implicit_bias as ib
import numpy as np
import pytest
import torch
from forge import QUIET, SIDE_EFFECT, forge, side_effect_module, stored, tiny_data
from implicit_bias import store, sweep
from implicit_bias.__main__ import main
from implicit_bias.train import Run, train

ROOT = Path(__file__).resolve().parent.parent
SIDE = "ib_forged_side_effect"  # a module that writes a marker when imported


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """One real stored run (a library model): the file every forgery starts from."""
    (path,) = stored(tmp_path_factory.mktemp("good"))
    return path


@pytest.fixture
def side(tmp_path, monkeypatch):
    """The side-effect module on sys.path, and its marker; a fresh process's view (nothing
    stored by this process is trusted by name)."""
    folder = tmp_path / "modules"
    folder.mkdir()
    marker = side_effect_module(folder, SIDE)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(store, "_ENCODED", {})
    yield marker
    sys.modules.pop(SIDE, None)


def model(value):
    return lambda m: m["run"].update(model=value)


def field(name, value):
    return lambda m: m.update({name: value})


def run_field(name, value):
    return lambda m: m["run"].update({name: value})


# Forgeries, and what the refusal says.
CASES = {
    "os.system factory": (model({"import": "os:system"}), "'os:system'"),
    "subprocess factory": (model({"import": "subprocess:getoutput"}), "'subprocess:getoutput'"),
    "eval factory": (model({"import": "builtins:eval"}), "'builtins:eval'"),
    "import_module factory": (model({"import": "importlib:import_module"}), "'importlib:import_module'"),
    "module with side effects": (model({"import": f"{SIDE}:make_net"}), f"'{SIDE}:make_net'"),
    "observer": (lambda m: m["settings"].update(observe={"import": f"{SIDE}:observe"}), f"'{SIDE}:observe'"),
    "optimizer class": (run_field("optimizer", {"import": "os:system"}), "'os:system'"),
    "an option": (run_field("options", {"hook": {"import": "builtins:exec"}}), "'builtins:exec'"),
    "inside a model config": (model({"kind": "two_layer", "width": 4, "activation": {"import": "os:system"}}),
                              "'os:system'"),
    "not an import path": (model({"import": "os:system; rm -rf ~"}), "not an import path"),
    "import of a number": (model({"import": 5}), "not an import path"),
    "huge input_dim": (field("input_dim", 10**12), "input_dim"),
    "string input_dim": (field("input_dim", "touch /tmp/x"), "input_dim"),
    "bad shape input_dim": (field("input_dim", [4, -1]), "input_dim"),
    "nested input_dim": (field("input_dim", [[5]]), "input_dim"),
    "wrong dtype": (field("dtype", "float16"), "dtype"),
    "dtype a list": (field("dtype", ["float64"]), "dtype"),
    "NaN steps": (run_field("steps", float("nan")), "steps"),
    "negative steps": (run_field("steps", -5), "steps"),
    "string seed": (run_field("seed", "0"), "seed"),
    "infinite rate": (run_field("lr", float("inf")), "lr"),
    "label a table": (run_field("label", {"x": 1}), "label"),
    "unknown run field": (run_field("warmup", 3), "warmup"),
    "huge width": (model({"kind": "two_layer", "width": 10**12, "activation": "relu2"}), "parameters"),
    "margin names not strings": (field("margins", [1]), "margins"),
    "observed names not strings": (field("observed", [None]), "observed"),
    "duplicate margin names": (field("margins", ["l2", "l2"]), "margins"),
    "more margins than arrays": (field("margins", ["l2", "linf"]), "margin_1.npy is missing"),
    "settings not a table": (field("settings", ["l2"]), "settings"),
    "run not a table": (field("run", "Adam"), "run config"),
    "seconds a string": (field("seconds", "fast"), "seconds"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_forged_file_is_refused_without_side_effects(case, good, side, tmp_path, monkeypatch):
    change, match = CASES[case]
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))  # were it called
    monkeypatch.setattr(subprocess, "getoutput", lambda *a: calls.append(a))
    root = tmp_path / "store"
    path = forge(good, change, root)
    s = store.RunStore(root)
    with pytest.raises(store.StoreError, match=match) as err:
        s.load(path.stem)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    errors = []
    assert list(s.histories(errors=errors)) == [] and len(errors) == 1
    with pytest.warns(store.StoreWarning, match=match):
        assert list(s.histories()) == []
    with pytest.raises(ValueError, match="no stored run could be read"):
        sweep.report(root, figures=False)
    assert not calls and not side.exists() and SIDE not in sys.modules


def test_a_refusal_says_how_to_allow_the_name(good, side, tmp_path):
    path = forge(good, model({"import": f"{SIDE}:make_net"}), tmp_path)
    with pytest.raises(store.StoreError) as err:
        store.RunStore(tmp_path).load(path)
    message = str(err.value)
    assert "does not register" in message and f"allow=['{SIDE}:make_net']" in message
    assert f"--allow {SIDE}:make_net" in message
    assert not side.exists() and SIDE not in sys.modules


def test_a_forged_file_beside_good_ones_is_skipped_and_listed(good, side, tmp_path, capsys):
    root = tmp_path / "store"
    stored(root, [Run("NormalizedGD", 0.1, 10, seed=s, model={"kind": "linear"}) for s in range(2)])
    bad = forge(good, model({"import": f"{SIDE}:make_net"}), root)
    errors = []
    rows, _ = sweep.report(root, figures=False, errors=errors)
    assert len(rows) == 1 and rows[0]["seeds"] == 2
    assert len(errors) == 1 and str(bad) in str(errors[0])
    assert "skipped 1 stored file(s)" in capsys.readouterr().err
    assert not side.exists() and SIDE not in sys.modules


def test_the_command_line_refuses_in_one_line_without_a_traceback(good, side, tmp_path):
    root = tmp_path / "store"
    forge(good, model({"import": f"{SIDE}:make_net"}), root)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "lib"), str(side.parent)])}
    done = subprocess.run([sys.executable, "-m", "implicit_bias", "report", str(root), "--no-figures"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if f"{SIDE}:make_net" in x]
    assert "--allow" in line and str(root) in line
    assert not side.exists()


# --- forged tables (the chapters' JSON results) --------------------------------------------


TABLE_CASES = {
    "os.system factory": (model({"import": "os:system"}), "'os:system'"),
    "module with side effects": (model({"import": f"{SIDE}:make_net"}), f"'{SIDE}:make_net'"),
    "optimizer class": (run_field("optimizer", {"import": "builtins:eval"}), "'builtins:eval'"),
    "huge width": (model({"kind": "two_layer", "width": 10**12, "activation": "relu2"}), "parameters"),
    "string steps": (run_field("steps", "100"), "steps"),
    "runs not a list": (lambda e: e.update(runs={"a": 1}), "runs"),
}


@pytest.mark.parametrize("case", list(TABLE_CASES))
def test_a_forged_table_is_refused_without_side_effects(case, side, tmp_path):
    change, match = TABLE_CASES[case]
    runs = [Run("Adam", 0.1, 10, model={"kind": "linear"})]
    path = store.Store(tmp_path).save("ch", runs, {"set": "x"}, {"final": 1})
    entry = json.loads(path.read_text())
    if case == "runs not a list":  # no key can be computed: refused by its type first
        change(entry)
    else:
        change({"run": entry["runs"][0], "settings": {}})
        entry["key"] = store.key(entry["runs"], entry["data"], entry["training_version"])
    forged = path.parent / f"{entry['key']}.json"
    forged.write_text(json.dumps(entry))
    with pytest.raises(store.StoreError, match=match):
        store.check(forged)
    assert not side.exists() and SIDE not in sys.modules


# --- what loads: the library's names, the user's own, what the user allows -----------------


@pytest.mark.filterwarnings("ignore:Run 'sgd'")
def test_library_names_round_trip_in_a_fresh_process(tmp_path, monkeypatch):
    runs = [Run(ib.optim.SignGD, 0.05, 10, model=ib.models.Linear, label="sign"),
            Run(torch.optim.SGD, 0.05, 10, model=ib.models.Linear, label="sgd")]
    live = train(runs, tiny_data(), **QUIET)
    out = train(runs, tiny_data(), store=tmp_path, **QUIET)
    monkeypatch.setattr(store, "_ENCODED", {})  # what another process knows
    for a, key in zip(live, out.keys):
        b = store.RunStore(tmp_path).load(key)
        assert b.run == a.run and np.array_equal(a.log_loss, b.log_loss)
        assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))


USER = """
import implicit_bias as ib

def make_net(d):
    return ib.models.Linear(d)
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """The user's own factory, in a module of theirs."""
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "ib_user_models.py").write_text(USER)
    monkeypatch.syspath_prepend(str(folder))
    import ib_user_models

    yield ib_user_models
    sys.modules.pop("ib_user_models", None)


def test_the_users_own_factory_loads_when_allowed(tmp_path, user_module, monkeypatch, capsys):
    root = tmp_path / "store"
    run = Run("NormalizedGD", 0.1, 10, model=user_module.make_net)
    (h,) = train(run, tiny_data(), store=root, **QUIET)  # this process stored it: trusted
    assert h.run.model is user_module.make_net
    monkeypatch.setattr(store, "_ENCODED", {})  # another process: only what is allowed
    (key,) = store.RunStore(root).keys()
    with pytest.raises(store.StoreError, match="ib_user_models:make_net"):
        store.RunStore(root).load(key)
    for allow in ("ib_user_models:make_net", "ib_user_*", ["ib_user_models.*"]):
        again = store.RunStore(root, allow=allow).load(key)
        assert again.run.model is user_module.make_net and np.array_equal(again.log_loss, h.log_loss)
    rows, _ = sweep.report(root, figures=False, allow=["ib_user_models:make_net"])
    assert len(rows) == 1
    assert main(["report", str(root), "--no-figures", "--allow", "ib_user_models:make_net"]) == 0
    assert main(["report", str(root), "--no-figures"]) != 0
    assert "ib_user_models:make_net" in capsys.readouterr().err


def test_allow_must_be_names(tmp_path):
    with pytest.raises(TypeError, match="allow"):
        store.RunStore(tmp_path, allow=[5])
    assert store.allowed("mypkg.models:make_net", ["mypkg.*"])
    assert not store.allowed("mypkgevil:make_net", ["mypkg.*"]) and not store.allowed("os:system", [])


def test_side_effect_module_is_real(side):
    # the control: importing it does write the marker, so its absence above means something
    import importlib

    importlib.import_module(SIDE)
    assert side.exists() and SIDE_EFFECT
