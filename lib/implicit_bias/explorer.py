"""An interactive explorer: optimizers on 2-D separable data against the exact ℓ2, ℓ∞ and ℓ1
max-margin directions.

:class:`Explorer` trains linear models (``train`` with the framed loss) for a choice of
optimizers and hyperparameters and draws one figure: the data with each run's decision
boundary and the exact max-margin directions, the angle of each iterate over training
against the exact angles, and the normalized margins. :meth:`Explorer.widgets` wraps it in
ipywidgets controls (optional dependency); without a kernel (the static site) call
:meth:`Explorer.figure` with the default settings instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from . import data as datasets
from . import plots
from .maxmargin import MaxMarginSolution, max_margin
from .train import Run, train

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .history import History

# In 2-D two support points fix the direction for every norm, so these sets are chosen to
# have ℓ2, ℓ∞ and ℓ1 solutions that differ.
#: "four points": z_i = y_i x_i are Q = (1, 0.35), the single ℓ2 support vector; R = (0.9, 1.8),
#: which ties with Q at the ℓ1 solution (an edge of the ℓ1 ball, 4° above the axis, not a
#: vertex); P = (2, −1), which ties with Q at the ℓ∞ solution (36.5°, not a corner); and a far
#: point S = (1, 6) that never supports but dominates the first gradients. The gradient turns
#: by 25-70° during training, so where a run ends depends on its dynamics.
FOUR_POINTS = (np.array([[1.0, 0.35], [0.9, 1.8], [-2.0, 1.0], [-1.0, -6.0]]),
               np.array([1.0, 1.0, -1.0, -1.0]))
DATASETS = {
    "four points": lambda: datasets._tensors(*FOUR_POINTS),
    "two clouds": lambda: datasets.toy_2d(n=20, seed=0),
    "two clouds (seed 1)": lambda: datasets.toy_2d(n=20, seed=1),
    "one point (2, 1) and its mirror": lambda: datasets._tensors(np.array([[2.0, 1.0], [-2.0, -1.0]]),
                                                                np.array([1.0, -1.0])),
}
#: Base rates that suit each optimizer on these data sets, and the norm each one's theory names.
RATES = {"NormalizedGD": 1.0, "MomentumGD": 1.0, "SignGD": 0.5, "Signum": 0.5, "CoordinateDescent": 1.0,
         "Adam": 0.5, "RMSProp": 0.5, "AdaGrad": 1.0}
NORMS = ("l2", "linf", "l1")


@dataclass(frozen=True)
class Settings:
    """What the reader can change. ``beta1`` is the momentum of MomentumGD, Signum and Adam;
    ``beta2`` the second-moment decay of Adam and RMSProp; ``eps`` their stability constant
    (and AdaGrad's); ``schedule`` the exponent a of η_t = η_0 t^{−a}."""

    dataset: str = "four points"
    optimizers: tuple[str, ...] = ("NormalizedGD", "SignGD", "CoordinateDescent", "Adam")
    eps: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.99
    schedule: float = 0.5
    steps: int = 500

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {self.dataset!r}.")
        unknown = set(self.optimizers) - set(RATES)
        if unknown:
            raise ValueError(f"unknown optimizers {sorted(unknown)}; choose from {sorted(RATES)}.")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"beta1 and beta2 must be in [0, 1), got {self.beta1}, {self.beta2}.")
        if not self.eps >= 0:
            raise ValueError(f"eps must be ≥ 0, got {self.eps}.")
        if not (isinstance(self.steps, int) and 10 <= self.steps <= 100_000):
            raise ValueError(f"steps must be an integer in [10, 100000], got {self.steps!r}.")


def _options(name: str, s: Settings) -> dict[str, Any]:
    if name in ("MomentumGD", "Signum"):
        return {"momentum": s.beta1}
    if name == "Adam":
        return {"betas": (s.beta1, s.beta2), "eps": s.eps}
    if name == "RMSProp":
        return {"beta2": s.beta2, "eps": s.eps}
    if name == "AdaGrad":
        return {"eps": s.eps}
    return {}


