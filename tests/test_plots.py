"""Plots: the seed-band figure draws the mean over seeds and a Student-t band."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from implicit_bias import data, plots, train  # noqa: E402


@pytest.fixture(scope="module")
def histories():
    X, y = data.gaussian(n=20, d=5, seed=0)
    runs = [train.Run(o, 0.5, 50, schedule=0.5, seed=s, model={"kind": "linear"})
            for o in ("NormalizedGD", "SignGD") for s in (0, 1, 2)]
    return train.train(runs, (X, y), norms=("l2", "linf"), progress=False, device="cpu")


def test_margin_bands_mean_and_band(histories):
    fig = plots.margin_bands(histories, ("l2", "linf"))
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"NormalizedGD (n=3)", "SignGD (n=3)"}
    mean = np.mean([h.margins["l2"] for h in histories[:3]], axis=0)
    np.testing.assert_allclose(lines["NormalizedGD (n=3)"].get_ydata(), mean)
    assert len(ax.collections) == 2  # one band per label
    matplotlib.pyplot.close(fig)


def test_margin_bands_single_run_has_no_band(histories):
    fig = plots.margin_bands(histories[:1], ("l2",))
    assert len(fig.axes[0].collections) == 0
    matplotlib.pyplot.close(fig)


def test_margin_bands_needs_a_shared_grid(histories):
    X, y = data.gaussian(n=20, d=5, seed=0)
    other = train.train(train.Run("NormalizedGD", 0.5, 80, model={"kind": "linear"}), (X, y),
                        norms=("l2", "linf"), progress=False, device="cpu")
    with pytest.raises(ValueError, match="step grids"):
        plots.margin_bands(histories[:3] + other, ("l2",))
