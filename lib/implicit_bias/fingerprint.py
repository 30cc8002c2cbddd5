"""Which margin does an optimizer maximize? An implicit-bias fingerprint of any torch optimizer.

:func:`fingerprint` trains an optimizer (any callable ``params -> torch.optim.Optimizer``:
the library's, torch's or a third-party one) under the book's protocol — float64, a
decaying schedule ``η_t = η_0 t^{-a}``, the loss frame where the optimizer supports it —
on a fixed battery of problems whose candidate geometries have clearly different
max-margin solutions, and scores where it ends:

* ``binary``: separable Gaussian data with d > n where the ℓ2, ℓ∞ and ℓ1 max-margin
  directions are pairwise at cosine ≤ 0.81, each unique (``solution_spread`` ≈ 0);
* ``multiclass``: a 4-class, 4-feature linear problem (:func:`data.multiclass_pairs`, a
  4×4 weight matrix) where the Frobenius (ℓ2), entrywise ℓ∞ and ℓ1, spectral and nuclear
  solutions are pairwise at cosine ≤ 0.91 (the entrywise ℓ∞ and ℓ1 ones are not unique
  there, so only margins decide them);
* ``network``: a two-layer relu² network on the same binary data, scored by
  function-level margins (:func:`symmetry.function_margin`) and KKT certificates
  (no exact solution exists there, so it informs and does not decide).

On each linear problem the result holds the cosine to every exact solution, the
normalized margin in every norm divided by its maximum, the certificate ε in every norm,
the nearest geometry (largest margin fraction) and regime flags: the direction converged (its
cosine to the direction at half the steps), the steps did not stall (the parameters still
grow, the loss still falls and, on the plain loss, gradients did not underflow). A
problem's answer is *confident* when the thresholds below hold; they are calibrated by
``tests/test_fingerprint.py``: every library optimizer whose limit a theorem states is
named correctly with confidence, and a weighted-sign mutant (steepest descent for a
weighted ℓ∞ norm) is never confidently named. A random-direction optimizer is never named
anything but ℓ2, and not confidently at a budget where normalized GD already is: its
expected step is the normalized gradient's (see :class:`RandomDirection`), so ℓ2 is its
true limit and a long enough run reaches it.

The overall geometry is the one geometry that explains every applicable linear problem
(spectral and nuclear are ℓ2 on a vector, so Muon is ``spectral`` when it is ℓ2 on the
binary data and spectral on the matrix one). ``str(fp)`` is the text card,
:meth:`Fingerprint.figure` the figure card.
"""

from __future__ import annotations

import functools
import math
import textwrap
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch.optim.optimizer import ParamsT

from . import data as _data
from . import norms as _norms
from .margins import normalized_margin

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .history import History

#: What :func:`fingerprint` takes: a callable ``params -> torch.optim.Optimizer``.
OptimizerFactory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]

#: The geometries a fingerprint can name.
GEOMETRIES = ("l2", "linf", "l1", "spectral", "nuclear")
#: The candidates scored on each problem (on vectors spectral and nuclear are ℓ2).
CANDIDATES = {"binary": ("l2", "linf", "l1"),
              "multiclass": ("l2", "linf", "l1", "spectral", "nuclear"),
              "network": ("l2", "linf", "spectral")}
#: What each geometry predicts on each problem.
PREDICTS: dict[str, dict[str, str | None]] = {
    "binary": {"l2": "l2", "linf": "linf", "l1": "l1", "spectral": "l2", "nuclear": "l2"},
    "multiclass": {g: g for g in GEOMETRIES},
    "network": {"l2": "l2", "linf": "linf", "l1": None, "spectral": "spectral", "nuclear": None}}
#: Names of the geometries on the card (ℓ2 on a matrix is its Frobenius norm).
NAMES = {"l2": "ℓ2", "linf": "ℓ∞", "l1": "ℓ1", "spectral": "spectral", "nuclear": "nuclear"}

