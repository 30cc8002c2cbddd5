"""implicit_bias: which max-margin solution does an optimizer converge to?

Optimizers (`optim`), homogeneous models (`models`), norms (`norms`), margins (`margins`),
exact max-margin solvers (`maxmargin`), KKT certificates (`kkt`), function-level margins
(`symmetry`), regime monitors (`regime`), the chapters' verdicts (`verdicts`), a search for better
points near a KKT point (`optimality`), data (`data`), training sweeps (`train`, with the
batched engine of `batched` and `stacked`), stored paper-size results (`store`) and plots
(`plots`) for the executable book on the implicit bias of optimizers.
"""

from . import (
    batched,
    config,
    data,
    kkt,
    losses,
    margins,
    maxmargin,
    models,
    norms,
    optim,
    optimality,
    plots,
    regime,
    stacked,
    stats,
    store,
    symmetry,
    train,
    updates,
    verdicts,
)
from .config import device, profile, sized
from .margins import direction_cosine, normalized_margin, smoothed_margin
from .maxmargin import NotSeparableError, max_margin
from .train import History, Run

__version__ = "0.3.0"

__all__ = [
    "batched", "config", "data", "kkt", "losses", "margins", "maxmargin", "models", "norms", "optim",
    "optimality", "plots", "regime", "stacked", "stats", "store", "symmetry", "train", "updates",
    "verdicts", "device", "profile", "sized", "direction_cosine",
    "normalized_margin", "smoothed_margin", "NotSeparableError", "max_margin", "History", "Run",
    "__version__",
]
