"""One look for every figure: the same colour for the same optimizer in every chapter,
log-scaled step axes, labelled norms (each norm's own ``label``). matplotlib is imported
when a figure is drawn, not with the package."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import ArrayLike

from . import norms as _norms
from .stats import mean_interval

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from .history import History

COLORS = {
    "GD": "#7f7f7f",
    "NormalizedGD": "#1f77b4",
    "MomentumGD": "#17becf",
    "SignGD": "#d62728",
    "Signum": "#ff7f0e",
    "CoordinateDescent": "#8c564b",
    "SpectralDescent": "#2ca02c",
    "Muon": "#98df8a",
    "TorchMuon": "#006d2c",
    "Adam": "#9467bd",
    "RMSProp": "#e377c2",
    "AdaGrad": "#bcbd22",
    "MuonSignum": "#393b79",
    "MuonAdam": "#ad494a",
}


class _NormLabels(Mapping[str, str]):
    """Name → figure label of every registered norm, read from the norms themselves (so a
    norm registered later has its label here too)."""

    def __getitem__(self, name: str) -> str:
        if name not in _norms.names():
            raise KeyError(name)
        return _norms.label_of(name)

    def __iter__(self) -> Iterator[str]:
        return iter(_norms.names())

    def __len__(self) -> int:
        return len(_norms.names())


NORM_LABELS = _NormLabels()


def norm_label(norm: _norms.Norm | str) -> str:
    """The label of a norm (a :class:`~implicit_bias.norms.Norm` or a name) in titles."""
    return _norms.label_of(norm)


def color(label: str) -> str:
    """The book's colour for an optimizer (or a run labelled after one)."""
    for name in sorted(COLORS, key=len, reverse=True):
        if label.startswith(name):
            return COLORS[name]
    import matplotlib

    palette: list[str] = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    return palette[sum(map(ord, label)) % len(palette)]


def style() -> None:
    """The book's matplotlib style."""
    _pyplot()


def _pyplot() -> types.ModuleType:
    """``matplotlib.pyplot`` in the book's style, imported on first use (not with the package)."""
    try:
        import matplotlib.pyplot as plt
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError("Figures need matplotlib: pip install 'implicit-bias[plots]'.") from error

    plt.rcParams.update({
        "figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
        "axes.spines.right": False, "legend.frameon": False, "font.size": 10,
    })
    return plt


def _label(h: History) -> str:
    """A history's run label (``Run`` sets it when built: never None there)."""
    return cast(str, h.run.label)


def _legend_once(ax: Axes, histories: Iterable[History]) -> None:
    seen: dict[str, Line2D] = {}
    for line, h in zip(ax.get_lines(), histories):
        seen.setdefault(_label(h), line)
    ax.legend(seen.values(), seen.keys(), fontsize=8)