#: A linear problem's answer is the geometry whose normalized margin is the largest fraction
#: of its maximum (the theorems are about margins; a cosine is no test where the solution
#: is not unique, as the entrywise ℓ∞ and ℓ1 ones of the multiclass problem are not). Each
#: threshold below sits at least twice as far on the passing side from what the calibrated
#: optimizers of ``tests/test_fingerprint.py`` measure (4,000 steps, seed 0) as they are from
#: a perfect score. The answer is *confident* when that fraction is at least RATIO_MIN
#: (lowest measured: Adam's 0.905 on the multiclass problem, a shortfall of 0.095 against
#: the 0.20 allowed; the weighted-sign mutant's best is 0.53),
RATIO_MIN = 0.80
#: at least SEPARATION above the next geometry's (smallest measured gap: normalized GD's
#: 0.056 on the multiclass problem; the mutant's: 0.005),
SEPARATION = 0.025
#: the cosine to that solution is at least COS_MIN where the solution is unique
#: (:data:`UNIQUE`; the battery's solutions are pairwise at cosine ≤ 0.91; lowest measured:
#: 0.994, MomentumGD on the binary problem),
COS_MIN = 0.98
#: its direction moved by at most DRIFT_MAX (1 − cosine) over the last half of the steps
#: (largest measured: Muon's 2.4e-3 on the multiclass problem),
DRIFT_MAX = 5e-3
#: and over that half its ℓ2 norm grew by at least GROWTH_MIN (relative) while the loss fell
#: (smallest measured: 0.30).
GROWTH_MIN = 1e-3
#: Where the exact solution is unique (``maxmargin.solution_spread`` ≈ 0, checked by the
#: tests; the Frobenius one is unique as ℓ2 is strictly convex).
UNIQUE = {"binary": ("l2", "linf", "l1"), "multiclass": ("l2",)}
#: Default steps and schedule exponent of every problem (fixed, not sized: the answer must
#: not depend on the run size).
STEPS = 4000
SCHEDULE = 0.5
#: Active tolerance of the certificates of trained directions (their margins have not
#: equalized to rounding).
ACTIVE_TOL = 0.05
#: ``str(fingerprint)`` wraps its lines at this many characters (a page's output box shows 100).
WIDTH = 100


# --- the battery -------------------------------------------------------------------------


@dataclass
class Problem:
    """One problem of the battery: data, model config, candidate geometries and, for a
    linear problem, the exact max-margin directions (unit ℓ2) and margins."""

    name: str
    X: torch.Tensor
    y: torch.Tensor
    model: dict[str, Any]
    candidates: tuple[str, ...]
    solutions: dict[str, np.ndarray] = field(default_factory=dict)  # geometry -> unit-ℓ2 direction (flat)
    margins: dict[str, float] = field(default_factory=dict)  # geometry -> max normalized margin

    def solution_cosines(self) -> dict[tuple[str, str], float]:
        """Pairwise cosines of the exact solutions: how different the geometries are here."""
        g = list(self.solutions)
        return {(a, b): float(self.solutions[a] @ self.solutions[b])
                for i, a in enumerate(g) for b in g[i + 1:]}


def _multiclass_data() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(16)  # chosen so that the five solutions differ (cosines ≤ 0.91)
    k, d, n = 4, 4, 12
    labels = np.arange(n) % k
    X = rng.normal(size=(k, d))[labels] + 0.5 * rng.normal(size=(n, d))
    return _data.multiclass_pairs(X, labels, k)


def _solve(X: torch.Tensor, norm: str) -> tuple[np.ndarray, float]:
    from .maxmargin import max_margin

    matrix = _norms.by_name(norm).max_margin_ndim == 2
    sol = max_margin(X if matrix else X.reshape(len(X), -1), torch.ones(len(X), dtype=X.dtype), norm)
    w = np.asarray(sol.direction, dtype=float).reshape(-1)
    return w / np.linalg.norm(w), sol.margin


@functools.cache
def battery() -> dict[str, Problem]:
    """The problems (cached: the exact solutions are solved once per process, ~2 s)."""
    Xb, yb = _data.small_gaussian(n=8, d=12, seed=25)  # chosen: ℓ2, ℓ∞, ℓ1 cosines ≤ 0.81
    Zm, ym = _multiclass_data()
    out = {"binary": Problem("binary", Xb, yb, {"kind": "linear"}, CANDIDATES["binary"]),
           "multiclass": Problem("multiclass", Zm, ym, {"kind": "linear"}, CANDIDATES["multiclass"]),
           "network": Problem("network", Xb, yb, {"kind": "two_layer", "width": 8, "activation": "relu2"},
                              CANDIDATES["network"])}
    for name in ("binary", "multiclass"):
        p = out[name]
        Z = p.y.reshape(-1, *[1] * (p.X.dim() - 1)) * p.X
        for g in p.candidates:
            p.solutions[g], p.margins[g] = _solve(Z, g)
    return out


# --- controls ------------------------------------------------------------------------------


