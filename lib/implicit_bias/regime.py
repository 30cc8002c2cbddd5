"""Regime monitors: is a run inside the regime its theorem describes?

* **Adam's step ratio.** Adam's step is ``m̂/√v̂``; the ε = 0 theorem (Gronich & Vardi 2026,
  Thm 3.6) describes runs where it stays of order one, so Adam moves like sign descent.
  ``√v̂`` forgets old gradients at about ``½ log(1/β2)`` nats per step (:func:`forget_rate`).
  Near the end of training the gradient scales with the loss, so if ``log L`` falls by more
  than that per step, ``√v̂`` is dominated by the larger past gradients and the ratio
  collapses: the Adam block stops moving (measured: 1e-22 by step ~1,100 for Muon-Adam at
  β = (0.9, 0.95) on the digits net). :func:`ratio_deficit` predicts that from the loss
  alone; :func:`step_ratio` (an observer for ``train(observe=...)``) measures it.
* **Path length.** Under ``η_t = η_0 t^{−a}`` a normalized method moves by at most
  ``Σ_{t>T} η_t`` unit steps after step T, which bounds how far its direction can still turn:
  a directional-convergence check weaker than that cannot fail
  (:func:`implicit_bias.verdicts.certificates.path_length_bound`).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import torch

from . import optim, rules

if TYPE_CHECKING:
    from .history import History
    from .runs import Run

#: A run leaves Adam's regime when the predicted step ratio falls below e^{-this} (0.1).
DEFICIT_LIMIT = math.log(10.0)


def forget_rate(beta2: float) -> float:
    """Nats per step at which ``√v̂`` forgets: ``½ log(1/β2)`` (0.026 at β2 = 0.95)."""
    if not 0 < beta2 < 1:
        raise ValueError(f"beta2 must be in (0, 1), got {beta2}.")
    return 0.5 * math.log(1.0 / beta2)


def loss_drop_per_step(history: History) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, drop)``: the mean fall of ``log L`` per step between consecutive logged
    steps (positive while the loss falls), at the end step of each interval."""
    steps = np.asarray(history.steps, dtype=float)
    return history.steps[1:], -np.diff(history.log_loss) / np.diff(steps)


def ratio_deficit(history: History, beta2: float) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, deficit)``: the predicted ``−log`` of Adam's step ratio from the loss alone.
    Each step the ratio shrinks by the loss's fall in excess of :func:`forget_rate` and
    recovers at that rate when the loss falls slower, never above 1 (deficit ≥ 0)."""
    steps, drop = loss_drop_per_step(history)
    widths = np.diff(np.asarray(history.steps, dtype=float))
    deficit = 0.0
    out: list[float] = []
    for d, w in zip(drop, widths):
        deficit = max(0.0, deficit + (d - forget_rate(beta2)) * w)
        out.append(deficit)
    return steps, np.array(out)


def adam_beta2(run: Run) -> float | None:
    """The β2 of a run's Adam block (Adam, Muon-Adam): its ``betas`` option, else its
    optimizer class's default; None for other optimizers."""
    if run.optimizer not in ("Adam", "MuonAdam"):
        return None
    default = inspect.signature(optim.OPTIMIZERS[run.optimizer]).parameters["betas"].default
    return float(run.options.get("betas", default)[1])


def check(history: History) -> str | None:
    """A message if an Adam-family run left its regime (the predicted step ratio ended below
    ``e^{−DEFICIT_LIMIT}``), else None."""
    beta2 = adam_beta2(history.run)
    if beta2 is None or len(history.steps) < 2:
        return None
    steps, deficit = ratio_deficit(history, beta2)
    if deficit[-1] <= DEFICIT_LIMIT:
        return None
    first = int(steps[np.argmax(deficit > DEFICIT_LIMIT)])
    return (f"run {history.run.label!r} (seed {history.run.seed}) left Adam's regime from about step "
            f"{first}: log L falls faster than ½ log(1/β2) = {forget_rate(beta2):.3g} per step, so √v̂ "
            f"cannot forget and Adam's step ratio |m̂|/√v̂ collapses (predicted e^-{deficit[-1]:.0f} at the "
            "end). The ε = 0 theorem does not describe this run: lower β2 (keeping β1 ≤ β2) or the base "
            "rate. See implicit_bias.regime.")


def warn(histories: Iterable[object]) -> None:
    """Warn once for every history of :func:`check` (``train`` calls this); a run a worker
    stored itself (a :class:`store.Stored`) brings its check's message along."""
    for h in histories:
        # a RunFailed has no history (no log_loss) and no message
        message = check(cast("History", h)) if hasattr(h, "log_loss") else getattr(h, "regime", None)
        if message:
            warnings.warn(message, RuntimeWarning, stacklevel=3)


def _moments(optimizer: torch.optim.Optimizer, group: dict[str, Any],
             p: torch.Tensor) -> dict[str, tuple[torch.Tensor, float]]:
    """A parameter's bias-corrected moments with their log-factors: as its rule declares
    them, or, for torch.optim's Adam family, under Adam's entry names (no log-factors)."""
    if isinstance(optimizer, optim.RuleOptimizer):
        return optimizer.moments(group, p)
    state = optimizer.state.get(p, {})
    if "betas" not in group or not all(m.entry in state for m in rules.ADAM_MOMENTS.values()):
        return {}
    step = int(state["step"])
    return {which: (m.corrected(state[m.entry], group, step), 0.0) for which, m in rules.ADAM_MOMENTS.items()}


