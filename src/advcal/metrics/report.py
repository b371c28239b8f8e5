"""The calibration report: every metric computed from :class:`CalibrationStats` records.

Each scalar carries a fully qualified name (binning scheme, bin count, norm, top-label or
class-wise), because "ACE" or "ECE" mean different things in different libraries. The point
estimate and every bootstrap replicate go through the same code, the point estimate with
weight 1 per sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from advcal.metrics import bootstrap as boot
from advcal.metrics.binning import (
    bin_edges,
    equal_mass_bin_sums,
    equal_width_bin_index,
    rank_order,
    sorted_by_rank,
)
from advcal.metrics.smooth import REPLICATES, SmoothEceSolver


def metric_catalogue(n_bins: int) -> dict[str, tuple[str, str]]:
    """Short key -> (fully qualified id, plain description) of every scalar metric."""
    return {
        "accuracy": ("accuracy.top1", "top-1 accuracy"),
        "confidence_mean": ("confidence.top_label.mean", "mean top-label confidence"),
        "confidence_gap": (
            "confidence.top_label.mean_minus_accuracy",
            "mean confidence minus accuracy (> 0: over-confident)",
        ),
        "ece": (
            f"ece.top_label.equal_width_{n_bins}.l1",
            f"top-label ECE, L1, {n_bins} equal-width bins",
        ),
        "ace": (
            f"ece.top_label.equal_mass_{n_bins}.l1",
            f"ACE: top-label ECE, L1, {n_bins} equal-mass bins",
        ),
        "sce": (
            f"ece.classwise.equal_width_{n_bins}.l1.mean_over_classes",
            f"SCE: class-wise ECE, L1, {n_bins} equal-width bins, mean over classes",
        ),
        "mce": (
            f"ece.top_label.equal_width_{n_bins}.max",
            f"top-label MCE (max bin gap), {n_bins} equal-width bins",
        ),
        "ece_l2": (
            f"ece.top_label.equal_width_{n_bins}.l2",
            f"top-label ECE, L2, {n_bins} equal-width bins",
        ),
        "smooth_ece": (
            "ece.top_label.smooth.reflected_gaussian.fixed_point",
            "smooth ECE (Blasiok & Nakkiran 2023), bandwidth at its fixed point",
        ),
        "brier": (
            "brier.multiclass.sum_over_classes",
            "Brier score: squared error summed over classes, mean over samples (0 to 2)",
        ),
        "nll": ("nll.nats", "negative log-likelihood of the true class, nats"),
        "confidence_std": ("confidence.top_label.std", "spread (std) of top-label confidence"),
        "reliability_slope": (
            f"reliability.slope.wls.equal_width_{n_bins}",
            f"slope of accuracy on confidence, weighted least squares over {n_bins} bins",
        ),
    }


@dataclass
class CalibrationReport(Mapping[str, float]):
    """Calibration metrics of one set of predictions.

    Behaves as a read-only mapping from short keys (``"ece"``, ``"ace"``, ``"sce"``,
    ``"mce"``, ``"brier"``, ``"nll"``, ``"accuracy"``, ...) to floats. ``ids`` and
    ``descriptions`` give each key's fully qualified name; ``intervals`` the bootstrap
    percentile intervals; ``reliability``, ``histogram`` and ``per_class`` the arrays.
    ``replicates`` holds each metric's bootstrap replicate values (not serialised): two
    reports of the same samples with the same bootstrap seed share their replicate weights,
    so their replicates pair up (see :func:`advcal.metrics.paired.paired_change`).
    """

    scalars: dict[str, float]
    ids: dict[str, str]
    descriptions: dict[str, str]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    reliability: dict[str, list] = field(default_factory=dict)
    histogram: dict[str, list] = field(default_factory=dict)
    per_class: dict[str, list] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)
    replicates: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __getitem__(self, key: str) -> float:
        return self.scalars[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.scalars)

    def __len__(self) -> int:
        return len(self.scalars)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict: metrics under their fully qualified ids; NaN becomes None."""
        metrics = {}
        for key, value in self.scalars.items():
            entry: dict[str, object] = {
                "key": key,
                "description": self.descriptions[key],
                "value": _finite_or_none(value),
            }
            if key in self.intervals:
                entry["ci"] = [_finite_or_none(v) for v in self.intervals[key]]
            metrics[self.ids[key]] = entry
        return {
            "settings": self.settings,
            "metrics": metrics,
            "reliability": _json_lists(self.reliability),
            "histogram": _json_lists(self.histogram),
            "per_class": _json_lists(self.per_class),
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _json_lists(table: dict[str, list]) -> dict[str, list]:
    return {
        name: [v if not isinstance(v, float) or math.isfinite(v) else None for v in column]
        for name, column in table.items()
    }


# ---------------------------------------------------------------------- binned figures
def binned_errors(count: np.ndarray, conf_sum: np.ndarray, correct_sum: np.ndarray) -> dict:
    """ECE (L1, L2), MCE and reliability slope from per-bin sums; any leading dimensions.

    ``count``, ``conf_sum`` and ``correct_sum`` have shape ``(..., n_bins)``.
    """
    total = count.sum(-1)
    filled = count > 0
    safe = np.where(filled, count, 1)
    gap = correct_sum - conf_sum
    with np.errstate(invalid="ignore", divide="ignore"):
        ece = np.abs(gap).sum(-1) / total
        ece_l2 = np.sqrt((gap * gap / safe).sum(-1) / total)
        mce = np.where(filled, np.abs(gap) / safe, -np.inf).max(-1)
        mce = np.where(np.isfinite(mce), mce, np.nan)
        x, y = conf_sum / safe, correct_sum / safe
        x_mean = (count * x).sum(-1, keepdims=True) / total[..., None]
        y_mean = (count * y).sum(-1, keepdims=True) / total[..., None]
        sxx = (count * (x - x_mean) ** 2).sum(-1)
        sxy = (count * (x - x_mean) * (y - y_mean)).sum(-1)
        # With a single filled bin (or all confidences equal) the slope is undefined.
        slope = np.where(sxx > 1e-12 * total, sxy / np.where(sxx > 0, sxx, 1), np.nan)
    return {"ece": ece, "ece_l2": ece_l2, "mce": mce, "reliability_slope": slope}


def _point_scalars(
    records: dict[str, np.ndarray],
    top_cells: tuple[np.ndarray, np.ndarray, np.ndarray],
    class_cells: dict[str, np.ndarray] | None,
    n_bins: int,
) -> dict[str, float]:
    """Every scalar metric but smooth ECE of the samples as they are (the point estimate)."""
    confidence, correct = records["confidence"], records["correct"].astype(np.float64)
    n = len(confidence)
    out = {
        "accuracy": correct.mean(),
        "confidence_mean": confidence.mean(),
        "confidence_std": confidence.std(),
        "brier": records["brier"].mean(),
        "nll": records["nll"].mean(),
    }
    out["confidence_gap"] = out["confidence_mean"] - out["accuracy"]
    out.update({key: value.item() for key, value in binned_errors(*top_cells).items()})
    mass = equal_mass_bin_sums(sorted_by_rank(confidence, correct), n_bins)
    out["ace"] = np.abs(mass[1] - mass[0]).sum() / n
    if class_cells is not None:
        out["sce"] = _sce(class_cells, np.array(float(n))).item()
    return {key: float(value) for key, value in out.items()}


def _sce(class_cells: dict[str, np.ndarray], total: np.ndarray) -> np.ndarray:
    gap = np.abs(class_cells["class_hits"] - class_cells["class_prob"])
    return gap.sum((-1, -2)) / (gap.shape[-2] * total)


class _RankedSamples:
    """Per-sample arrays sorted by (confidence, correct), for weighted bootstrap replicates.

    In rank order every equal-width bin and every equal-mass bin is a contiguous run of
    samples, so all binned sums of a replicate are differences of a few prefix sums of its
    weights times per-sample features. Smooth ECE is solved for all replicates of a block at
    once by the point estimate's solver (built in rank order), starting from its bandwidth:
    ``smooth = (solver, bandwidth)``, or None when smooth ECE is not computed.
    """

    def __init__(
        self,
        records: dict[str, np.ndarray],
        bins: np.ndarray,
        n_bins: int,
        smooth: tuple[SmoothEceSolver, float] | None,
    ):
        order = rank_order(records["confidence"], records["correct"])
        confidence = records["confidence"][order]
        correct = records["correct"][order].astype(np.float64)
        self.order = order
        self.n_bins = n_bins
        self.bin_starts = np.searchsorted(bins[order], np.arange(n_bins + 1))
        centred = confidence - confidence.mean()
        # Plain sums: one matrix product per block of replicates.
        self.summed = torch.from_numpy(
            np.stack([records["brier"][order], records["nll"][order], centred, centred**2], 1)
        )
        # Sums over runs: prefix sums of weight x feature. Rows 0-2 also serve equal-mass bins.
        features = [np.ones_like(confidence), confidence, correct]
        self.smooth = smooth
        self.prefixed = np.stack(features)
        self._buffer: np.ndarray | None = None

    def scalars(self, weights: np.ndarray, class_cells: dict[str, np.ndarray] | None) -> dict:
        """Every scalar metric for each row of ``weights`` (shape ``(B, N)``, rank order)."""
        shape = (len(weights), *self.prefixed.shape)
        if self._buffer is None or self._buffer.shape[0] < shape[0]:
            self._buffer = np.empty(shape)  # reused across blocks: no fresh pages per block
        prefix = self._buffer[: shape[0]]
        # torch, in place: its broadcast product and cumsum are several times numpy's here.
        torch.mul(
            torch.from_numpy(weights)[:, None, :], torch.from_numpy(self.prefixed)[None],
            out=torch.from_numpy(prefix),
        ).cumsum_(2)

        def runs(starts: np.ndarray, rows: slice) -> np.ndarray:
            at = np.where(starts > 0, prefix[:, rows, np.maximum(starts - 1, 0)], 0.0)
            return np.diff(at, axis=-1)  # (B, features, runs)

        total = prefix[:, 0, -1]
        brier, nll, centred, centred_sq = (torch.from_numpy(weights) @ self.summed).numpy().T
        out = {
            "accuracy": prefix[:, 2, -1] / total,
            "confidence_mean": prefix[:, 1, -1] / total,
            "confidence_std": np.sqrt(np.maximum(centred_sq / total - (centred / total) ** 2, 0.0)),
            "brier": brier / total,
            "nll": nll / total,
        }
        out["confidence_gap"] = out["confidence_mean"] - out["accuracy"]
        count, conf_sum, correct_sum = np.moveaxis(runs(self.bin_starts, slice(0, 3)), 1, 0)
        out.update(binned_errors(count, conf_sum, correct_sum))
        out["ace"] = np.abs(np.diff(self._equal_mass_sums(prefix, total), axis=1)[:, 0]).sum(-1) / total
        if class_cells is not None:
            out["sce"] = _sce(class_cells, total)
        if self.smooth is not None:
            solver, start = self.smooth
            out["smooth_ece"] = solver.solve(weights, REPLICATES, start)[0]
        return out

    def _equal_mass_sums(self, prefix: np.ndarray, total: np.ndarray) -> np.ndarray:
        """Sums of confidence and correctness over each replicate's equal-mass bins.

        A sample counted ``w`` times holds ``w`` consecutive ranks and may straddle a bin
        boundary ``R``; the sum over the first ``R`` ranks takes the whole samples before
        the one holding rank ``R - 1`` and the needed part of that one.
        """
        rows, _, size = prefix.shape
        bounds = np.ceil(total[:, None] * np.arange(self.n_bins + 1) / self.n_bins)
        # One searchsorted for all rows: shift each row's cumulative counts past the previous
        # row's (counts are whole numbers, so the shifted values stay exact and sorted).
        shift = np.concatenate([[0.0], np.cumsum(total[:-1] + 1)])[:, None]
        holder = np.searchsorted((prefix[:, 0] + shift).ravel(), (bounds + shift).ravel(), side="left")
        holder = (holder.reshape(rows, -1) - np.arange(rows)[:, None] * size).clip(0, size - 1)
        previous = np.maximum(holder - 1, 0)
        started = (holder > 0)[:, None]
        gather = np.broadcast_to(previous[:, None], (rows, 2, previous.shape[1]))
        before = np.where(started, np.take_along_axis(prefix[:, 1:3], gather, 2), 0.0)
        ranks_before = np.where(holder > 0, np.take_along_axis(prefix[:, 0], previous, 1), 0.0)
        values = self.prefixed[1:3][:, holder].transpose(1, 0, 2)  # (rows, 2, bounds)
        return np.diff(before + (bounds - ranks_before)[:, None] * values, axis=2)


def build_report(
    records: dict[str, np.ndarray],
    cells: dict[str, torch.Tensor] | None,
    replicate_cells: dict[str, torch.Tensor] | None,
    *,
    n_bins: int,
    n_classes: int,
    bootstrap: int,
    seed: int,
    ci: float,
    smooth: bool,
    settings: dict[str, object],
) -> CalibrationReport:
    """Assemble a :class:`CalibrationReport` from joined per-sample records and cells."""
    confidence, correct, label = records["confidence"], records["correct"], records["label"]
    n = len(confidence)
    bins = equal_width_bin_index(torch.from_numpy(confidence), n_bins).numpy()
    point_cells = None if cells is None else {k: v.numpy().astype(np.float64) for k, v in cells.items()}
    # Per equal-width bin: count, confidence sum, correct count (reused by the reliability curve).
    count, conf_sum, correct_sum = (
        np.bincount(bins, weights, n_bins)
        for weights in (None, confidence, correct.astype(np.float64))
    )
    catalogue = metric_catalogue(n_bins)
    point = _point_scalars(records, (count, conf_sum, correct_sum), point_cells, n_bins)
    smooth_solver = None
    if smooth:
        # In rank order, so that the replicates (whose weights are in rank order) reuse it.
        solver = SmoothEceSolver(*sorted_by_rank(confidence, correct))
        value, width = solver.solve(np.ones((1, n)))
        point["smooth_ece"], smooth_solver = float(value[0]), (solver, float(width[0]))
    values = {key: point[key] for key in catalogue if key in point}

    intervals: dict[str, tuple[float, float]] = {}
    replicates: dict[str, np.ndarray] = {}
    if bootstrap:
        ranked = _RankedSamples(records, bins, n_bins, smooth_solver)
        seeds = boot.sample_seeds(seed, records["key"])
        blocks: list[dict[str, np.ndarray]] = []
        start = 0
        for weights in boot.weight_blocks(seeds, bootstrap, ranked.order):
            stop = start + len(weights)
            block_cells = None if replicate_cells is None else {
                k: v[start:stop].numpy() for k, v in replicate_cells.items()
            }
            # A replicate that drew no sample (likely only for a few samples) has total weight
            # 0: its metrics are NaN, and percentile_intervals leaves it out. Say nothing of it.
            with np.errstate(divide="ignore", invalid="ignore"):
                blocks.append(ranked.scalars(weights, block_cells))
            start = stop
        replicates = {key: np.concatenate([block[key] for block in blocks]) for key in values}
        bounds = boot.percentile_intervals(np.stack(list(replicates.values())), ci)
        intervals = {key: (float(low), float(high))
                     for key, (low, high) in zip(replicates, bounds, strict=True)}

    with np.errstate(invalid="ignore", divide="ignore"):
        reliability = {
            "lower": bin_edges(n_bins)[:-1].tolist(),
            "upper": bin_edges(n_bins)[1:].tolist(),
            "count": count.astype(np.int64).tolist(),
            "confidence": (conf_sum / count).tolist(),
            "accuracy": (correct_sum / count).tolist(),
        }
    histogram = {
        "lower": reliability["lower"],
        "upper": reliability["upper"],
        "count": reliability["count"],
        "fraction": (count / n).tolist(),
    }
    return CalibrationReport(
        scalars=values,
        ids={key: catalogue[key][0] for key in values},
        descriptions={key: catalogue[key][1] for key in values},
        intervals=intervals,
        replicates=replicates,
        reliability=reliability,
        histogram=histogram,
        per_class=_per_class(label, bins, confidence, correct, point_cells, n_bins, n_classes, n),
        settings={
            **settings,
            "n_samples": n,
            "n_classes": n_classes,
            "n_bins": n_bins,
            "bootstrap": bootstrap,
            "bootstrap_seed": seed,
            "sample_keys_sha256": boot.keys_digest(records["key"]),
            "ci_level": ci if bootstrap else None,
            "smooth_ece": smooth,
            "bin_rule": "equal-width [k/n, (k+1)/n), last bin closed (confidence 1.0 counted in it)",
        },
    )


def _per_class(
    label: np.ndarray,
    bins: np.ndarray,
    confidence: np.ndarray,
    correct: np.ndarray,
    class_cells: dict[str, np.ndarray] | None,
    n_bins: int,
    n_classes: int,
    n: int,
) -> dict[str, list]:
    """Per true class: count, accuracy, mean confidence, top-label ECE; class-wise CE."""
    cell = label * n_bins + bins
    shape = (n_classes, n_bins)
    count = np.bincount(cell, None, n_classes * n_bins).reshape(shape)
    conf_sum = np.bincount(cell, confidence, n_classes * n_bins).reshape(shape)
    correct_sum = np.bincount(cell, correct, n_classes * n_bins).reshape(shape)
    class_count = count.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = {
            "class": list(range(n_classes)),
            "count": class_count.tolist(),
            "accuracy": (correct_sum.sum(1) / class_count).tolist(),
            "confidence": (conf_sum.sum(1) / class_count).tolist(),
            "ece": binned_errors(count.astype(np.float64), conf_sum, correct_sum)["ece"].tolist(),
        }
    if class_cells is not None:
        gap = np.abs(class_cells["class_hits"] - class_cells["class_prob"])
        table["classwise_ce"] = (gap.sum(1) / n).tolist()
    return table