class RandomDirection(torch.optim.Optimizer):
    """A control: each step is a random ℓ2-unit vector ``r`` over all parameters (from its
    own seeded generator), sign-flipped to descend: ``θ ← θ + η s r`` with
    ``s = −sign⟨r, g⟩``. It has no geometry of its own *per step*, but in expectation
    ``E[s r] = −√(2/(πp)) g/‖g‖₂`` (p parameters, r uniform on the sphere, to leading
    order): it is normalized gradient descent slowed by ``√(2/(πp))`` plus noise whose sum
    grows only like ``√(Σ η_t²)``, so with ``Σ η_t = ∞`` its direction too tends to the ℓ2
    max-margin solution. A fingerprint must not name it earlier than the evidence allows."""

    def __init__(self, params: ParamsT, lr: float, seed: int = 0) -> None:
        super().__init__(params, {"lr": lr})
        self.generator = torch.Generator().manual_seed(seed)

    def reframe(self, shift: float) -> None:
        """Scale-free: the loss frame changes nothing."""

    # The controls ignore a closure and return None; torch types step(closure) as returning its loss.
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            r = [torch.randn(p.shape, generator=self.generator, dtype=torch.float64).to(p) for p in ps]
            size = math.sqrt(sum(float((x * x).sum()) for x in r))
            sign = -1.0 if sum(float((x * p.grad).sum()) for x, p in zip(r, ps)) > 0 else 1.0
            for p, x in zip(ps, r):
                p.add_(x, alpha=sign * group["lr"] / size)


class WeightedSignDescent(torch.optim.Optimizer):
    """A mutant of sign descent: ``θ_j ← θ_j − η sign(g_j) / w_j`` with a fixed positive
    weight per coordinate (log-uniform in [e^{−spread}, e^{spread}], from ``seed``). It is
    steepest descent for the weighted norm ``max_j w_j |θ_j|``, so its limit is that norm's
    max-margin direction, not ℓ∞'s."""

    def __init__(self, params: ParamsT, lr: float, spread: float = 1.0, seed: int = 0) -> None:
        super().__init__(params, {"lr": lr})
        generator = torch.Generator().manual_seed(seed)
        for group in self.param_groups:
            for p in group["params"]:
                u = torch.rand(p.shape, generator=generator, dtype=torch.float64)
                self.state[p]["weight"] = torch.exp(spread * (2 * u - 1)).to(p)

    def reframe(self, shift: float) -> None:
        """Scale-free: the loss frame changes nothing."""

    # The controls ignore a closure and return None; torch types step(closure) as returning its loss.
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(torch.sign(p.grad) / self.state[p]["weight"], alpha=-group["lr"])


# --- the result ----------------------------------------------------------------------------


@dataclass
class ProblemPrint:
    """The fingerprint on one problem (see the module docstring)."""

    problem: str
    cosine: dict[str, float]  # geometry -> cosine to its exact solution (linear problems)
    margin_ratio: dict[str, float]  # geometry -> normalized margin / its maximum (network: function margin)
    epsilon: dict[str, float]  # geometry -> KKT certificate ε
    nearest: str | None
    confident: bool
    converged: bool
    stalled: bool
    drift: float  # 1 − cos(θ_T, θ_{T/2})
    growth: float  # ‖θ_T‖ / ‖θ_{T/2}‖ − 1
    log10_loss: float
    framed: bool
    reasons: list[str] = field(default_factory=list)  # why not confident
    error: str | None = None  # the optimizer could not run here (e.g. 2-D parameters only)
    history: History | None = None

    @property
    def applicable(self) -> bool:
        return self.error is None


