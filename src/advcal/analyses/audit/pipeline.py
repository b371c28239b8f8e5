"""The audit: calibration on clean and adversarial inputs over an ε sweep, with red flags.

For each model, one pass over the data: clean logits (one forward pass per batch), then the
attack at every ε from those logits (no second clean pass), every batch feeding streaming
:class:`~advcal.metrics.CalibrationStats` keyed by sample index. Reports come with bootstrap
intervals and smooth ECE; flags compare clean and adversarial figures.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

import advcal
from advcal._core.devices import module_device, placed, resolve_device
from advcal._core.errors import ConfigError, InputError, describe
from advcal._core.validation import check_int
from advcal.analyses.audit.flags import (
    Thresholds,
    abstention_flags,
    chance_flags,
    comparison_flags,
    evaluation_flags,
    fix_flag,
    get_profile,
    illusion_flags,
    report_flags,
    weights_flags,
)
from advcal.analyses.audit.result import HEADLINE, AuditResult, ModelAudit
from advcal.analyses.fixes import evaluate_fixes
from advcal.analyses.illusion import check_illusion
from advcal.attacks import get_attack
from advcal.data import AdversarialSet, DataSource, load_data
from advcal.defaults import AUDIT
from advcal.engine.distributed import agree, deal_out, rank_positions, shard, world
from advcal.engine.model_check import check_model_fits
from advcal.engine.passes import ImageAttack, Modality, ProgressFn, StoredSet, Streamed, stream
from advcal.metrics import CalibrationReport
from advcal.metrics.paired import paired_changes
from advcal.metrics.selective import coverage_threshold, risk_coverage, selective_risk
from advcal.metrics.stats import check_stats_memory
from advcal.models import model_fingerprint
from advcal.models.provenance import model_origins
from advcal.results.conditions import AttackedCondition, Condition


def _figures(report: CalibrationReport) -> dict[str, object]:
    """One calibration report's figures as a condition holds them: headline metrics by plain name."""
    full = report.to_dict()
    return {
        "metrics": {key: report[key] for key in HEADLINE if key in report},
        "intervals": {key: list(report.intervals[key]) for key in HEADLINE if key in report.intervals},
        "ids": {key: report.ids[key] for key in HEADLINE if key in report},
        "reliability": full["reliability"],
        "histogram": full["histogram"],
        "per_class": full["per_class"],
    }


# The changes whose significance the paired bootstrap test reports.
PAIRED_METRICS = ("ece", "brier", "nll", "accuracy")


# ε sweeps that make sense per kind of data (input units): 8x8 and 28x28 greyscale digits and
# clothes are attacked at MNIST-like budgets, natural images at the usual k/255.
_SWEEPS = {"digits": [0.05, 0.1, 0.2], "fashion-mnist": [0.05, 0.1, 0.2]}
_NATURAL_IMAGES = [2 / 255, 4 / 255, 8 / 255]


def default_epsilons(data: DataSource) -> list[float]:
    """A sensible ε sweep for ``data`` when the user gives none."""
    return list(_SWEEPS.get(data.name.split(":")[0], _NATURAL_IMAGES))