@dataclass
class Explorer:
    """Holds the current settings, the exact solutions per data set, and the last runs."""

    settings: Settings = field(default_factory=Settings)
    histories: list[History] = field(default_factory=list)
    _exact: dict[str, dict[str, MaxMarginSolution]] = field(default_factory=dict)

    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        return DATASETS[self.settings.dataset]()

    def exact(self) -> dict[str, MaxMarginSolution]:
        """The exact unit max-margin directions of the current data set, per norm."""
        name = self.settings.dataset
        if name not in self._exact:
            X, y = self.data()
            self._exact[name] = {n: max_margin(X, y, n) for n in NORMS}
        return self._exact[name]

    def run(self, **changes: Any) -> list[History]:  # Any: each Settings field has its own type
        """Apply ``changes`` to the settings (validated) and train every chosen optimizer."""
        self.settings = replace(self.settings, **changes)
        s = self.settings
        runs = [Run(name, RATES[name], s.steps, schedule=s.schedule, model={"kind": "linear"},
                    options=_options(name, s)) for name in s.optimizers]
        # no store given: train returns a list
        self.histories = cast("list[History]", train(runs, self.data(), norms=NORMS, log_points=40,
                                                      progress=False))
        return self.histories

    def figure(self, **changes: Any) -> Figure:
        """Train with ``changes`` applied and draw the three panels; returns the figure."""
        import matplotlib.pyplot as plt

        self.run(**changes)
        plots.style()
        X, y = (t.numpy() for t in self.data())
        exact = self.exact()
        fig, (ax_data, ax_angle, ax_margin) = plt.subplots(1, 3, figsize=(13, 3.8))
        lim = 1.15 * np.abs(X).max()
        ax_data.scatter(*X[y > 0].T, marker="+", color="k", s=30)
        ax_data.scatter(*X[y < 0].T, marker="_", color="k", s=30)
        line = np.linspace(-lim, lim, 2)

        def angle(v: np.ndarray) -> np.ndarray | np.floating:
            # degrees relative to the exact ℓ2 direction, wrapped to (−180, 180]
            l2 = cast(np.ndarray, exact["l2"].direction)  # no blocks: one array
            reference = math.atan2(l2[1], l2[0])
            degrees: np.ndarray | np.floating = (np.degrees(np.arctan2(v[..., 1], v[..., 0]) - reference)
                                                 + 180) % 360 - 180
            return degrees

        offsets = {n: float(angle(np.asarray(exact[n].direction))) for n in NORMS}
        for n, style in zip(NORMS, ("-", "--", ":")):
            w = cast(np.ndarray, exact[n].direction)  # no blocks: one array
            ax_data.plot(line * -w[1], line * w[0], style, color="0.6", lw=1)
            ax_angle.axhline(offsets[n], ls=style, color="0.6", lw=1, label=f"exact {n}")
        for h in self.histories:
            w = h.direction().numpy()
            label = cast(str, h.run.label)  # Run sets it when built
            ax_data.plot(line * -w[1], line * w[0], color=plots.color(label), lw=1.5, label=label)
            ax_angle.plot(h.direction_grid, angle(h.directions), color=plots.color(label), lw=1.3)
            ax_margin.plot(h.steps, h.margins["l2"] / exact["l2"].margin, color=plots.color(label),
                           lw=1.3, label=f"{label}: ℓ2")
            ax_margin.plot(h.steps, h.margins["linf"] / exact["linf"].margin, ls="--",
                           color=plots.color(label), lw=1.3)
        zoom = max(3 * max(abs(v) for v in offsets.values()), 2.0)
        ax_angle.set_ylim(-zoom, zoom)
        ax_data.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal",
                    title=f"{self.settings.dataset}: decision boundaries")
        ax_data.legend(fontsize=7, loc="lower right")
        ax_angle.set(xscale="log", xlabel="step", ylabel="angle from the ℓ2 solution (°)",
                     title="direction vs the exact solutions (grey)")
        ax_angle.legend(fontsize=7)
        s = self.settings
        ax_margin.set(xscale="log", xlabel="step", ylabel="margin / max margin", ylim=(0, 1.05),
                      title=f"ℓ2 (solid), ℓ∞ (dashed) margins\nε={s.eps:g}, β=({s.beta1:g}, {s.beta2:g}), "
                            f"η_t ∝ t^-{s.schedule:g}")
        fig.tight_layout()
        return fig

    def widgets(self) -> tuple[Any, dict[str, Any]]:  # ipywidgets' objects (the library has no hints)
        """ipywidgets controls that redraw on every change (needs ``ipywidgets``)."""
        import ipywidgets as w

        s = self.settings
        controls = {
            "dataset": w.Dropdown(options=sorted(DATASETS), value=s.dataset, description="data"),
            "optimizers": w.SelectMultiple(options=sorted(RATES), value=s.optimizers, rows=5,
                                           description="optimizers"),
            "eps": w.SelectionSlider(options=[0.0, 1e-12, 1e-8, 1e-6, 1e-4, 1e-2, 1e-1], value=s.eps,
                                     description="ε"),
            "beta1": w.FloatSlider(min=0.0, max=0.99, step=0.01, value=s.beta1, description="β1"),
            "beta2": w.FloatSlider(min=0.0, max=0.999, step=0.001, value=s.beta2, description="β2"),
            "schedule": w.FloatSlider(min=0.0, max=1.0, step=0.05, value=s.schedule, description="t^-a, a"),
            "steps": w.IntSlider(min=50, max=5000, step=50, value=s.steps, description="steps"),
        }

        def draw(**values: Any) -> None:
            import matplotlib.pyplot as plt

            values["optimizers"] = tuple(values["optimizers"])
            self.figure(**values)
            plt.show()

        output = w.interactive_output(draw, controls)
        return w.VBox([w.HBox([w.VBox(list(controls.values())[:4]), w.VBox(list(controls.values())[4:])]),
                       output]), controls


__all__ = ["Explorer", "Settings", "DATASETS", "RATES"]