@dataclass
class Fingerprint:
    """What :func:`fingerprint` returns: per problem a :class:`ProblemPrint`, the overall
    ``geometry`` (None when no single geometry explains the linear problems), whether it is
    ``confident`` and the wall time. ``str()`` is the text card."""

    name: str
    problems: dict[str, ProblemPrint]
    geometry: str | None
    confident: bool
    seconds: float
    seed: int
    steps: int

    def table(self) -> list[dict[str, Any]]:
        """One row per problem: nearest geometry, cosines, ratios, ε and flags."""
        rows = []
        for p in self.problems.values():
            row: dict[str, Any] = {"optimizer": self.name, "problem": p.problem, "nearest": p.nearest,
                   "confident": p.confident}
            if p.error:
                rows.append({**row, "error": p.error})
                continue
            row |= {f"cos {g}": c for g, c in p.cosine.items()}
            row |= {f"ratio {g}": r for g, r in p.margin_ratio.items()}
            row |= {f"eps {g}": e for g, e in p.epsilon.items()}
            rows.append(row | {"drift": p.drift, "growth": p.growth})
        return rows

    def __str__(self) -> str:
        head = (f"fingerprint of {self.name}: "
                f"{NAMES.get(self.geometry, 'no single geometry') if self.geometry else 'no single geometry'}"
                f" ({'confident' if self.confident else 'NOT confident'}; seed {self.seed}, "
                f"{self.steps} steps, {self.seconds:.1f} s)")
        lines = textwrap.wrap(head, WIDTH, subsequent_indent="    ")
        for p in self.problems.values():
            if p.error:
                lines += textwrap.wrap(f"  {p.problem:<10} no result (the optimizer failed here): {p.error}",
                                       WIDTH, subsequent_indent=" " * 6)
                continue
            keys = p.cosine if p.cosine else p.margin_ratio
            cells = []
            for g in keys:
                c = f"cos {p.cosine[g]:.3f} γ/γ*" if p.cosine else "γ_fn"  # network: no maximum known
                cells.append(f"{NAMES[g]} [{c} {p.margin_ratio[g]:.3g} ε {p.epsilon[g]:.1e}]")
            nearest = NAMES.get(p.nearest, "?") if p.nearest else "?"
            flag = "confident" if p.confident else "not confident: " + "; ".join(p.reasons)
            lines += textwrap.wrap(f"  {p.problem:<10} → {nearest:<8} ({flag})", WIDTH,
                                   subsequent_indent=" " * 6)
            row = "  "
            for cell in cells:  # as many geometries to a line as fit in WIDTH characters
                if len(row) + 2 + len(cell) > WIDTH and row.strip():
                    lines.append(row)
                    row = "  "
                row += "  " + cell
            lines.append(row)
            lines.append(f"    drift {p.drift:.1e}, growth {p.growth:.2g}, log10 loss {p.log10_loss:.3g}"
                         f"{'' if p.framed else ', plain loss (no frame)'}")
        return "\n".join(lines)

    def figure(self, ax: Axes | Sequence[Axes] | np.ndarray | None = None) -> Figure:
        """The figure card: per linear problem the normalized margin in each geometry as a
        fraction of its maximum (dashed: RATIO_MIN), and for the network −log10 of the
        certificate ε; the nearest geometry is coloured (blue: confident)."""
        from .plots import _pyplot

        plt = _pyplot()
        probs = [p for p in self.problems.values() if p.applicable]
        fig: Figure
        if ax is None:
            fig, axes = plt.subplots(1, len(probs), figsize=(3.2 * len(probs), 2.6), squeeze=False)
            axes = axes[0]
        else:
            axes = np.atleast_1d(np.asarray(ax, dtype=object))  # one Axes or several
            fig = axes[0].figure
        for a, p in zip(axes, probs):
            linear = bool(p.cosine)
            keys = list(p.cosine if linear else p.epsilon)
            vals = [p.margin_ratio[g] if linear else -math.log10(max(p.epsilon[g], 1e-16)) for g in keys]
            bars = a.bar([NAMES[g] for g in keys], vals, color="#9ab")
            for b, g in zip(bars, keys):
                if g == p.nearest:
                    b.set_color("#36c" if p.confident else "#c93")
            if linear:
                a.axhline(RATIO_MIN, color="k", lw=0.6, ls="--")
                a.set_ylim(max(0.0, min(0.5, min(vals) - 0.05)), 1.0)
            a.set_title(f"{p.problem}: {'γ/γ*' if linear else '−log10 ε'}", fontsize=9)
            a.tick_params(labelsize=8)
        fig.suptitle(f"{self.name} → {NAMES.get(self.geometry, '—') if self.geometry else '—'}"
                     f"{'' if self.confident else ' (not confident)'}", fontsize=10)
        fig.tight_layout()
        return fig


# --- scoring ---------------------------------------------------------------------------------


def _regime(h: History, framed: bool) -> tuple[float, float, bool, bool, list[str]]:
    half = h.direction_row(h.steps[-1] / 2)  # the first logged direction of the last half
    i = int(np.searchsorted(h.steps, h.direction_grid[half]))  # the same step on the log grid
    drift = float(1 - h.directions[-1] @ h.directions[half])
    growth = float(h.param_norm[-1] / h.param_norm[i] - 1)
    reasons = []
    converged = drift <= DRIFT_MAX
    if not converged:
        reasons.append(f"direction still moving (drift {drift:.1e} > {DRIFT_MAX:g})")
    stalled = not (growth >= GROWTH_MIN and h.log_loss[-1] < h.log_loss[i])
    if stalled:
        reasons.append(f"steps stalled (norm growth {growth:.1e} over the last half)")
    if not framed and h.log_loss[-1] < -700:
        stalled = True
        reasons.append("the plain loss underflowed (gradients are zero)")
    return drift, growth, converged, stalled, reasons