def audit(
    models: nn.Module | Mapping[str, nn.Module],
    data: DataSource | AdversarialSet | str,
    epsilons: Sequence[float] | None = None,
    attack: str = AUDIT.attack,
    attack_params: Mapping[str, object] | None = None,
    *,
    n_bins: int = AUDIT.n_bins,
    bootstrap: int = AUDIT.bootstrap,
    seed: int = AUDIT.seed,
    batch_size: int = AUDIT.batch_size,
    profile: str = AUDIT.profile,
    device: str | torch.device | None = None,
    progress: ProgressFn | None = None,
    illusion: bool = False,
    fixes: bool = False,
    calibration: DataSource | None = None,
) -> AuditResult:
    """Audit each model's calibration on ``data``, clean and under ``attack`` at each ε.

    Args:
        models: a model, or name -> model (each returning logits for inputs in [0, 1]).
        data: the evaluation data (``advcal.data.load_data(...)``) or a data spec, whose
            test split is then used; or a stored :class:`~advcal.data.AdversarialSet`, whose
            clean and adversarial inputs are evaluated as they are (no attack is run; a model
            other than the one that made the set is a *transfer* evaluation).
        epsilons: the ε sweep, in input units (default: a sweep suited to the data; a
            stored set's own ε list).
        attack: a registered attack name (``advcal.attacks.available_attacks()``); ignored
            for a stored set, whose recipe names its attack.
        attack_params: further settings of the attack (``steps``, ``loss``, ...).
        n_bins, bootstrap, seed: calibration bins, bootstrap replicates, the seed of both the
            attack's random starts and the bootstrap.
        batch_size: samples per forward pass.
        profile: flag thresholds: ``default``, ``strict`` or ``lenient``.
        device: where to run (``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``auto``). Each model is
            moved there for the audit and back afterwards; by default each runs where it is.
        progress: called as ``progress(model_name, samples_done, samples_total)``.
        illusion: also ask, per model, whether its robustness is genuine or an illusion made
            by miscalibration (:func:`advcal.analyses.illusion.check_illusion` at the middle ε of the
            sweep; its cheap checks cost about six attack runs).
        fixes: also fit every post-hoc calibrator on the calibration split and score it clean
            and under attack (:func:`advcal.calibration.evaluate_fixes`: the "fixes" table).
        calibration: the clean split the illusion check and the fixes are fitted on (default:
            the ``calibration`` split of the same data spec).
    """
    if isinstance(models, nn.Module):
        models = {type(models).__name__: models}
    if not models:
        raise InputError("models: expected at least one model")
    if isinstance(data, str):
        data = load_data(data)
    if not isinstance(data, DataSource | AdversarialSet):
        raise InputError(f"data: expected a DataSource (advcal.data.load_data), an AdversarialSet or a "
                         f"data spec, got {describe(data)}")
    check_int(batch_size, "batch_size", 1)
    check_int(bootstrap, "bootstrap", 0)
    check_stats_memory(check_int(n_bins, "n_bins", 1), len(data.classes), bootstrap)
    limits = get_profile(profile)
    if isinstance(data, AdversarialSet):
        if epsilons is not None and [float(e) for e in epsilons] != data.epsilons:
            raise ConfigError(f"epsilons: the stored set {data.path} holds ε {data.epsilons}, "
                              f"got {[float(e) for e in epsilons]}; leave them out to use the set's")
        epsilons = data.epsilons
        attack_params_record = data.attack
    else:
        epsilons = default_epsilons(data) if epsilons is None else [float(e) for e in epsilons]
    # Results and per-sample records are keyed by ε as printed ("eps=0.0313725"): two ε values
    # that print alike would overwrite each other.
    labels = [f"{e:g}" for e in epsilons]
    if len(set(labels)) != len(labels):
        raise InputError(f"epsilons: expected distinct values, got {', '.join(labels)}")
    attacker = None
    if not isinstance(data, AdversarialSet):
        attacker = get_attack(attack, eps=epsilons, seed=seed, **dict(attack_params or {}))
        attack_params_record = attacker.params()
    target = None if device is None else resolve_device(device)
    if illusion or fixes:
        calibration = _calibration_split(data, calibration)
    # Under torchrun (or any initialised process group) each rank audits its part: whole
    # batches of the data, or whole shards of a stored set, so that every batch is one of the
    # single-process run; the statistics and per-sample records are then gathered exactly.
    ranks = world()
    if isinstance(data, AdversarialSet):
        positions = rank_positions(len(data.manifest["shards"]), ranks)
        if not positions:
            raise InputError(f"adv_set: {data.path} has {len(data.manifest['shards'])} shards, fewer than "
                             f"the {ranks.size} processes; use fewer processes")
        modality: Modality = StoredSet(data, positions, batch_size)
    else:
        modality = ImageAttack(shard(data, ranks, block=batch_size) if ranks.size > 1 else data, attacker,
                               batch_size)
    # Every model must take this data before anything is attacked (or any state changes); under
    # several processes every rank learns of a failure on any of them.
    failure = None
    try:
        for name, model in models.items():
            with placed(model, target):
                check_model_fits(name, model, data, batch_size,
                                 needs_gradient=attacker is not None and attacker.needs_gradient)
    except Exception as error:
        failure = error
    agree(failure, ranks)
    results = []
    devices = []
    attack_name = str(attack_params_record["attack"])
    for name, model in models.items():
        devices.append(str(target or module_device(model)))
        with placed(model, target):
            streamed = stream(name, model, modality, epsilons, n_bins, bootstrap, seed, progress, ranks)
            results.append(model_audit(name, streamed, epsilons, attack_name, bootstrap, limits))
            if isinstance(data, AdversarialSet):
                results[-1].evaluation = _stored_evaluation(model, data)
                results[-1].flags.extend(evaluation_flags(results[-1].evaluation))
            results[-1].origins = model_origins(model)
            results[-1].flags.extend(weights_flags(results[-1].origins))
    if illusion or fixes:
        def checks(model: nn.Module) -> dict[str, object]:
            with placed(model, target):
                return _model_checks(model, data, calibration, epsilons, attack, attack_params,
                                     int(attack_params_record.get("steps", 20)), seed, batch_size, n_bins,
                                     illusion, fixes)

        # Each model's checks attack the whole data, not a shard: under several processes
        # they are dealt out to the ranks in turn, then every rank gets every model's.
        for entry, found in zip(results, deal_out(list(models.values()), checks, ranks), strict=True):
            entry.add_checks(found)
    config = {
        "advcal_version": advcal.__version__,
        "data": _data_config(data),
        "epsilons": epsilons,
        "attack": attack_params_record,
        "n_bins": n_bins,
        "bootstrap": bootstrap,
        "seed": seed,
        "batch_size": batch_size,
        "profile": profile,
        "device": devices[0] if len(set(devices)) == 1 else devices,
        "thresholds": vars(limits),
        "illusion": illusion,
        "fixes": fixes,
        "models": list(models),
    }
    return AuditResult(config=config, models=results)