def margins(histories: Sequence[History], norms: Iterable[str] | None = None,
            title: str | None = None) -> Figure:
    """Normalized margins over training, one panel per norm (seeds share a colour)."""
    plt = _pyplot()
    norms = list(norms or histories[0].margins)
    fig: Figure
    fig, axes = plt.subplots(1, len(norms), figsize=(4.2 * len(norms), 3.3), squeeze=False)
    for ax, norm in zip(axes[0], norms):
        for h in histories:
            ax.plot(h.steps, h.margins[norm], color=color(_label(h)), lw=1.2, alpha=0.85)
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"normalized margin, {norm_label(norm)}")
        lo = max(min(np.nanmin(h.margins[norm][len(h.steps) // 2:]) for h in histories), 0)
        hi = max(np.nanmax(h.margins[norm]) for h in histories)
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.1 * (hi - lo))
    _legend_once(axes[0][0], histories)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def margin_bands(histories: Sequence[History], norms: Iterable[str] | None = None, title: str | None = None,
                 level: float = 0.95) -> Figure:
    """Normalized margins over training, one panel per norm: for each label the mean over
    its runs (seeds) as a line and a ``level`` Student-t interval of that mean as a band
    (no band for a single run). Runs sharing a label must share the step grid."""
    plt = _pyplot()
    norms = list(norms or histories[0].margins)
    groups: dict[str, list[History]] = {}
    for h in histories:
        groups.setdefault(_label(h), []).append(h)
    fig: Figure
    fig, axes = plt.subplots(1, len(norms), figsize=(4.2 * len(norms), 3.3), squeeze=False)
    for ax, norm in zip(axes[0], norms):
        tail: list[np.ndarray] = []
        for label, hs in groups.items():
            steps = hs[0].steps
            if any(len(h.steps) != len(steps) or np.any(h.steps != steps) for h in hs):
                raise ValueError(
                    f"runs labelled {label!r} have different step grids; give them the same steps.")
            values = np.array([h.margins[norm] for h in hs])
            mean, half = mean_interval(values, level)
            ax.plot(steps, mean, color=color(label), lw=1.3, label=f"{label} (n={len(hs)})")
            if len(hs) > 1:
                ax.fill_between(steps, mean - half, mean + half, color=color(label), alpha=0.2, lw=0)
            tail.append(values[:, len(steps) // 2:])
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"normalized margin, {norm_label(norm)}")
        lo = max(min(np.nanmin(v) for v in tail), 0)
        hi = max(np.nanmax(v) for v in tail)
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.1 * (hi - lo))
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def training(histories: Iterable[History], title: str | None = None) -> Figure:
    """Loss (log10) and directional convergence ``cos(θ_t, θ_final)`` over training."""
    plt = _pyplot()
    fig: Figure
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for h in histories:
        c = color(_label(h))
        a.plot(h.steps, h.log_loss / np.log(10), color=c, lw=1.2)
        b.plot(h.direction_grid, h.cosine_to_final(), color=c, lw=1.2)
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlabel("step")
    a.set_ylabel(r"$\log_{10}$ loss")
    b.set_ylabel(r"$\cos(\theta_t, \theta_{final})$")
    b.set_ylim(-0.05, 1.02)
    _legend_once(a, histories)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def cosines(curves: Mapping[str, ArrayLike], steps: ArrayLike, ylabel: str, title: str | None = None,
            ax: Axes | None = None) -> Axes:
    """Curves of cosines with reference directions, e.g. ``{'ℓ2 solution': cos, ...}``."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.2))
    for name, values in curves.items():
        ax.plot(steps, values, label=name, lw=1.3)
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def heatmap(values: ArrayLike, rows: Sequence[str], columns: Sequence[str], title: str | None = None,
            annotations: Sequence[Sequence[str]] | None = None, ax: Axes | None = None) -> Axes:
    """A rows × columns heat map of ``values`` (e.g. margins normalized by each column's
    best entry), annotated with ``annotations`` (strings, default: the values)."""
    plt = _pyplot()
    values = np.asarray(values, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 * len(columns) + 2.2, 0.42 * len(rows) + 1.2))
    image = ax.imshow(values, cmap="viridis", vmin=min(0.0, np.nanmin(values)), vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows)
    ax.tick_params(length=0)
    for i in range(len(rows)):
        for j in range(len(columns)):
            text = annotations[i][j] if annotations is not None else f"{values[i, j]:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="black" if values[i, j] > 0.6 else "white")
    ax.figure.colorbar(image, ax=ax, fraction=0.04)
    if title:
        ax.set_title(title)
    return ax


class Table(str):
    """A table of dict rows: its text is the aligned plain-text table (``print`` and tests read
    it, and it is still a ``str``), and a notebook or the book's page shows it as an HTML table
    (``_repr_html_``). End a cell with it, or ``display`` it, rather than printing it; give it a
    ``title`` rather than printing one above it (the page gathers a cell's printed lines into
    one box, above its tables)."""

    rows: list[Mapping[str, Any]]
    columns: list[str]
    title: str | None  # type: ignore[assignment]  # the table's title, shadowing str.title on purpose
    _body: list[list[str]]

    def __new__(cls, rows: Iterable[Mapping[str, Any]], columns: Iterable[str] | None = None, digits: int = 4,
                title: str | None = None) -> Table:
        rows = list(rows)
        columns = list(columns or (rows[0] if rows else []))
        body = [[_cell(r.get(c, ""), digits) for c in columns] for r in rows]
        widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]
        line: Callable[[list[str]], str] = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
        text = [line(columns), line(["-" * w for w in widths]), *map(line, body)]
        self = super().__new__(cls, "\n".join([title, *text] if title else text))
        self.rows, self.columns, self.title, self._body = rows, columns, title, body
        return self

    def __repr__(self) -> str:  # the text/plain form a notebook stores beside the HTML
        return str(self)

    def _repr_html_(self) -> str:
        from html import escape

        numeric = [all(_is_number(r.get(c)) for r in self.rows) for c in self.columns]
        align: Callable[[int], str] = lambda j: ' class="ib-num"' if numeric[j] else ""  # noqa: E731
        head = "".join(f"<th{align(j)}>{escape(c)}</th>" for j, c in enumerate(self.columns))
        body = "".join("<tr>" + "".join(f"<td{align(j)}>{escape(v)}</td>" for j, v in enumerate(row))
                       + "</tr>" for row in self._body)
        caption = f"<caption>{escape(self.title)}</caption>" if self.title else ""
        return (f'{_TABLE_STYLE}<table class="dataframe ib-table">{caption}<thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table>")


#: Compact and wrapping, so that a table fits the page's text column instead of scrolling.
# fixed layout at the column's width (!important: the theme's table rules win otherwise), so a
# wide table wraps its cells instead of running past the text column
_TABLE_STYLE = ("<style>table.ib-table{font-size:0.8em;border-collapse:collapse;max-width:100%;"
                "width:100% !important;table-layout:fixed !important}"
                "table.ib-table th,table.ib-table td{padding:0.2em 0.5em;white-space:normal;"
                "overflow-wrap:break-word;text-align:left;vertical-align:top}"
                "table.ib-table .ib-num{text-align:right;font-variant-numeric:tabular-nums}"
                "table.ib-table caption{caption-side:top;text-align:left;padding:0.2em 0.5em}</style>")


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _cell(v: object, digits: int) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}g}"
    return str(v)


def table(rows: Iterable[Mapping[str, Any]], columns: Iterable[str] | None = None, digits: int = 4,
          title: str | None = None) -> Table:
    """A table of dict rows (columns default to the first row's keys; floats to ``digits``
    significant digits; ``title`` above it): shown as an HTML table in a notebook, aligned text
    when printed."""
    return Table(rows, columns, digits, title)


def _wrap(fig: Figure, text: str, size: float) -> list[str]:
    """``text`` wrapped into lines that fit the figure's width at font ``size``, measured with the
    figure's own renderer (an estimate of half an em per character where there is none)."""
    import textwrap

    chars = max(20, int(fig.get_size_inches()[0] * 72 / (0.5 * size)))
    lines = textwrap.wrap(text, chars)
    renderer = getattr(fig.canvas, "get_renderer", lambda: None)()
    if renderer is None:
        return lines
    probe = fig.text(0, 0, "", fontsize=size)
    while chars > 20:
        probe.set_text("\n".join(lines))
        if probe.get_window_extent(renderer).width <= 0.97 * fig.bbox.width:
            break
        chars = int(chars * 0.9)
        lines = textwrap.wrap(text, chars)
    probe.remove()
    return lines


def _this_cell() -> str:
    """The cell being run, as a notebook shows it (``In [n]``), or "the cell above" outside one."""
    try:
        from IPython import get_ipython
    except ImportError:
        return "the cell above"
    count = getattr(get_ipython(), "execution_count", None)
    return f"the cell above (In [{count}])" if count else "the cell above"


def caption(fig: Figure, text: str, cell: str | None = None) -> None:
    """Write a figure's caption under it, inside the image: ``text``, then which cell and
    which run size drew it (a reader comparing a page with a rerun needs both).

    The figure grows by the caption's height and its axes keep their size, so the caption
    is part of every saved image (``savefig`` with or without ``bbox_inches="tight"``).
    Call it last, after ``tight_layout``. It returns nothing, so that a cell ending with it
    shows its figure once."""
    from .config import profile

    note = f"{text}  [Drawn by {cell or _this_cell()} at run size {profile()}.]"
    width, height = fig.get_size_inches()
    size = 8.5  # points
    lines = _wrap(fig, note, size)
    extra = (len(lines) * 1.35 * size + 10) / 72  # inches
    fig.set_layout_engine("none")  # keep the positions set here
    fig.set_size_inches(width, height + extra, forward=True)
    scale, shift = height / (height + extra), extra / (height + extra)
    for ax in fig.axes:  # the old figure now sits on top of the caption strip
        box = ax.get_position()
        ax.set_position((box.x0, shift + box.y0 * scale, box.width, box.height * scale))
    for artist in fig.texts:  # a suptitle is one of them
        x, y = artist.get_position()
        artist.set_position((x, shift + y * scale))
    fig.text(0.01, (4 / 72) / (height + extra), "\n".join(lines), ha="left", va="bottom", fontsize=size,
             color="0.25")
