"""Paired bootstrap test of a change in a metric between two scorings of the same samples.

Clean and adversarial predictions of one sample are not independent, so comparing their two
confidence intervals is wrong (and too conservative). advcal's bootstrap weights depend only
on ``(seed, sample index, replicate)``: two reports of the same samples with the same seed
count each sample equally often in replicate ``b``. The difference of their replicate ``b``
values is a replicate of the difference, which gives a percentile interval and a bootstrap
p-value for "the metric did not change".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from advcal.errors import InputError
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
    for name in ("bootstrap", "bootstrap_seed", "sample_keys_sha256"):
        if before.settings.get(name) != after.settings.get(name):
            raise InputError(
                f"after: expected a report of the same samples with the same bootstrap settings as "
                f"before, but {name} differs ({before.settings.get(name)!r} vs {after.settings.get(name)!r})"
            )
    if metric not in before.replicates or metric not in after.replicates:
        raise InputError(
            f"metric: expected a metric with bootstrap replicates (compute with bootstrap > 0), "
            f"got {metric!r}"
        )
    differences = after.replicates[metric] - before.replicates[metric]
    differences = differences[np.isfinite(differences)]
    low, high = boot.percentile_interval(differences, ci)
    if differences.size:
        # B replicates cannot resolve a p-value below 1/B: report that floor, not zero.
        tail = min(np.mean(differences <= 0), np.mean(differences >= 0))
        p_value = min(1.0, max(2 * tail, 1 / differences.size))
    else:
        p_value = math.nan
    return PairedChange(
        metric=metric,
        delta=float(after[metric] - before[metric]),
        ci=(low, high),
        p_value=float(p_value),
        significant=bool(low > 0 or high < 0),
    )