def _certificates(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor,
                  candidates: Iterable[str]) -> dict[str, float]:
    from .kkt import kkt_certificate

    out = {}
    for g in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[g] = float(kkt_certificate(model, X, y, g, active_tol=ACTIVE_TOL).epsilon)
        except Exception:  # a solver failure is reported as an unknown ε, never hidden as small
            out[g] = math.nan
    return out


def _score_linear(p: Problem, h: History, framed: bool) -> ProblemPrint:
    w = h.directions[-1]
    cosine = {g: float(w @ p.solutions[g]) for g in p.candidates}
    model, X, y = h.model_at(-1), p.X.to(torch.float64), p.y.to(torch.float64)
    ratio = {g: normalized_margin(model, X, y, g) / p.margins[g] for g in p.candidates}
    eps = _certificates(model, X, y, p.candidates)
    nearest = max(ratio, key=lambda g: ratio[g])
    second = max((r for g, r in ratio.items() if g != nearest), default=-math.inf)
    drift, growth, converged, stalled, reasons = _regime(h, framed)
    if nearest in UNIQUE.get(p.name, ()) and cosine[nearest] < COS_MIN:
        reasons.insert(0, f"cosine to the {NAMES[nearest]} solution {cosine[nearest]:.3f} < {COS_MIN}")
    if ratio[nearest] - second < SEPARATION:
        reasons.insert(0, f"{NAMES[nearest]} margin only {ratio[nearest] - second:.3f} above the next "
                          f"(< {SEPARATION})")
    if ratio[nearest] < RATIO_MIN:
        reasons.insert(0, f"{NAMES[nearest]} margin {ratio[nearest]:.3f} of the maximum < {RATIO_MIN}")
    return ProblemPrint(p.name, cosine, ratio, eps, nearest, not reasons, converged, stalled, drift, growth,
                        float(h.log_loss[-1] / math.log(10)), framed, reasons, history=h)


def _score_network(p: Problem, h: History, framed: bool) -> ProblemPrint:
    from .symmetry import function_margin

    model = h.model_at(-1)
    X, y = p.X.to(torch.float64), p.y.to(torch.float64)
    fm: dict[str, float] = {}
    for g in p.candidates:
        try:
            fm[g] = float(function_margin(model, X, y, g))
        except ValueError:  # not separated
            fm[g] = math.nan
    eps = _certificates(model, X, y, p.candidates) if all(v > 0 for v in fm.values()) else \
        {g: math.nan for g in p.candidates}
    finite = {g: e for g, e in eps.items() if math.isfinite(e)}
    nearest = min(finite, key=lambda g: finite[g]) if finite else None
    drift, growth, converged, stalled, reasons = _regime(h, framed)
    reasons.insert(0, "a network has no exact solution: reported, not decided")
    return ProblemPrint(p.name, {}, fm, eps, nearest, False, converged, stalled, drift, growth,
                        float(h.log_loss[-1] / math.log(10)), framed, reasons, history=h)


def _optimizer_class(factory: OptimizerFactory, name: str) -> type[torch.optim.Optimizer]:
    """A ``torch.optim.Optimizer`` subclass whose construction calls ``factory(params)``, so
    that ``Run(optimizer=...)`` and :func:`train.train`'s reference loop take any factory."""

    def new(cls: type, params: list[torch.Tensor], lr: float | None = None,
            **options: Any) -> torch.optim.Optimizer:
        return factory(params)

    # type() is typed as returning a plain type; this one subclasses torch.optim.Optimizer.
    return cast(type[torch.optim.Optimizer], type(name, (torch.optim.Optimizer,), {"__new__": new}))


