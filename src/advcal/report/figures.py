"""The report's figures, drawn from plain numbers (lists that may hold ``None``) to PNG bytes.

Every figure is a :class:`matplotlib.figure.Figure` with its own Agg canvas. Nothing here
touches pyplot: its global figure registry is not thread-safe, can open a window, and calling
``matplotlib.use`` would change the backend of a user's interactive session behind their back.

Condition 0 is always the clean run and the rest are the attacked runs in ε order, so every
figure gives one condition the same colour: clean in blue, attacks from orange to dark red.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

DPI = 100
CLEAN_COLOUR = "#1f77b4"
GAP_COLOUR = "#c0392b"
# Panels per row of the reliability diagrams before they wrap onto a new row.
PANELS_PER_ROW = 4
# Above this many classes the heatmap cells are too small to carry a number.
MAX_ANNOTATED_CLASSES = 40

Number = float | int | None


def condition_colours(n: int) -> list[str]:
    """Colours of ``n`` conditions: clean in blue, then attacks from orange to dark red."""
    ramp = colormaps["YlOrRd"]
    attacks = n - 1
    positions = [0.45 + 0.5 * i / max(attacks - 1, 1) for i in range(attacks)]
    return [CLEAN_COLOUR, *(_hex(ramp(p)) for p in positions)]


def _hex(rgba: tuple[float, ...]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgba[:3])


def _floats(values: Sequence[Number]) -> np.ndarray:
    """``values`` as float64 with ``None`` as NaN (report.json stores NaN as null)."""
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes, without the software stamp so equal input gives equal bytes.

    The constrained layout is solved once, then switched off: with a layout engine set,
    ``savefig`` draws the whole figure twice (once to lay it out, once to render it)."""
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        fig.set_layout_engine("none")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def reliability_diagrams(
    labels: Sequence[str], curves: Sequence[Mapping[str, Sequence[Number]]], eces: Sequence[Number]
) -> bytes:
    """One reliability diagram per condition: accuracy per confidence bin against the diagonal.

    ``curves`` are report.json ``reliability`` dicts (``lower``, ``upper``, ``count``,
    ``confidence``, ``accuracy``). The gap between each bin's accuracy and its mean confidence is
    hatched, and each non-empty bin's sample count is written above it, so a bar resting on
    three samples is not mistaken for evidence.
    """
    columns = min(len(curves), PANELS_PER_ROW)
    rows = math.ceil(len(curves) / columns)
    fig = _figure(3.0 * columns, 3.1 * rows)
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True).ravel()
    for ax, label, curve, ece, colour in zip(
        axes, labels, curves, eces, condition_colours(len(curves)), strict=False
    ):
        _reliability_panel(ax, curve, colour)
        ax.set_title(f"{label}  ·  ECE {_short(ece)}", fontsize=10)
    for ax in axes[len(curves):]:
        ax.set_axis_off()
    for ax in axes[::columns]:
        ax.set_ylabel("accuracy")
    # One legend for all panels: a legend inside a panel would cover bars and counts.
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8,
               frameon=False)
    return to_png(fig)


def _reliability_panel(ax: Axes, curve: Mapping[str, Sequence[Number]], colour: str) -> None:
    lower, upper = _floats(curve["lower"]), _floats(curve["upper"])
    count = _floats(curve["count"])
    accuracy, confidence = _floats(curve["accuracy"]), _floats(curve["confidence"])
    width = upper - lower
    filled = count > 0
    ax.plot([0, 1], [0, 1], color="#888888", linestyle="--", linewidth=1, label="perfect calibration")
    ax.bar(lower[filled], accuracy[filled], width=width[filled], align="edge", color=colour,
           edgecolor="white", linewidth=0.6, label="accuracy in bin (colour = condition)")
    # The gap runs from accuracy to the bin's mean confidence, where a calibrated bar would end.
    gap = confidence - accuracy
    ax.bar(lower[filled], gap[filled], bottom=accuracy[filled], width=width[filled], align="edge",
           facecolor=(*to_rgb(GAP_COLOUR), 0.15), edgecolor=GAP_COLOUR, hatch="///", linewidth=0.4,
           label="gap to mean confidence")
    vertical = bool(filled.any() and count[filled].max() >= 1000)
    for x, w, n, top in zip(lower[filled], width[filled], count[filled],
                            np.fmax(accuracy, confidence)[filled], strict=True):
        ax.text(x + w / 2, (0 if math.isnan(top) else top) + 0.02, f"{int(n)}", ha="center",
                va="bottom", fontsize=6.5, color="#333333", rotation=90 if vertical else 0)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.15)
    ax.set_xlabel("confidence")


def _short(value: Number) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def confidence_histograms(
    labels: Sequence[str], histograms: Sequence[Mapping[str, Sequence[Number]]]
) -> bytes:
    """Overlaid step histograms of the fraction of samples per confidence bin, one per condition.

    The y axis is logarithmic: confidence usually piles up in the top bin, and a linear axis
    would hide where the remaining samples went. Empty bins rest on the bottom edge.
    """
    fractions = [_floats(h["fraction"]) for h in histograms]
    positive = np.concatenate([f[f > 0] for f in fractions])
    floor = 0.5 * positive.min() if positive.size else 1e-3
    fig = _figure(6.4, 3.4)
    ax = fig.subplots()
    for label, histogram, fraction, colour in zip(
        labels, histograms, fractions, condition_colours(len(histograms)), strict=True
    ):
        edges = np.append(_floats(histogram["lower"]), _floats(histogram["upper"])[-1:])
        ax.stairs(np.fmax(np.nan_to_num(fraction), floor), edges, baseline=floor, color=colour,
                  linewidth=1.8, label=label)
    ax.set_yscale("log")
    ax.set_ylim(floor, 1.5)
    ax.set_xlim(0, 1)
    ax.set_xlabel("confidence (top-label probability)")
    ax.set_ylabel("fraction of samples (log)")
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    ax.grid(alpha=0.3, which="major")
    return to_png(fig)


