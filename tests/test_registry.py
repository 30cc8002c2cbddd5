"""Every registry takes a new entry the same way (implicit_bias.registry): rules,
optimizers, norms and model kinds, by call or as a decorator, and each refuses a bad one."""

from __future__ import annotations

import pytest
import torch
from implicit_bias import data, models, norms, optim, rules
from implicit_bias.train import Run, train


@pytest.fixture
def clean_registries():
    """Each test's entries are removed afterwards (the registries are module state)."""
    saved = dict(rules.RULES), dict(optim.OPTIMIZERS), dict(norms._REGISTRY), dict(models.KINDS)
    yield
    for table, before in zip((rules.RULES, optim.OPTIMIZERS, norms._REGISTRY, models.KINDS), saved):
        table.clear()
        table.update(before)


def test_each_registry_takes_a_call_and_a_decorator_and_returns_what_it_registered(clean_registries):
    def update(grads, state, hyper, steps, params):
        return rules.Update([torch.sign(g) for g in grads], {})

    assert rules.register("sign_call_test", update) is update
    assert rules.register("sign_decorated_test", knobs={"beta": rules.Knob(0.5)})(update) is update
    assert rules.get("sign_decorated_test").knobs["beta"].default == 0.5

    class MyOpt(optim.RuleOptimizer):
        def __init__(self, params, lr: float):
            super().__init__(params, {"rule": "sign_call_test", "lr": lr})

    assert optim.register(MyOpt) is MyOpt and optim.OPTIMIZERS["MyOpt"] is MyOpt
    assert optim.register("MyOptAlias", MyOpt) is MyOpt
    assert optim.register("MyOptDecorated")(MyOpt) is MyOpt and optim.OPTIMIZERS["MyOptDecorated"] is MyOpt

    class Half(norms.L2):
        def __call__(self, xs):
            return 0.5 * super().__call__(xs)

    assert norms.register("half_call_test", Half) is Half
    assert norms.register("half_decorated_test")(Half) is Half
    assert isinstance(norms.by_name("half_decorated_test"), Half)

    @models.register("scaled_linear_test")
    class ScaledLinear(models.Linear):
        pass

    assert models.KINDS["scaled_linear_test"] is ScaledLinear
    assert models.register("linear_alias_test", models.Linear) is models.Linear


@pytest.mark.parametrize("register, name, bad, error", [
    (rules.register, "bad_rule_test", 3, TypeError),
    (rules.register, "steepest", lambda *a: None, ValueError),  # taken
    (optim.register, "NotAnOptimizer", dict, TypeError),
    (optim.register, "", torch.optim.SGD, ValueError),
    (norms.register, "bad_norm_test", int, TypeError),
    (norms.register, "", norms.L2, ValueError),
    (models.register, "bad_model_test", 3, TypeError),
    (models.register, "two_layer", models.TwoLayer, ValueError),  # a built-in kind
    (models.register, "", models.Linear, ValueError),
])
def test_each_registry_refuses_a_bad_entry_and_keeps_nothing(clean_registries, register, name, bad, error):
    tables = (rules.RULES, optim.OPTIMIZERS, norms._REGISTRY, models.KINDS)
    before = [dict(t) for t in tables]
    with pytest.raises(error):
        register(name, bad)
    assert [dict(t) for t in tables] == before


def test_a_registered_model_kind_trains_by_name_in_both_engines(clean_registries):
    @models.register("wide_two_layer_test")
    class WideTwoLayer(models.TwoLayer):
        """A two-layer net whose width is twice the config's."""

        def __init__(self, d, width: int = 2, **kw):
            super().__init__(d, 2 * width, **kw)

    X, y = data.gaussian(n=20, d=4, seed=0)
    spec = {"kind": "wide_two_layer_test", "width": 3}
    assert models.parameter_count(spec, 4) == 6 * 4 + 6  # counted from what it builds
    assert models.hidden_units(spec) == 256  # unknown to the memory estimate: assumed wide
    runs = [Run("NormalizedGD", 0.1, 30, model=spec), Run("NormalizedGD", 0.1, 30, model=spec)]
    batched = train(runs, (X, y), progress=False)
    (loop,) = train(runs[:1], (X, y), progress=False, engine="loop")
    assert type(loop.model) is WideTwoLayer and loop.model.W.shape == (6, 4)
    torch.testing.assert_close(batched[0].model.W, loop.model.W, rtol=1e-10, atol=1e-12)
    assert loop.log_loss[-1] < loop.log_loss[0]
