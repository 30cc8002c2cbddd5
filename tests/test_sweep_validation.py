"""Limits checked before work, no silent coercion, no hang, messages not tracebacks (issue 28).

A bad sweep file is refused by :func:`sweep.load` with one message naming the file and the
field, before any model is built; the command line prints it as ``error: …`` with exit
status 2 and no traceback. Runs too large for the machine's memory, products of too many
runs and too many log points are refused from arithmetic alone. Data loaders, the data
check, margins, the fingerprint and the exact solvers refuse what they cannot do, with a
message, instead of truncating, coercing or hanging.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from implicit_bias import batched, data, homogeneity, margins, maxmargin, models, runs, sweep, train
from implicit_bias.__main__ import main
from implicit_bias.fingerprint import fingerprint
from implicit_bias.history import History, RunFailed
from implicit_bias.kkt import solve_cvxpy
from implicit_bias.maxmargin import MaxMarginSolverError, NotSeparableError, max_margin
from implicit_bias.warn import aggregate_warnings

ROOT = Path(__file__).resolve().parent.parent

DATA = "[data]\nset = 'gaussian'\nn = 40\nd = 8\n"
RUN = {"optimizer": "'SignGD'", "lr": "0.1", "steps": "5", "seed": "0",
       "model": "{kind = 'two_layer', width = 4}"}


def sweep_file(tmp_path, top: str = "", data: str = DATA, **fields) -> Path:
    """A small sweep file with the run fields of RUN, changed or (None) dropped by ``fields``."""
    block = {**RUN, **fields}
    lines = [f"{k} = {v}" for k, v in block.items() if v is not None]
    path = tmp_path / "s.toml"
    path.write_text(f"store = 'out'\n{top}\n{data}\n[[runs]]\n" + "\n".join(lines) + "\n")
    return path


# --- bad sweep files: one message naming the file and the field ------------------------------

BAD_FIELDS = [
    ({"seed": None, "seeds": "0"}, "seeds = 0"),
    ({"seed": None, "seeds": "1e9"}, "seeds = 1000000000.0"),
    ({"seed": "1.0"}, "seed = 1.0"),
    ({"seed": "-1"}, "seed = -1"),
    ({"seed": "[0, 'a']"}, "seed = 'a'"),
    ({"steps": "1.5"}, "steps = 1.5"),
    ({"steps": "3e3"}, "steps = 3000.0"),
    ({"steps": "0"}, "steps = 0"),
    ({"lr": "[]"}, r"lr = \[\]: an empty list"),
    ({"lr": "-0.1"}, "lr = -0.1.*learning rate"),
    ({"lr": "'fast'"}, "lr = 'fast'"),
    ({"schedule": "-1"}, "schedule = -1"),
    ({"optimizer": "'Adamm'"}, "Unknown optimizer 'Adamm'; choose one of .*'SignGD'"),
    ({"optimizer": "3"}, "optimizer = 3"),
    ({"model": "'big'"}, "model = 'big'"),
    ({"model": "{kind = 'mlpp'}"}, "Unknown model kind 'mlpp'"),
    ({"model": "{kind = 'two_layer', width = 0}"}, "width must be a positive integer"),
    ({"model": "{kind = 'two_layer', width = 4.5}"}, "width must be a positive integer"),
    ({"model": "{kind = 'mlp', hidden = 64}"}, "hidden must be a list"),
    ({"model": "{kind = 'two_layer', width = 4, activation = 'tanh'}"}, "not a positively homogeneous"),
    ({"options": "3"}, "options = 3"),
    ({"batch_size": "0", "batch": "'cyclic'"}, "batch_size = 0"),
    ({"warmup": "3"}, "unknown run fields"),
]


@pytest.mark.parametrize("fields, match", BAD_FIELDS, ids=[m.split(" ")[0] for _, m in BAD_FIELDS])
def test_a_bad_run_field_names_the_file_and_the_field(tmp_path, fields, match):
    path = sweep_file(tmp_path, **fields)
    with pytest.raises(ValueError, match=match) as err:
        sweep.load(path)
    assert str(err.value).startswith(f"{path}: [[runs]] block 1"), err.value


BAD_TOP = [
    ("norms = ['l3']", "norms = \\['l3'\\]: expected a norm name"),
    ("norms = []", "norms = \\[\\]"),
    ("log_points = 1000000000", "log_points = 1000000000: expected an integer in \\[1, 100,000\\]"),
    ("log_points = 1e9", "log_points = 1000000000.0"),
    ("directions = 0", "directions = 0"),
    ("engine = 'fast'", "engine = 'fast'"),
    ("max_batch = 0", "max_batch = 0"),
    ("frame = 1", "frame = 1"),
]


@pytest.mark.parametrize("top, match", BAD_TOP, ids=[f"{t.split()[0]}{i}" for i, (t, _) in
                                                     enumerate(BAD_TOP)])
def test_a_bad_option_names_the_file_and_the_option(tmp_path, top, match):
    path = sweep_file(tmp_path, top=top)
    with pytest.raises(ValueError, match=match) as err:
        sweep.load(path)
    assert str(err.value).startswith(f"{path}: "), err.value


BAD_DATA = [
    ("[data]\nset = 'digits_even_odd'\nn = 5000\n", r"\[data\]: n = 5,000 asks for more samples .*1,797"),
    ("[data]\nset = 'gaussian'\nn = 40.0\n", r"\[data\]: n must be a positive integer, got 40.0"),
    ("[data]\nset = 'gaussian'\nn = 40\ngap = 9\n", r"\[data\]: gap = 9 keeps a fraction"),
    ("[data]\nset = 'gaussian'\nm = 40\n", r"\[data\]: .*unexpected keyword argument 'm'"),
    ("[data]\nset = 'nope'\n", r"\[data\]: Unknown data set 'nope'"),
    ("[data.a]\nn = 40\n", r"\[data.a\]: a data table names its loader"),
    ("[data.a]\nset = 'gaussian'\n", r"runs ask for data \['data'\], but the file has \['a'\]"),
]


@pytest.mark.parametrize("table, match", BAD_DATA)
def test_a_bad_data_table_names_the_file_and_the_table(tmp_path, table, match):
    path = sweep_file(tmp_path, data=table)
    with pytest.raises(ValueError, match=match) as err:
        sweep.load(path)
    assert str(err.value).startswith(f"{path}: "), err.value


def test_a_file_that_is_not_toml_or_not_there(tmp_path):
    (tmp_path / "s.toml").write_text("[[runs]\noptimizer = 'SignGD'\n")
    with pytest.raises(ValueError, match="s.toml: not a valid TOML file"):
        sweep.load(tmp_path / "s.toml")
    with pytest.raises(FileNotFoundError, match="nope.toml: no such sweep file"):
        sweep.load(tmp_path / "nope.toml")


def cli(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "lib"), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "implicit_bias", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def test_the_command_line_prints_one_message_and_exits_2(tmp_path):
    """Two bad files in a real process: the seeds field and a model too large for memory."""
    (tmp_path / "a").mkdir()
    bad = sweep_file(tmp_path / "a", seed=None, seeds="1e9")
    done = cli("sweep", str(bad))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    expected = f"{bad}: [[runs]] block 1: seeds = 1000000000.0: expected a count of seeds, an integer ≥ 1."
    assert done.stderr.strip() == f"error: {expected}"
    big = sweep_file(tmp_path, data="[data]\nset = 'gaussian'\nn = 600\nd = 64\n",
                     model="{kind = 'mlp', hidden = [100000, 100000]}")
    done = cli("sweep", str(big))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"error: {big}: run 'SignGD'") and "GB" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# --- memory, run counts, log points: refused from arithmetic, before anything is built -----


def no_large_builds(monkeypatch):
    """Fail the test if a model of more than 10⁶ parameters is built."""
    build = models.build

    def guarded(spec, d, *args, **kwargs):
        assert models.parameter_count(spec, d) <= 10**6, f"built {spec}"
        return build(spec, d, *args, **kwargs)

    monkeypatch.setattr(models, "build", guarded)


def test_a_width_of_ten_million_is_refused_at_once(tmp_path, monkeypatch):
    no_large_builds(monkeypatch)
    monkeypatch.setattr(batched, "free_memory", lambda dev: 64 * 10**9)  # a 64 GB machine
    path = sweep_file(tmp_path, data="[data]\nset = 'gaussian'\nn = 600\nd = 64\n",
                      model="{kind = 'two_layer', width = 10000000}")
    start = time.perf_counter()
    with pytest.raises(MemoryError, match=r"run 'SignGD' .* needs about 278 GB .*650,000,000 parameters "
                                          r".* more than the 64 GB available on cpu\. Use a smaller model"):
        sweep.load(path)
    assert time.perf_counter() - start < 1.0


def test_a_run_that_fits_alone_but_not_in_its_stack_asks_for_a_smaller_max_batch(monkeypatch):
    monkeypatch.setattr(batched, "free_memory", lambda dev: 10**9)
    X, y = data.gaussian(n=40, d=8, seed=0)
    batch = [runs.Run("SignGD", 0.1, 5, seed=s, model={"kind": "two_layer", "width": 100_000})
             for s in range(50)]
    batched.check_limits(batch, {"data": (X, y)}, "cpu")  # one run: about 0.23 GB
    with pytest.raises(MemoryError, match=r"a stack of 50 runs like 'SignGD' .* \(max_batch\) to 4,"):
        batched.check_limits(batch, {"data": (X, y)}, "cpu", max_batch=64)


def test_a_huge_model_config_costs_nothing_to_check():
    start = time.perf_counter()
    run = runs.Run("SignGD", 0.1, 5, model={"kind": "mlp", "hidden": [100_000, 100_000]})
    assert time.perf_counter() - start < 0.5
    assert models.parameter_count(run.model, 64) == 64 * 10**5 + 10**10 + 10**5


@pytest.mark.parametrize("spec, d", [
    ({"kind": "linear"}, (3, 4)), ({"kind": "diagonal", "depth": 3}, 5),
    ({"kind": "two_layer", "width": 7}, 5),
    ({"kind": "two_layer_vector_unit", "width": 7}, 5), ({"kind": "mlp", "hidden": [3, 4]}, 5),
    ({"kind": "block_linear", "blocks": {"W": [2, 3], "u": 4}}, 10)])
def test_parameter_count_is_the_built_models(spec, d):
    assert models.parameter_count(spec, d) == sum(p.numel() for p in models.build(spec, d).parameters())


def test_huge_products_are_counted_before_they_are_expanded(tmp_path, monkeypatch, capsys):
    path = sweep_file(tmp_path, seed=None, seeds="2000000")
    start = time.perf_counter()
    with pytest.raises(ValueError, match="2,000,000 runs, more than 1,000,000: split the sweep"):
        sweep.load(path)
    assert time.perf_counter() - start < 1.0
    monkeypatch.setattr(sweep, "EXPAND_NOTICE", 10)
    assert len(sweep.load(sweep_file(tmp_path, seed=None, seeds="12")).runs) == 12
    assert "expanding 12 runs…" in capsys.readouterr().err


def test_log_points_are_bounded():
    X, y = data.gaussian(n=20, d=4, seed=0)
    with pytest.raises(ValueError, match=r"log_points must be an integer in \[1, 100,000\]"):
        batched.check_limits([runs.Run("SignGD", 0.1, 5)], {"data": (X, y)}, "cpu", log_points=10**9)


# --- executors ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec, match", [
    ("dask-local:0", "worker count must be an integer ≥ 1, got '0'"),
    ("processes:0", "worker count must be an integer ≥ 1, got '0'"),
    ("processes:-1", "worker count must be an integer ≥ 1, got '-1'"),
    ("processes:abc", "worker count must be an integer ≥ 1, got 'abc'"),
    ("processes:1000000", "1,000,000 local workers"),
    ("threads:2", "Unknown executor 'threads:2'"),
    ("dask:", "names no scheduler"),
])
def test_bad_executor_specs_are_refused(spec, match):
    with pytest.raises(ValueError, match=match):
        sweep.executor(spec)


# --- data: no silent truncation, no hang ---------------------------------------------------


@pytest.mark.parametrize("load, match", [
    (lambda: data.digits_even_odd(n=5000), "n = 5,000 asks for more samples than scikit-learn's digits"),
    (lambda: data.digits_classes(n=5000, num_classes=3), "digits of classes 0 … 2"),
    (lambda: data.digits_even_odd(n=100.0), "n must be a positive integer, got 100.0"),
    (lambda: data.gaussian(n=10, d=4, gap=8.0), "gap = 8 keeps a fraction"),
    (lambda: data.gaussian(n=0), "n must be a positive integer"),
    (lambda: data.toy_2d(n=21), "n must be even"),
])
def test_loaders_refuse_what_they_cannot_give(load, match):
    with pytest.raises(ValueError, match=match):
        load()


def test_a_data_set_larger_than_memory_is_refused_before_it_is_drawn():
    with pytest.raises(MemoryError, match="n = 10,000,000,000 samples of d = 10 features take 800 GB"):
        data.gaussian(n=10**10, d=10)


@pytest.mark.parametrize("X, y, exc, match", [
    (np.array([["a", "b"], ["c", "d"]]), [1, -1], TypeError, "real numbers, got dtype <U1 \\(text\\)"),
    ([[1.0, 2.0], [3.0]], [1, -1], ValueError, "X is a ragged list"),
    (np.ones((2, 2)), [[1], [-1, 1]], ValueError, "y is a ragged list"),
    (np.ones((2, 2)), [0, 1], ValueError, "Labels must be -1 or \\+1, got values \\[0, 1\\]"),
    (np.array([[np.nan, 1.0], [1.0, 1.0]]), [1, -1], ValueError, "NaN or inf entries in 1 of its 2 samples"),
    (np.ones((3, 2)), [1, -1], ValueError, "y must have shape \\(3,\\)"),
    (np.array([[2**60, 1], [1, 1]]), [1, -1], ValueError, "integers up to 1.15e\\+18 .* beyond 2\\^53"),
    (torch.tensor([[2**60, 1], [1, 1]]), torch.tensor([1.0, -1.0]), ValueError, "beyond 2\\^53"),
])
def test_check_data_says_what_was_given_and_what_is_expected(X, y, exc, match):
    with pytest.raises(exc, match=match):
        data.check_data(X, y)


def test_integers_are_never_advised_into_a_type_that_rounds_them():
    model = models.Linear(2, dtype=torch.float32)
    X, y = torch.tensor([[2**30, 1], [-1, -(2**30)]]), torch.tensor([1.0, -1.0])
    with pytest.raises(TypeError, match="float32 cannot hold X's integers exactly; use `X.to\\(torch.f"):
        margins.normalized_margin(model, X, y)
    with pytest.raises(TypeError, match="use `X.to\\(torch.float32\\)`"):  # small integers: exact
        margins.normalized_margin(model, torch.tensor([[2, 1], [-1, -2]]), y)


# --- margins, dead networks, warnings ----------------------------------------------------


def test_a_zero_model_has_no_margin():
    X, y = data.gaussian(n=10, d=3, seed=0)
    model = models.TwoLayer(3, 4, init_scale=0.0)
    for margin in (margins.normalized_margin, margins.smoothed_margin):
        with pytest.raises(ValueError, match="the model's parameters are all zero: no direction, no margin"):
            margin(model, X, y)


def test_a_dead_network_is_told_from_a_zero_linear_model():
    X, y = data.gaussian(n=10, d=3, seed=0)
    net = models.TwoLayer(3, 4, activation="relu")
    with torch.no_grad():
        net.W.copy_(-torch.ones(4, 3))  # a constant direction: every unit dead on X's half-space
        X = X.abs()
    out = net(X)
    grads = torch.autograd.grad(out.sum(), list(net.parameters()), allow_unused=False)
    assert homogeneity.dead_output(out.detach(), grads) == homogeneity.DEAD
    linear = models.Linear(3, init_scale=0.0)  # output 0, but its gradient is not
    out = linear(X)
    (grad,) = torch.autograd.grad((y * out).sum(), [linear.w])
    assert homogeneity.dead_output(out.detach(), [grad]) is None
    stack = torch.stack([torch.zeros(5), torch.ones(5), torch.zeros(5)])
    assert homogeneity.dead_runs(stack, [torch.zeros(3, 2)]) == [0, 2]


def test_warnings_of_many_runs_are_one_line_per_kind():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with aggregate_warnings():
            for seed in range(5):
                warnings.warn(f"run 'Adam' (seed {seed}) left Adam's regime from about step {10 * seed}",
                              RuntimeWarning, stacklevel=1)
            warnings.warn("run 'Signum' (seed 0) left Adam's regime from about step 3", RuntimeWarning,
                          stacklevel=1)
            warnings.warn("Run 'Muon': something else", UserWarning, stacklevel=1)
    lines = [str(w.message) for w in caught]
    assert lines == ["run 'Adam' (seed 0) left Adam's regime from about step 0 [6 times: runs 'Adam' ×5, "
                     "'Signum']", "Run 'Muon': something else"]
    assert [w.category for w in caught] == [RuntimeWarning, UserWarning]


def test_a_filter_on_the_start_of_a_message_still_catches_it_aggregated():
    """Chapters silence a known warning with filterwarnings(message=<its start>): aggregated,
    the message still begins the same way (the count comes last)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", message="eps = 0 and some coordinate")
        with aggregate_warnings():
            for _ in range(3):
                warnings.warn("eps = 0 and some coordinate has had an exactly zero gradient", RuntimeWarning,
                              stacklevel=1)
            warnings.warn("run 'Adam' (seed 0) left Adam's regime", RuntimeWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["run 'Adam' (seed 0) left Adam's regime"]


def test_warnings_that_name_no_run_are_merged_only_when_identical():
    """A warning about a setting (here two β pairs) names no run: different settings stay two
    lines (a verdict reads each), the same one repeated is one line with its count."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with aggregate_warnings():
            for b2 in (0.85, 0.5, 0.5):
                warnings.warn(f"beta1 = 0.9 > beta2 = {b2}: the theorem assumes beta1 ≤ beta2.", UserWarning,
                              stacklevel=1)
    assert [str(w.message) for w in caught] == [
        "beta1 = 0.9 > beta2 = 0.85: the theorem assumes beta1 ≤ beta2.",
        "beta1 = 0.9 > beta2 = 0.5: the theorem assumes beta1 ≤ beta2. [2 times]"]



def test_a_warning_from_a_notebook_cell_comes_out_of_the_aggregation():
    """A warning attributed to a notebook cell (a file no imported module has, run as
    __main__) is warned again after the aggregation, as in a script; the mutant, the
    aggregation re-warning it without a module, dropped it: chapter 5 saw no ε = 0 warning."""
    code = compile("import warnings\nwarnings.warn('eps = 0 and some coordinate test', RuntimeWarning)\n",
                   "/tmp/ipykernel_0/cell.py", "exec")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with aggregate_warnings():
            exec(code, {"__name__": "__main__"})
    assert [(str(w.message), w.filename) for w in caught] == [("eps = 0 and some coordinate test",
                                                                 "/tmp/ipykernel_0/cell.py")]
    with warnings.catch_warnings(record=True) as dropped:
        warnings.simplefilter("always")
        warnings.warn_explicit("the mutant", RuntimeWarning, "/tmp/ipykernel_0/cell.py", 2, module=None)
    assert dropped == []  # why the aggregation names the module


def dead_for_seed_0(d):
    """A ReLU net of the seed in force (its runs stack: one config); for seed 0 every first-
    layer weight is ≤ 0, so every unit is dead on data ≥ 0."""
    seed = torch.initial_seed()  # Run.build_model seeds torch with the run's seed
    net = models.TwoLayer(d, 4, activation="relu", seed=seed)
    if seed == 0:
        with torch.no_grad():
            net.W.copy_(-net.W.abs())
    return net


DEAD_RUNS = {"all units dead": dead_for_seed_0,
             "all parameters 0": {"kind": "two_layer", "width": 4, "activation": "relu", "init_scale": 0.0}}


@pytest.mark.parametrize("engine", ["batched", "loop"])
@pytest.mark.parametrize("net", list(DEAD_RUNS))
def test_a_dead_network_stops_its_run_and_its_stack_trains_on(engine, net, monkeypatch):
    X, y = data.gaussian(n=20, d=5, seed=0)
    X = X.abs()  # every unit with weights ≤ 0 is dead on it
    model = DEAD_RUNS[net]
    if isinstance(model, dict):  # zero parameters are dead whatever the seed: healthy ones differ
        runs_ = [runs.Run("SignGD", 0.1, 20, seed=0, model=model)]
        runs_ += [runs.Run("SignGD", 0.1, 20, seed=s, model={**model, "init_scale": 1.0}) for s in (1, 2)]
    else:
        runs_ = [runs.Run("SignGD", 0.1, 20, seed=s, model=model) for s in range(3)]
    kw = dict(norms="l2", log_points=5, progress=False, device="cpu", engine=engine)
    with pytest.raises(RunFailed, match=re.escape(f"SignGD (lr=0.1, seed=0, schedule=0), step 1: "
                                                       f"{homogeneity.DEAD}.")):
        train.train(runs_, (X, y), **kw)
    got = train.train(runs_, (X, y), failures="return", **kw)
    assert isinstance(got[0], RunFailed) and len(got[0].history.steps) == 0
    # The other runs are kept, equal to the bit to a sweep without the dead run (as a stack
    # of 2 trains: the size of a stack can change the last bits) and to one without the check.
    alone = train.train(runs_[1:], (X, y), **kw)
    monkeypatch.setattr(batched, "dead_runs", lambda *a: [])
    monkeypatch.setattr(train, "dead_output", lambda *a: None)
    unchecked = train.train(runs_[1:], (X, y), **kw)
    for a, b, c in zip(got[1:], alone, unchecked, strict=True):
        assert isinstance(a, History) and a.steps[-1] == 20
        for name in ("log_loss", "param_norm", "directions"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
            assert np.array_equal(getattr(a, name), getattr(c, name)), name
        assert np.array_equal(a.margins["l2"], b.margins["l2"])


def test_warnings_of_a_sweep_come_out_once_per_kind():
    X, y = data.gaussian(n=20, d=5, seed=0)
    sweep_ = [runs.Run(torch.optim.SGD, 0.1, 5, seed=s, model={"kind": "two_layer", "width": 4})
              for s in range(3)]
    with pytest.warns(RuntimeWarning) as caught:
        train.train(sweep_, (X, y), norms="l2", progress=False, device="cpu")
    assert [str(w.message) for w in caught] == [
        "Run 'SGD': SGD has no reframe or rescale_gradients, so it is trained on the plain loss, which "
        "underflows below about 1e-308. [3 times: runs 'SGD' ×3]"]


# --- the fingerprint and the exact solvers ---------------------------------------------------


@pytest.mark.parametrize("factory, match", [
    (42, "needs a callable params -> torch.optim.Optimizer"),
    (lambda params: 42, "returned a int, not a torch.optim.Optimizer"),
])
def test_fingerprint_refuses_what_is_not_an_optimizer_factory(factory, match):
    with pytest.raises(TypeError, match=match):
        fingerprint(factory)


def test_large_problems_go_to_highs_or_are_refused_with_their_size(monkeypatch):
    X, y = data.gaussian(n=40, d=8, seed=0)
    exact = {norm: max_margin(X, y, norm) for norm in ("linf", "l1")}
    monkeypatch.setattr(maxmargin, "LP_TO_HIGHS", 100)
    monkeypatch.setattr(maxmargin, "MAX_CVXPY_ENTRIES", 100)
    for norm, solution in exact.items():
        large = max_margin(X, y, norm)  # verified as every answer is (constraints, gap, KKT)
        assert large.solver == "HIGHS" and large.margin == pytest.approx(solution.margin, rel=1e-8)
    with pytest.raises(MaxMarginSolverError, match="40 samples × 8 weights = 320 entries, more than the 100"):
        max_margin(X, y, "l2")
    monkeypatch.setattr(maxmargin, "MAX_LP_ENTRIES", 200)
    with pytest.raises(MaxMarginSolverError, match="320 entries, more than the 200 solved as a linear"):
        max_margin(X, y, "linf")


def test_a_certificate_program_beyond_its_size_is_refused(monkeypatch):
    from implicit_bias.kkt import kkt_certificate

    X, y = data.gaussian(n=20, d=4, seed=0)
    model = models.Linear(4)
    with torch.no_grad():
        model.w.copy_(torch.as_tensor(max_margin(X, y, "l2").direction))
    monkeypatch.setattr(solve_cvxpy, "MAX_ENTRIES", 10)
    with pytest.raises(ValueError, match="kkt_certificate: the program has .* entries, more than the 10"):
        kkt_certificate(model, X, y, "l1", method="cvxpy")


@pytest.mark.parametrize("small, large", [(1e-150, 1e150), (1e150, 1e-150)])
def test_separability_at_mixed_scales(small, large):
    """Rows of 1e-150 and 1e150 in one set: separable (not NotSeparableError), and not."""
    Z = np.array([[small, 0.0], [0.0, large], [small, 2 * small]])
    maxmargin._check_separable(Z)  # each row at its own scale: w = (1, 1) separates
    with pytest.raises(MaxMarginSolverError, match="separable .* scales span from 1e-150 to [12]e\\+150"):
        max_margin(Z, np.ones(3), "linf")
    with pytest.raises(NotSeparableError):
        maxmargin._check_separable(np.array([[small, small], [-large, -large]]))


# --- the command line: every error a message, --debug for the traceback -------------------


@pytest.mark.parametrize("error, match", [
    (RuntimeError("CUDA error: device-side assert"),
     "error: RuntimeError: CUDA error: device-side assert \\(run with --debug"),
    (OSError(errno.ENOSPC, "No space left on device", "/data/out"),
     "error: /data/out: No space left on device: free some space"),
    (OSError(errno.EROFS, "Read-only file system", "/ro"), "error: /ro: Read-only file system: choose a"),
    (MemoryError(), "error: out of memory: lower --max-batch"),
    (ImportError("needs dask"), "error: needs dask"),
])
def test_any_error_is_one_message_and_debug_shows_the_traceback(tmp_path, monkeypatch, capsys, error, match):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(sweep, "run", fail)
    path = sweep_file(tmp_path)
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert re.search(match, err), err
    with pytest.raises(type(error)):
        main(["--debug", "sweep", str(path)])


def test_debug_shows_the_traceback_of_the_errors_a_command_reports_itself(tmp_path, capsys):
    path = sweep_file(tmp_path, data="")  # a store but no [data] table
    assert main(["sweep", str(path)]) == 2
    assert capsys.readouterr().err == (f"error: {path}: no [data] table: add one, e.g. [data] set = "
                                       "'digits_even_odd' (a loader of implicit_bias.data and its "
                                       "options).\n")
    with pytest.raises(ValueError, match="no \\[data\\] table"):
        main(["--debug", "sweep", str(path)])
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'empty'}: no stored runs.\n"
    with pytest.raises(ValueError, match="no stored runs"):
        main(["--debug", "report", str(tmp_path / "empty")])


# --- the user's own model factory and optimizer class, named in a sweep file ----------------

USER_MODULE = '''
import implicit_bias as ib

def make(d):
    return ib.models.TwoLayer(d, 4, seed=7)

class ClippedSign(ib.optim.SignGD):
    pass
'''


def test_a_sweep_file_names_the_users_own_factory_and_optimizer_class(tmp_path, monkeypatch):
    """``model = "module:function"`` and ``optimizer = "module:Class"`` import the user's own
    code from beside the file (a sweep file is the user's configuration, like Hydra's
    ``_target_``), and the sweep trains with them."""
    (tmp_path / "mine_sweep_module.py").write_text(USER_MODULE)
    monkeypatch.chdir(ROOT)  # not beside the module: the file's folder is searched
    path = sweep_file(tmp_path, model="'mine_sweep_module:make'", optimizer="'mine_sweep_module:ClippedSign'")
    try:
        spec = sweep.load(path)
        (run,) = spec.runs
        assert run.model.__name__ == "make" and run.optimizer.__name__ == "ClippedSign"
        _, (h,) = sweep.run(path, progress=False)
        assert h.run.model is run.model and np.isfinite(h.log_loss[-1])
        assert str(tmp_path) not in sys.path  # the folder was searched, not left on the path
    finally:
        sys.modules.pop("mine_sweep_module", None)


@pytest.mark.parametrize("fields, match", [
    ({"model": "'no_such_module_here:make'"}, r"model = 'no_such_module_here:make': cannot import it "
                                              r"\(ModuleNotFoundError"),
    ({"optimizer": "'mine_sweep_module:Missing'"},
     r"optimizer = 'mine_sweep_module:Missing': cannot import it \(AttributeError"),
    ({"optimizer": "'mine_sweep_module:make'"}, "optimizer must be a name or a torch.optim.Optimizer class"),
    ({"model": "'not a path'"}, r"model = 'not a path': expected a table .* or your own factory"),
])
def test_a_users_name_that_does_not_import_is_one_message(tmp_path, fields, match):
    (tmp_path / "mine_sweep_module.py").write_text(USER_MODULE)
    try:
        with pytest.raises(ValueError, match=match) as err:
            sweep.load(sweep_file(tmp_path, **fields))
        assert str(err.value).startswith(str(tmp_path / "s.toml"))
    finally:
        sys.modules.pop("mine_sweep_module", None)