def metrics_vs_eps(
    eps: Sequence[float],
    values: Mapping[str, Sequence[Number]],
    intervals: Mapping[str, Sequence[Sequence[Number] | None]],
    inflection: float | None = None,
) -> bytes:
    """One panel per metric (e.g. ECE, Brier, accuracy) against ε, clean at ε = 0.

    ``intervals[name][i]`` is the bootstrap ``[low, high]`` of point ``i`` (or ``None``);
    ``inflection`` is the ε where ECE jumps most, drawn as a dashed vertical line.
    """
    x = _floats(eps)
    fig = _figure(3.2 * len(values), 3.0)
    axes = fig.subplots(1, len(values), squeeze=False).ravel()
    for ax, (name, series) in zip(axes, values.items(), strict=True):
        y = _floats(series)
        ax.errorbar(x, y, yerr=_error_bars(y, intervals.get(name)), color=CLEAN_COLOUR, marker="o",
                    markersize=4, capsize=3, linewidth=1.5)
        if inflection is not None:
            # Labelled through a legend placed where it covers no data: the line usually runs
            # through the steepest part of the curve, where a text label would collide with it.
            ax.axvline(inflection, color=GAP_COLOUR, linestyle="--", linewidth=1,
                       label=f"ECE inflection ε={inflection:g}")
            ax.legend(fontsize=7, frameon=False, loc="best")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("ε (0 = clean)")
        ax.set_xticks(x, [f"{v:g}" for v in x], fontsize=7)
        ax.grid(alpha=0.3)
    return to_png(fig)


def _error_bars(y: np.ndarray, bounds: Sequence[Sequence[Number] | None] | None) -> np.ndarray | None:
    """Asymmetric error bars from CI bounds; NaN (no bar) where a bound is missing."""
    if not bounds:
        return None
    low = _floats([b[0] if b else None for b in bounds])
    high = _floats([b[1] if b else None for b in bounds])
    # Clip at zero: a percentile interval may not contain its point estimate.
    return np.fmax(np.vstack([y - low, high - y]), 0)


def per_class_heatmap(
    classes: Sequence[object],
    counts: Sequence[Number],
    columns: Sequence[str],
    values: Sequence[Sequence[Number]],
) -> bytes:
    """Per-class ECE: one row per class (labelled with its sample count), one column per condition.

    The colour scale runs from 0 to the largest value in this figure and is the same for every
    column, so a column that looks darker really is worse calibrated.
    """
    grid = np.vstack([_floats(row) for row in values]) if values else np.zeros((0, len(columns)))
    top = np.nanmax(grid) if np.isfinite(grid).any() else 1.0
    fig = _figure(1.2 * len(columns) + 2.6, min(max(2.4, 0.32 * len(classes) + 1.2), 30.0))
    ax = fig.subplots()
    cmap = colormaps["YlOrRd"].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=max(top, 1e-9), aspect="auto")
    if len(classes) <= MAX_ANNOTATED_CLASSES:
        for (row, column), value in np.ndenumerate(grid):
            dark = not math.isnan(value) and value > 0.6 * top
            ax.text(column, row, _short(value), ha="center", va="center", fontsize=8,
                    color="white" if dark else "#222222")
    ax.set_xticks(range(len(columns)), columns, fontsize=8)
    row_labels = [f"{c}  (n={_count(n)})" for c, n in zip(classes, counts, strict=True)]
    ax.set_yticks(range(len(classes)), row_labels, fontsize=8)
    ax.tick_params(length=0)
    colourbar = fig.colorbar(image, ax=ax, shrink=0.9)
    colourbar.set_label("per-class ECE")
    return to_png(fig)


def _count(value: Number) -> str:
    return "?" if value is None else f"{int(value)}"


def risk_coverage(
    labels: Sequence[str],
    coverages: Sequence[Sequence[Number]],
    risks: Sequence[Sequence[Number]],
    aurcs: Sequence[Number],
) -> bytes:
    """Risk–coverage curves: error rate among the most confident ``coverage`` of the inputs.

    A model whose confidence ranks its mistakes well has a curve that stays low until high
    coverage; the area under it (AURC, in the legend) is lower for a better ranking.
    """
    fig = _figure(6.4, 3.4)
    ax = fig.subplots()
    for label, coverage, risk, aurc, colour in zip(
        labels, coverages, risks, aurcs, condition_colours(len(labels)), strict=True
    ):
        ax.plot(_floats(coverage), _floats(risk), color=colour, linewidth=1.8,
                label=f"{label} (AURC {_short(aurc)})")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("coverage (fraction of inputs kept, most confident first)")
    ax.set_ylabel("risk (error rate)")
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    ax.grid(alpha=0.3)
    return to_png(fig)
