import math

import numpy as np
import pytest
from implicit_bias import stats


def test_mean_interval_matches_the_t_quantile():
    mean, half = stats.mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.302652729749464 * 1.0 / math.sqrt(3), rel=1e-12)  # t_{0.975, 2}
    _, half90 = stats.mean_interval([1.0, 2.0, 3.0], level=0.9)
    assert half90 < half


def test_coverage_of_the_interval():
    rng = np.random.default_rng(0)
    samples = [rng.normal(5.0, 2.0, 5) for _ in range(4000)]
    covered = np.mean([abs(m - 5.0) <= h for m, h in map(stats.mean_interval, samples)])
    assert covered == pytest.approx(0.95, abs=0.015)


def test_one_seed_and_bad_input():
    mean, half = stats.mean_interval([3.0])
    assert mean == 3.0 and math.isnan(half)
    with pytest.raises(ValueError, match="non-empty"):
        stats.mean_interval([])
    with pytest.raises(ValueError, match="level"):
        stats.mean_interval([1.0, 2.0], level=1.5)


def test_by_label():
    rows = [{"label": "a", "x": 1.0}, {"label": "a", "x": 3.0}, {"label": "b", "x": 5.0}]
    out = stats.by_label(rows, "x")
    assert out["a"][0] == 2.0 and math.isnan(out["b"][1])


def test_intervals_along_steps_match_the_scalar_ones():
    values = np.array([[1.0, 10.0], [2.0, 20.0], [4.0, 30.0]])
    mean, half = stats.mean_interval(values)
    for j in range(2):
        assert (mean[j], half[j]) == pytest.approx(stats.mean_interval(values[:, j]))
    assert np.isnan(stats.mean_interval(values[:1])[1]).all()
