"""Terminal rendering of advcal results (Rich tables)."""

from __future__ import annotations

import math

from rich.table import Table

from advcal.metrics.report import CalibrationReport


def _fmt(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:.4f}"


def metrics_table(report: CalibrationReport, title: str = "Calibration") -> Table:
    """One row per scalar metric: key, value, interval and what exactly it measures."""
    settings = report.settings
    caption = f"{settings['n_samples']} samples, {settings['n_classes']} classes"
    if report.intervals:
        caption += f"; {settings['ci_level']:.0%} bootstrap intervals, {settings['bootstrap']} replicates"
    table = Table(title=title, caption=caption)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    if report.intervals:
        table.add_column("interval", justify="right")
    table.add_column("definition")
    for key, value in report.items():
        row = [key, _fmt(value)]
        if report.intervals:
            low, high = report.intervals.get(key, (math.nan, math.nan))
            row.append(f"[{_fmt(low)}, {_fmt(high)}]")
        table.add_row(*row, report.descriptions[key])
    return table


def reliability_table(report: CalibrationReport) -> Table:
    """The reliability curve: per non-empty bin, its range, count, confidence and accuracy."""
    curve = report.reliability
    table = Table(title="Reliability (equal-width bins)")
    for name in ("bin", "count", "confidence", "accuracy", "gap"):
        table.add_column(name, justify="right")
    for low, high, count, conf, acc in zip(
        curve["lower"], curve["upper"], curve["count"], curve["confidence"], curve["accuracy"],
        strict=True,
    ):
        if count:
            table.add_row(f"{low:.3f}–{high:.3f}", str(count), _fmt(conf), _fmt(acc), _fmt(acc - conf))
    return table
