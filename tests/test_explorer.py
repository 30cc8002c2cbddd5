"""The explorer: settings are validated, runs follow the settings, and the widgets redraw
with the values a reader sets."""

from __future__ import annotations

import matplotlib
import pytest
from implicit_bias.explorer import DATASETS, Explorer, Settings

matplotlib.use("Agg")


def test_settings_are_validated():
    with pytest.raises(ValueError, match="dataset"):
        Settings(dataset="nope")
    with pytest.raises(ValueError, match="unknown optimizers"):
        Settings(optimizers=("SGD",))
    with pytest.raises(ValueError, match="beta1 and beta2"):
        Settings(beta2=1.0)
    with pytest.raises(ValueError, match="eps"):
        Settings(eps=-1.0)
    with pytest.raises(ValueError, match="steps"):
        Settings(steps=5)


def test_runs_follow_the_settings_and_draw_three_panels():
    explorer = Explorer()
    fig = explorer.figure(optimizers=("Adam", "NormalizedGD"), eps=1e-4, beta1=0.5, steps=60)
    assert [h.run.label for h in explorer.histories] == ["Adam", "NormalizedGD"]
    adam = explorer.histories[0].run
    assert adam.options == {"betas": (0.5, 0.99), "eps": 1e-4} and adam.steps == 60
    assert len(fig.axes) == 3 and "ε=0.0001" in fig.axes[2].get_title()
    assert set(explorer.exact()) == {"l2", "linf", "l1"}
    # the exact solutions differ on every data set, so the angle panel can tell them apart
    for name in DATASETS:
        explorer.settings = Settings(dataset=name)
        directions = [sol.direction / (sol.direction ** 2).sum() ** 0.5 for sol in explorer.exact().values()]
        assert max(abs(a @ b) for i, a in enumerate(directions) for b in directions[i + 1:]) < 1 - 1e-4


def test_widgets_redraw_with_the_new_values():
    pytest.importorskip("ipywidgets")
    explorer = Explorer(Settings(optimizers=("Adam",), steps=50))
    box, controls = explorer.widgets()
    assert set(controls) == {"dataset", "optimizers", "eps", "beta1", "beta2", "schedule", "steps"}
    controls["eps"].value = 1e-2
    assert explorer.settings.eps == 1e-2
    assert explorer.histories[0].run.options["eps"] == 1e-2
    controls["optimizers"].value = ("SignGD", "Adam")
    assert sorted(h.run.label for h in explorer.histories) == ["Adam", "SignGD"]
    controls["dataset"].value = "two clouds (seed 1)"
    assert explorer.settings.dataset == "two clouds (seed 1)" and explorer.histories[0].steps[-1] == 50