@torch.no_grad()
def live_step_ratios(model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer) -> dict[str, tuple[torch.Tensor, int]]:
    """Adam's ``|m̂|/√v̂`` per parameter of every group whose rule keeps both moments
    (:meth:`optim.RuleOptimizer.moments`: Adam's, bias-corrected), over the live coordinates
    only: ``v̂ > 0`` and a non-zero gradient at this step (a dead unit's or a blank pixel's
    ratio decays like ``(β1/√β2)^t`` in any regime). Returns ``{name: (ratios, numel)}``;
    the frame cancels in the ratio."""
    names = {id(p): name for name, p in model.named_parameters()}
    out: dict[str, tuple[torch.Tensor, int]] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            moments = _moments(optimizer, group, p)
            if not {"first", "second"} <= set(moments):
                continue
            (m, log_m), (v, log_v) = moments["first"], moments["second"]
            factor = math.exp(log_m - log_v / 2)  # the entries' factors (see implicit_bias.rules)
            live = v > 0
            if p.grad is not None:
                live &= p.grad != 0
            out[names.get(id(p), "?")] = ((m[live].abs() / v[live].sqrt() * factor).reshape(-1), p.numel())
    return out


def step_ratio(model: torch.nn.Module, optimizer: torch.optim.Optimizer, frame: float) -> dict[str, float]:
    """An observer for ``train(observe=...)``: Adam's step ``|m̂|/√v̂`` in units of η_t over
    the live coordinates (:func:`live_step_ratios`) of every Adam group. For every parameter
    ``'step ratio <name>'`` (the median) and ``'step ratio <name> q90'`` (the 90th
    percentile); pooled over all of them ``'step ratio median'``, ``'step ratio max'`` and
    ``'live fraction'`` (of the Adam coordinates); NaN for an optimizer without an Adam
    group. Coordinates whose gradient keeps changing sign have a small ratio in any regime;
    when the whole block freezes (the loss falls faster than √v̂ forgets) the 90th
    percentile collapses too."""
    out: dict[str, float] = {}
    pooled: list[torch.Tensor] = []
    total = 0
    for name, (ratio, size) in live_step_ratios(model, optimizer).items():
        pooled.append(ratio)
        total += size
        ratio = ratio if len(ratio) else torch.full((1,), math.nan)
        out[f"step ratio {name}"] = float(ratio.median())
        out[f"step ratio {name} q90"] = float(ratio.quantile(0.9))
    flat = torch.cat(pooled) if pooled else torch.empty(0)
    live = len(flat) > 0
    out["step ratio median"] = float(flat.median()) if live else math.nan
    out["step ratio max"] = float(flat.max()) if live else math.nan
    out["live fraction"] = len(flat) / total if live else math.nan
    return out


@torch.no_grad()
def gradient_direction(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                       frame: float) -> dict[str, np.ndarray]:
    """An observer for ``train(observe=...)``: the loss gradient's unit ℓ2 direction
    ``g / ‖g‖₂`` (one flat vector; the frame cancels). For a ReLU network this is the
    normalized (sub)gradient autograd picks at the kinks: the non-smooth theory assumes
    that it converges along the trajectory (:func:`direction_settling` measures that)."""
    grads = [p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]
    g = torch.cat(grads) if grads else torch.zeros(1)
    size = g.norm()
    return {"gradient direction": (g / size if size > 0 else g).cpu().numpy()}


def direction_settling(directions: npt.ArrayLike, steps: npt.ArrayLike,
                       last: float = 0.5) -> dict[str, float]:
    """How far unit vectors logged over training (rows of ``directions``, e.g. the
    ``'gradient direction'`` of :func:`gradient_direction` or ``History.directions``) still
    move over the last ``last`` fraction of the run's logged steps on a log scale:
    ``1 − cos`` with the final vector at the window's start (``'start gap'``) and at its
    middle (``'mid gap'``), and the smallest cosine between consecutive logged vectors in the
    window (``'min consecutive cos'``). A converging sequence has shrinking gaps."""
    d = np.asarray(directions, dtype=float)
    steps = np.asarray(steps, dtype=float)
    logs = np.log(steps)
    start = int(np.searchsorted(logs, logs[-1] - last * (logs[-1] - logs[0])))
    mid = (start + len(steps) - 1) // 2
    window = d[start:]
    consecutive = (window[1:] * window[:-1]).sum(1) if len(window) > 1 else np.array([1.0])
    return {"start step": int(steps[start]), "start gap": float(1 - d[start] @ d[-1]),
            "mid gap": float(1 - d[mid] @ d[-1]), "min consecutive cos": float(consecutive.min())}


def steps_to_reach(steps: npt.ArrayLike, values: npt.ArrayLike, level: float) -> float:
    """The first logged step at which ``values`` reach ``level`` (inf if never)."""
    hit = np.flatnonzero(np.asarray(values, dtype=float) >= level)
    return float(np.asarray(steps)[hit[0]]) if len(hit) else math.inf


__all__ = ["forget_rate", "loss_drop_per_step", "ratio_deficit", "check", "warn", "step_ratio",
           "live_step_ratios", "gradient_direction", "direction_settling", "steps_to_reach",
           "adam_beta2", "DEFICIT_LIMIT"]
