"""The audit: calibration on clean and adversarial inputs over an ε sweep, with red flags.

For each model, one pass over the data: clean logits (one forward pass per batch), then the
attack at every ε from those logits (no second clean pass), every batch feeding streaming
:class:`~advcal.metrics.CalibrationStats` keyed by sample index. Reports come with bootstrap
intervals and smooth ECE; flags compare clean and adversarial figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

import advcal
from advcal.attacks import Attack, get_attack
from advcal.audit.flags import Thresholds, comparison_flags, get_profile, report_flags
from advcal.audit.result import HEADLINE, AuditResult, ModelAudit
from advcal.checks import check_int
from advcal.data import DataSource, load_data
from advcal.errors import InputError
from advcal.metrics import CalibrationReport, CalibrationStats
from advcal.metrics.binning import equal_width_bin_index
from advcal.models import check_logits, frozen

ProgressFn = Callable[[str, int, int], None]


class SampleRecords:
    """Per-sample predictions, confidences and bins, clean and at each ε, for the tails."""

    def __init__(self, n_bins: int) -> None:
        self.n_bins = n_bins
        self.parts: dict[str, list[np.ndarray]] = {}

    def add(self, condition: str, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> None:
        confidence, prediction = torch.softmax(logits.double(), 1).max(1)
        columns = {
            "index": index.numpy(),
            "label": y.numpy(),
            f"{condition}/prediction": prediction.numpy(),
            f"{condition}/confidence": confidence.numpy(),
            f"{condition}/bin": equal_width_bin_index(confidence, self.n_bins).numpy(),
            f"{condition}/correct": (prediction == y).numpy(),
        }
        for name, column in columns.items():
            if name in ("index", "label") and condition != "clean":
                continue
            self.parts.setdefault(name, []).append(column)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) for name, parts in self.parts.items()}


def _summary(report: CalibrationReport) -> dict[str, object]:
    """The report.json entry of one calibration report: headline metrics by plain name."""
    full = report.to_dict()
    return {
        "metrics": {key: report[key] for key in HEADLINE if key in report},
        "intervals": {key: list(report.intervals[key]) for key in HEADLINE if key in report.intervals},
        "ids": {key: report.ids[key] for key in HEADLINE if key in report},
        "reliability": full["reliability"],
        "per_class": full["per_class"],
    }


# ε sweeps that make sense per kind of data (input units): 8x8 and 28x28 greyscale digits and
# clothes are attacked at MNIST-like budgets, natural images at the usual k/255.
_SWEEPS = {"digits": [0.05, 0.1, 0.2], "fashion-mnist": [0.05, 0.1, 0.2]}
_NATURAL_IMAGES = [2 / 255, 4 / 255, 8 / 255]


def default_epsilons(data: DataSource) -> list[float]:
    """A sensible ε sweep for ``data`` when the user gives none."""
    return list(_SWEEPS.get(data.name.split(":")[0], _NATURAL_IMAGES))


def audit(
    models: nn.Module | Mapping[str, nn.Module],
    data: DataSource | str,
    epsilons: Sequence[float],
    attack: str = "pgd",
    attack_params: Mapping[str, object] | None = None,
    *,
    n_bins: int = 15,
    bootstrap: int = 200,
    seed: int = 0,
    batch_size: int = 256,
    profile: str = "default",
    progress: ProgressFn | None = None,
) -> AuditResult:
    """Audit each model's calibration on ``data``, clean and under ``attack`` at each ε.

    Args:
        models: a model, or name -> model (each returning logits for inputs in [0, 1]).
        data: the evaluation data (``advcal.data.load_data(...)``) or a data spec, whose
            test split is then used.
        epsilons: the ε sweep, in input units.
        attack: a registered attack name (``advcal.attacks.available_attacks()``).
        attack_params: further settings of the attack (``steps``, ``loss``, ...).
        n_bins, bootstrap, seed: calibration bins, bootstrap replicates, the seed of both the
            attack's random starts and the bootstrap.
        batch_size: samples per forward pass.
        profile: flag thresholds: ``default``, ``strict`` or ``lenient``.
        progress: called as ``progress(model_name, samples_done, samples_total)``.
    """
    if isinstance(models, nn.Module):
        models = {type(models).__name__: models}
    if not models:
        raise InputError("models: expected at least one model")
    if isinstance(data, str):
        data = load_data(data)
    check_int(batch_size, "batch_size", 1)
    limits = get_profile(profile)
    epsilons = [float(e) for e in epsilons]
    attacker = get_attack(attack, eps=epsilons, seed=seed, **dict(attack_params or {}))
    results = []
    for name, model in models.items():
        results.append(_audit_model(name, model, data, attacker, epsilons, n_bins, bootstrap, seed,
                                    batch_size, limits, progress))
    config = {
        "advcal_version": advcal.__version__,
        "data": {"spec": data.name, "split": data.split, "n_samples": len(data),
                 "fingerprint": data.fingerprint()},
        "epsilons": epsilons,
        "attack": attacker.params(),
        "n_bins": n_bins,
        "bootstrap": bootstrap,
        "seed": seed,
        "batch_size": batch_size,
        "profile": profile,
        "thresholds": vars(limits),
        "models": list(models),
    }
    return AuditResult(config=config, models=results)


def _audit_model(
    name: str, model: nn.Module, data: DataSource, attacker: Attack, epsilons: list[float],
    n_bins: int, bootstrap: int, seed: int, batch_size: int, limits: Thresholds,
    progress: ProgressFn | None,
) -> ModelAudit:
    def new_stats() -> CalibrationStats:
        return CalibrationStats(n_bins=n_bins, bootstrap=bootstrap, seed=seed)

    clean_stats = new_stats()
    records = SampleRecords(n_bins)
    adversarial = [new_stats() for _ in epsilons]
    clean_time = attack_time = 0.0
    forward = backward = 0
    done = 0
    for index, x, y in data.batches(batch_size):
        start = time.perf_counter()
        with frozen(model), torch.no_grad():
            clean_logits = check_logits(model(x), len(x), f"model {name}")
        forward += 1
        clean_stats.update(clean_logits, y, index=index)
        records.add("clean", clean_logits, y, index)
        clean_time += time.perf_counter() - start
        start = time.perf_counter()
        for stats, result in zip(adversarial, attacker(model, x, y, index=index, clean_logits=clean_logits),
                                 strict=True):
            stats.update(result.logits, y, index=index)
            records.add(f"eps={result.eps:g}", result.logits, y, index)
            forward += result.forward_passes
            backward += result.backward_passes
        attack_time += time.perf_counter() - start
        done += len(x)
        if progress is not None:
            progress(name, done, len(data))
    start = time.perf_counter()
    clean = clean_stats.compute(smooth=True)
    attacked = [(eps, stats.compute(smooth=True)) for eps, stats in zip(epsilons, adversarial, strict=True)]
    metrics_time = time.perf_counter() - start
    flags = report_flags(clean, limits, None)
    for eps, report in attacked:
        flags.extend(report_flags(report, limits, eps))
    flags.extend(comparison_flags(clean, attacked, limits))
    attacks = []
    for eps, report in attacked:
        entry = _summary(report)
        entry.update({
            "attack": attacker.name,
            "eps": eps,
            "delta": {key: report[key] - clean[key] for key in ("ece", "brier", "nll", "accuracy")},
        })
        attacks.append(entry)
    return ModelAudit(
        name=name,
        clean=_summary(clean),
        attacks=attacks,
        flags=[flag.as_dict() for flag in flags],
        samples=records.arrays(),
        cost={"forward_passes": forward, "backward_passes": backward,
              "seconds": {"clean": clean_time, "attack": attack_time, "metrics": metrics_time}},
    )
