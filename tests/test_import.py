"""A light import: ``import implicit_bias`` loads neither cvxpy nor matplotlib (nor
ipywidgets); every module loads them only when a solver or a figure needs them, and the
package's names still resolve on first use."""

from __future__ import annotations

import subprocess
import sys

import implicit_bias as ib
import pytest

HEAVY = ("cvxpy", "matplotlib", "ipywidgets")


def loaded_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running ``code``."""
    check = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_import_loads_no_solver_or_plotting_library():
    assert loaded_after("import implicit_bias") == []


def test_every_module_defers_its_heavy_imports():
    code = ("import importlib, pkgutil, implicit_bias, implicit_bias.verdicts as v\n"
            "for pkg in (implicit_bias, v):\n"
            "    for m in pkgutil.iter_modules(pkg.__path__):\n"
            "        importlib.import_module(f'{pkg.__name__}.{m.name}')")
    assert loaded_after(code) == []


def test_names_resolve_on_first_use():
    code = "import implicit_bias as ib; ib.max_margin; ib.NotSeparableError; ib.Run; ib.plots.color('Adam')"
    assert loaded_after(code) == []
    assert ib.kkt.kkt_certificate is ib.kkt.certificate.kkt_certificate
    assert issubclass(ib.NotSeparableError, ValueError)
    assert callable(ib.plots.margins) and ib.maxmargin.max_margin is ib.max_margin
    for name in ib.__all__:
        assert getattr(ib, name) is not None, name
    assert "kkt" in dir(ib) and "max_margin" in dir(ib)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        ib.nonsense  # noqa: B018


def test_solvers_and_figures_load_their_libraries_when_used():
    solve = "ib.max_margin(np.array([[1.0, 0.5], [-1.0, 0.2]]), np.array([1.0, -1.0]))"
    assert "cvxpy" in loaded_after(f"import implicit_bias as ib, numpy as np\n{solve}")
    assert "matplotlib" in loaded_after("import implicit_bias as ib; ib.plots.style()")
