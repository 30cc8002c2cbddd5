"""Shared fixtures for the unit tests.

Everything runs in float64 on the CPU; hypothesis runs few examples with no deadline so
the whole suite stays fast on two cores, and derandomized so CI sees the same examples on
every run. ``HYPOTHESIS_PROFILE=thorough`` runs 600 random examples per property instead
(about a minute for the norms and max-margin properties): use it to hunt for new failures.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from implicit_bias import data

settings.register_profile(
    "implicit_bias",
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", parent=settings.get_profile("implicit_bias"), max_examples=600, derandomize=False
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "implicit_bias"))


@pytest.fixture(scope="session")
def small_data():
    """20 separable Gaussian points in 5 dimensions, labels ±1 (float64)."""
    return data.gaussian(n=20, d=5, seed=0)