def _check_factory(factory: object) -> None:
    """Refuse, before any training, what is not a callable ``params -> torch.optim.Optimizer``.
    A factory that raises on this probe is left to the problems (each records its error:
    ``torch.optim.Muon`` refuses vectors, not the matrix here)."""
    if not callable(factory):
        raise TypeError(f"fingerprint needs a callable params -> torch.optim.Optimizer (an optimizer class "
                        f"or e.g. `lambda p: torch.optim.Adam(p, lr=1e-3)`), got {factory!r}.")
    try:
        opt = factory([torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)])
    except Exception:  # noqa: BLE001 - judged on the problems' own parameters
        return
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"fingerprint: {_label(factory)}(params) returned a {type(opt).__name__}, not a "
                        "torch.optim.Optimizer: pass a callable that builds one, e.g. "
                        "`lambda p: torch.optim.SGD(p, lr=0.1)`.")


def _framed(cls: type[torch.optim.Optimizer]) -> bool:
    """Whether the reference loop trains this optimizer on the framed loss: it can rescale its
    state (``reframe`` or ``rescale_gradients``, as the library's can; see train.py)."""
    # A class of _optimizer_class: its __new__ takes the parameters alone and calls the factory.
    make = cast(OptimizerFactory, cls)
    try:
        opt = make([torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)])
    except Exception:  # noqa: BLE001 - it trained on the real parameters; only this probe failed
        return False
    return hasattr(opt, "reframe") or hasattr(opt, "rescale_gradients")


def _label(factory: object) -> str:
    if isinstance(factory, type):
        return factory.__name__
    name: str = getattr(factory, "__name__", type(factory).__name__)
    return name


def _overall(prints: dict[str, ProblemPrint]) -> tuple[str | None, bool]:
    linear = [p for k, p in prints.items() if k != "network" and p.applicable]
    if not linear:
        return None, False
    fits = {g for g in GEOMETRIES if all(PREDICTS[p.problem][g] == p.nearest for p in linear)}
    if fits == {"l2", "spectral", "nuclear"}:  # the binary data alone: all three are ℓ2 there
        fits = {"l2"}
    geometry = fits.pop() if len(fits) == 1 else None
    return geometry, bool(geometry) and all(p.confident for p in linear)


def fingerprint(optimizer: OptimizerFactory, name: str | None = None, steps: int = STEPS,
                schedule: float = SCHEDULE, seed: int = 0,
                problems: Iterable[str] = ("binary", "multiclass", "network")) -> Fingerprint:
    """Fingerprint ``optimizer``: a callable ``params -> torch.optim.Optimizer`` (a lambda
    around torch's, a third-party or the library's optimizer, with its rate and options).
    Each problem trains it for ``steps`` steps in float64 from the seed's initialization,
    with the base rates scaled by ``t^{−schedule}`` (:func:`optim.power_schedule`), on the
    framed loss when the optimizer can rescale its state (the library's) and on the plain
    loss otherwise (then ``framed`` is False and gradients underflowing is flagged). An
    optimizer that cannot run on a problem (``torch.optim.Muon`` on vectors) gets that
    problem's error instead. Deterministic given ``seed``. See the module docstring."""
    from .runs import Run
    from .train import train

    start = time.perf_counter()
    _check_factory(optimizer)
    name = name or _label(optimizer)
    cls = _optimizer_class(optimizer, name)
    bat = battery()
    prints: dict[str, ProblemPrint] = {}
    for key in problems:
        p = bat[key]
        run = Run(cls, 1.0, steps, schedule=schedule, seed=seed, model=p.model, label=name)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*has no reframe or rescale_gradients")
                warnings.filterwarnings("ignore", message=".*left Adam's regime")
                warnings.filterwarnings("ignore", message="eps = 0 and some coordinate")
                # failures='raise' (the default) and no store: a list of histories, a failure raises
                (h,) = cast("list[History]", train([run], (p.X, p.y), norms=("l2",), progress=False,
                                                   device="cpu", engine="loop"))
        except Exception as err:  # an optimizer that cannot take these parameters
            nan = math.nan
            prints[key] = ProblemPrint(key, {}, {}, {}, None, False, False, True, nan, nan, nan, False, [],
                                       error=f"{type(err).__name__}: {err}".splitlines()[0][:160])
            continue
        framed = _framed(cls)
        score = _score_network if key == "network" else _score_linear
        prints[key] = score(p, h, framed)
    geometry, confident = _overall(prints)
    return Fingerprint(name, prints, geometry, confident, time.perf_counter() - start, seed, steps)


__all__ = ["fingerprint", "Fingerprint", "ProblemPrint", "battery", "RandomDirection", "WeightedSignDescent",
           "GEOMETRIES", "COS_MIN", "RATIO_MIN", "SEPARATION", "DRIFT_MAX", "GROWTH_MIN",
           "UNIQUE"]