def model_audit(
    name: str, streamed: Streamed, epsilons: list[float], attack_name: str, bootstrap: int,
    limits: Thresholds,
) -> ModelAudit:
    """One model's audit from what its passes streamed (:func:`advcal.engine.passes.stream`),
    whatever the modality: reports clean and per ε, paired tests, selective prediction, flags."""
    samples = streamed.samples
    start = time.perf_counter()
    clean = streamed.clean.compute(smooth=True)
    attacked = [(eps, stats.compute(smooth=True))
                for eps, stats in zip(epsilons, streamed.adversarial, strict=True)]
    clean_entry = Condition(**_figures(clean), selective=_selective(samples, "clean"))
    threshold = coverage_threshold(samples["clean/confidence"], limits.abstention_coverage)
    clean_at_threshold = selective_risk(samples["clean/confidence"], samples["clean/correct"], threshold)
    paired = ({eps: paired_changes(clean, report, PAIRED_METRICS) for eps, report in attacked}
              if bootstrap else None)
    attacks = [
        AttackedCondition(
            **_figures(report),
            attack=attack_name,
            eps=eps,
            delta={key: report[key] - clean[key] for key in PAIRED_METRICS},
            selective=_selective(samples, f"eps={eps:g}"),
            abstention=_abstention(samples, f"eps={eps:g}", threshold, clean_at_threshold,
                                   limits.abstention_coverage),
            paired=None if paired is None else {key: change.to_dict() for key, change in paired[eps].items()},
        )
        for eps, report in attacked
    ]
    abstentions = [(entry.eps, entry.abstention) for entry in attacks]
    metrics_time = time.perf_counter() - start
    flags = chance_flags(clean)
    flags.extend(report_flags(clean, limits, None))
    for eps, report in attacked:
        flags.extend(report_flags(report, limits, eps))
    flags.extend(comparison_flags(clean, attacked, limits, paired))
    flags.extend(abstention_flags(abstentions, limits))
    return ModelAudit(
        name=name,
        clean=clean_entry,
        attacks=attacks,
        flags=flags,
        samples=samples,
        cost={"forward_passes": streamed.forward, "backward_passes": streamed.backward,
              "seconds": {"clean": streamed.clean_seconds, "attack": streamed.attack_seconds,
                          "metrics": metrics_time}},
    )


