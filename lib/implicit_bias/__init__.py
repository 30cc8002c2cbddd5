"""implicit_bias: which max-margin solution does an optimizer converge to?

Optimizers (`optim`), homogeneous models (`models`), norms (`norms`), margins (`margins`),
exact max-margin solvers (`maxmargin`), KKT certificates (`kkt`), function-level margins
(`symmetry`), regime monitors (`regime`), the chapters' verdicts (`verdicts`), a search for better
points near a KKT point (`optimality`), data (`data`), training sweeps (`train`, with the
batched engine of `batched` and `stacked`), stored paper-size results (`store`) and plots
(`plots`) for the executable book on the implicit bias of optimizers.

Submodules and the names below are loaded on first use (PEP 562), so ``import implicit_bias``
is quick and pulls in neither cvxpy nor matplotlib until a solver or a figure needs them.
"""

import pkgutil
from importlib import import_module
from typing import Any

__version__ = "0.4.0"

#: Every submodule, found on disk so that a new module needs no entry here.
_SUBMODULES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)))

#: Shortcuts: name -> the submodule that defines it.
_SHORTCUTS = {
    "device": "config", "profile": "config", "sized": "config",
    "direction_cosine": "margins", "normalized_margin": "margins", "smoothed_margin": "margins",
    "NotSeparableError": "maxmargin", "MaxMarginSolverError": "maxmargin", "max_margin": "maxmargin",
    "History": "history", "Run": "runs",
}


def __getattr__(name: str) -> Any:  # a submodule, or a shortcut's class or function
    if name in _SUBMODULES:
        value = import_module(f".{name}", __name__)
    elif name in _SHORTCUTS:
        value = getattr(import_module(f".{_SHORTCUTS[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBMODULES, *_SHORTCUTS})


del Any  # imported for the annotations above only: the package's namespace (and dir()) stays as it was


__all__ = [*_SUBMODULES, *_SHORTCUTS, "__version__"]
