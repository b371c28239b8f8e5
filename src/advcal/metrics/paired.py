"""Paired bootstrap test of a change in a metric between two scorings of the same samples.

Clean and adversarial predictions of one sample are not independent, so comparing their two
confidence intervals is wrong (and too conservative). advcal's bootstrap weights depend only
on ``(seed, sample index, replicate)``: two reports of the same samples with the same seed
count each sample equally often in replicate ``b``. The difference of their replicate ``b``
values is a replicate of the difference, which gives a percentile interval and a bootstrap
p-value for "the metric did not change".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from advcal._core.errors import InputError
from advcal.metrics import bootstrap as boot
from advcal.metrics.report import CalibrationReport


@dataclass(frozen=True)
class PairedChange:
    """``after - before`` of one metric, with its paired bootstrap interval and p-value."""

    metric: str
    delta: float
    ci: tuple[float, float]
    p_value: float
    significant: bool

    def to_dict(self) -> dict[str, object]:
        entry = asdict(self)
        entry["ci"] = list(self.ci)
        return entry


def paired_change(
    before: CalibrationReport, after: CalibrationReport, metric: str, ci: float = 0.95
) -> PairedChange:
    """The change of ``metric`` from ``before`` to ``after`` (e.g. clean to adversarial).

    Both reports must score the same samples with the same bootstrap seed and replicate
    count (``CalibrationStats(bootstrap=B, seed=s)`` updated with the same indices). The
    p-value is two-sided: twice the smaller share of replicate differences on either side of
    zero, floored at ``1/B`` for ``B`` replicates. The change is significant when the ``ci``
    interval excludes zero.
    """
    return paired_changes(before, after, [metric], ci)[metric]


def paired_changes(
    before: CalibrationReport, after: CalibrationReport, metrics: Sequence[str], ci: float = 0.95
) -> dict[str, PairedChange]:
    """:func:`paired_change` of each of ``metrics``, by name (one interval computation for all)."""
    for name in ("bootstrap", "bootstrap_seed", "sample_keys_sha256"):
        if before.settings.get(name) != after.settings.get(name):
            raise InputError(
                f"after: expected a report of the same samples with the same bootstrap settings as "
                f"before, but {name} differs ({before.settings.get(name)!r} vs {after.settings.get(name)!r})"
            )
    for metric in metrics:
        if metric not in before.replicates or metric not in after.replicates:
            raise InputError(
                f"metric: expected a metric with bootstrap replicates (compute with bootstrap > 0), "
                f"got {metric!r}"
            )
    differences = np.stack([after.replicates[m] - before.replicates[m] for m in metrics])
    bounds = boot.percentile_intervals(differences, ci)
    finite = np.isfinite(differences)
    counts = finite.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # B replicates cannot resolve a p-value below 1/B: report that floor, not zero.
        tail = np.minimum((finite & (differences <= 0)).sum(1), (finite & (differences >= 0)).sum(1)) / counts
        p_values = np.minimum(1.0, np.maximum(2 * tail, 1 / counts))
    return {
        metric: PairedChange(
            metric=metric,
            delta=float(after[metric] - before[metric]),
            ci=(float(low), float(high)),
            p_value=float(p_value),
            significant=bool(low > 0 or high < 0),
        )
        for metric, (low, high), p_value in zip(metrics, bounds, p_values, strict=True)
    }