def _model_checks(
    model: nn.Module, data: DataSource, calibration: DataSource, epsilons: list[float], attack: str,
    attack_params: Mapping[str, object] | None, steps: int, seed: int, batch_size: int, n_bins: int,
    illusion: bool, fixes: bool,
) -> dict[str, object]:
    """One model's illusion check and fixes table, with their flags, JSON-ready."""
    found: dict[str, object] = {"illusion": None, "fixes": None, "flags": []}
    if illusion:
        report = check_illusion(model, data, calibration, sorted(epsilons)[len(epsilons) // 2],
                                steps=steps, seed=seed, batch_size=batch_size)
        found["illusion"] = report.to_dict()
        found["flags"] += [flag.as_dict() for flag in illusion_flags(report)]
    if fixes:
        table = evaluate_fixes(model, calibration, data, epsilons, attack=attack,
                               attack_params=dict(attack_params or {}), seed=seed,
                               batch_size=batch_size, n_bins=n_bins)
        found["fixes"] = table.to_dict()
        found["flags"] += [fix_flag(flag).as_dict() for flag in table.flags]
    return found


def _calibration_split(data: DataSource | AdversarialSet, calibration: DataSource | None) -> DataSource:
    """The clean split the illusion check fits its temperatures on."""
    if isinstance(data, AdversarialSet):
        raise ConfigError("illusion, fixes: these attack each model itself; they cannot run on a "
                          "stored adversarial set")
    if calibration is not None:
        return calibration
    if data.split in ("calibration", "all"):
        raise ConfigError(f"illusion, fixes: the audited split is {data.split!r}, so no separate calibration "
                          "split is left to fit temperatures on; audit the test split or pass calibration=")
    return load_data(data.name, split="calibration")


def _data_config(data: DataSource | AdversarialSet) -> dict[str, object]:
    """What was evaluated, for report.json's config."""
    if isinstance(data, AdversarialSet):
        source = data.recipe["data"]
        return {"spec": source["spec"], "split": source["split"], "n_samples": len(data),
                "fingerprint": source["fingerprint"], "adversarial_set": str(data.path)}
    return {"spec": data.name, "split": data.split, "n_samples": len(data), "fingerprint": data.fingerprint()}


def _stored_evaluation(model: nn.Module, adv: AdversarialSet) -> dict[str, object]:
    """White-box (the set was made against these very weights) or transfer, with both fingerprints."""
    fingerprint = model_fingerprint(model)
    return {
        "kind": "white-box" if fingerprint == adv.model_fingerprint else "transfer",
        "adversarial_set": str(adv.path),
        "model_fingerprint": fingerprint,
        "source_model_fingerprint": adv.model_fingerprint,
    }


def _selective(samples: dict[str, np.ndarray], condition: str) -> dict[str, object]:
    """The risk–coverage curve and AURC of one condition's per-sample record."""
    curve = risk_coverage(samples[f"{condition}/confidence"], samples[f"{condition}/correct"])
    return curve.to_dict()


def _abstention(
    samples: dict[str, np.ndarray], condition: str, threshold: float,
    clean_at_threshold: tuple[float, float], coverage: float,
) -> dict[str, float | int]:
    """Abstaining below the confidence that keeps ``coverage`` of clean inputs, under attack.

    ``clean_at_threshold`` is the clean (risk, coverage) at ``threshold``, shared by every ε.
    """
    clean_risk, clean_coverage = clean_at_threshold
    risk, covered = selective_risk(
        samples[f"{condition}/confidence"], samples[f"{condition}/correct"], threshold
    )
    return {
        "target_coverage": coverage,
        "threshold": threshold,
        "clean_risk": clean_risk,
        "clean_coverage": clean_coverage,
        "adv_risk": risk,
        "adv_coverage": covered,
        "n_samples": len(samples["clean/confidence"]),
    }
