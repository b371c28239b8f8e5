"""Red flags: the practitioner's rules of thumb as code, each with a code, a severity, one
plain sentence and the numbers behind it.

Thresholds come from a profile: ``default`` (the seed's numbers), ``strict`` (medical use:
a ΔECE of 0.03 already fails) and ``lenient`` (ΔECE up to 0.12 passes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from advcal._core.errors import ConfigError
from advcal.analyses.illusion import IllusionReport
from advcal.metrics import CalibrationReport
from advcal.metrics.paired import PairedChange
from advcal.models.loading import FACTORY_SEED
from advcal.results.flags import ERROR, INFO, WARNING, Flag, FlagCode, Severity


@dataclass(frozen=True)
class Thresholds:
    """Every number a flag rule compares against."""

    delta_ece_warning: float = 0.05
    delta_ece_error: float = 0.10
    bin_gap: float = 0.15
    min_slope: float = 0.7
    collapsed_std: float = 0.05
    hollow_confidence: float = 0.9
    hollow_gap: float = 0.15
    class_ratio: float = 3.0
    min_class_samples: int = 30
    min_bin_samples: int = 10
    narrow_band_std: float = 0.05
    narrow_band_ece: float = 0.05
    retrain_ece: float = 0.15
    bimodal_min_mass: float = 0.10
    bimodal_valley: float = 0.5
    abstention_coverage: float = 0.8
    abstention_gap: float = 0.10


PROFILES: dict[str, Thresholds] = {
    "default": Thresholds(),
    "strict": Thresholds(delta_ece_warning=0.02, delta_ece_error=0.03, bin_gap=0.10),
    "lenient": Thresholds(delta_ece_warning=0.08, delta_ece_error=0.12, bin_gap=0.20),
}


def get_profile(name: str) -> Thresholds:
    """The thresholds of profile ``name`` (default, strict, lenient)."""
    if name not in PROFILES:
        raise ConfigError(f"profile: expected one of {', '.join(PROFILES)}, got {name!r}")
    return PROFILES[name]


def _bins(report: CalibrationReport, limits: Thresholds) -> list[tuple[float, float, int, float, float]]:
    """(lower, upper, count, confidence, accuracy) of bins holding enough samples to judge."""
    curve = report.reliability
    return [
        (low, high, count, conf, acc)
        for low, high, count, conf, acc in zip(
            curve["lower"], curve["upper"], curve["count"], curve["confidence"], curve["accuracy"],
            strict=True,
        )
        if count >= limits.min_bin_samples
    ]


# A clean accuracy no more than this many binomial standard errors above chance is "at chance"
# (one-sided, about p = 0.001 under the normal approximation).
CHANCE_Z = 3.09


def chance_flags(clean: CalibrationReport) -> list[Flag]:
    """``CHANCE_ACCURACY`` (an error) when clean accuracy is within noise of chance.

    Chance is what always answering the most frequent class scores (the largest class share of
    the audited labels); "within noise" is at most ``CHANCE_Z`` binomial standard errors above
    it. A model at chance has learnt nothing of this task — random weights, the wrong weights,
    the wrong label order or preprocessing — and none of its other figures mean anything.
    """
    counts = np.asarray(clean.per_class["count"], dtype=np.float64)
    n = counts.sum()
    if n == 0:
        return []
    chance = float(counts.max() / n)
    margin = CHANCE_Z * math.sqrt(chance * (1 - chance) / n)
    accuracy = clean["accuracy"]
    if accuracy > chance + margin:
        return []
    return [Flag(
        FlagCode.CHANCE_ACCURACY, ERROR,
        f"Clean accuracy {accuracy:.3f} is within noise of chance ({chance:.3f}, always answering the "
        f"most frequent class; {int(n)} samples): the model has not learnt this task — random or wrong "
        "weights, another label order or preprocessing — so no other figure of this report means anything.",
        None, {"accuracy": accuracy, "chance": chance, "threshold": chance + margin, "n_samples": int(n)},
    )]


def weights_flags(origins: list[dict[str, object]]) -> list[Flag]:
    """``FACTORY_WEIGHTS`` (info) for each model audited with the weights its factory returned."""
    return [Flag(
        FlagCode.FACTORY_WEIGHTS, INFO,
        f"No weights file was given for {origin['spec']}: it was audited with the weights its factory "
        f"returns (random initialisation, drawn with torch seed {FACTORY_SEED}, unless the factory loads "
        "trained weights itself); pass --weights to audit a checkpoint.", None, {"spec": origin["spec"]},
    ) for origin in origins if origin.get("source") == "factory"]


def report_flags(report: CalibrationReport, limits: Thresholds, eps: float | None) -> list[Flag]:
    """Flags about one set of predictions (clean when ``eps`` is None)."""
    where = "on clean inputs" if eps is None else f"under attack at eps={eps:g}"
    flags = []
    slope = report["reliability_slope"]
    # A slope through fewer than three well-filled bins says nothing.
    if math.isfinite(slope) and slope < limits.min_slope and len(_bins(report, limits)) >= 3:
        flags.append(Flag(
            FlagCode.LOW_RELIABILITY_SLOPE, WARNING,
            f"Accuracy tracks confidence poorly {where}: the reliability slope is {slope:.2f} "
            f"(below {limits.min_slope}).", eps, {"slope": slope},
        ))
    std, mean, ece = report["confidence_std"], report["confidence_mean"], report["ece"]
    if std < limits.narrow_band_std and ece < limits.narrow_band_ece and mean < 0.9:
        flags.append(Flag(
            FlagCode.NARROW_BAND, WARNING,
            f"The low ECE ({ece:.3f}) {where} hides a narrow confidence band (around {mean:.2f}, "
            f"spread {std:.3f}): the model never says it is sure or unsure.",
            eps, {"ece": ece, "mean": mean, "std": std},
        ))
    elif std < limits.collapsed_std and mean < 0.8:
        flags.append(Flag(
            FlagCode.COLLAPSED_CONFIDENCE, WARNING,
            f"Confidence has collapsed {where}: nearly every prediction sits at {mean:.2f} "
            f"(spread {std:.3f}) whatever the input, so it carries no signal.",
            eps, {"mean": mean, "std": std, "ece": ece},
        ))
    for low, high, count, conf, acc in _bins(report, limits):
        if conf >= limits.hollow_confidence and conf - acc > limits.hollow_gap:
            flags.append(Flag(
                FlagCode.CONFIDENCE_HOLLOWING, ERROR,
                f"Confidence is hollow {where}: predictions stated at {conf:.0%} are right only "
                f"{acc:.0%} of the time ({count} samples).", eps,
                {"bin": [low, high], "count": count, "confidence": conf, "accuracy": acc},
            ))
    bimodal = _two_modes(report, limits)
    if bimodal is not None:
        flags.append(Flag(
            FlagCode.BIMODAL_CONFIDENCE, WARNING,
            f"Confidence splits into two groups {where}: {bimodal['low_mass']:.0%} of predictions "
            f"around {bimodal['low_confidence']:.2f} and {bimodal['high_mass']:.0%} around "
            f"{bimodal['high_confidence']:.2f}, few in between; one ECE averages two behaviours, "
            "so read the reliability diagram.", eps, bimodal,
        ))
    flags.extend(_class_flags(report, limits, eps, where))
    return flags


def _two_modes(report: CalibrationReport, limits: Thresholds) -> dict[str, object] | None:
    """The two groups of a confidence histogram with a deep valley between them, if any.

    A valley bin splits the histogram when it holds less than ``bimodal_valley`` times the
    smaller of the highest bins on either side, each side holds at least ``bimodal_min_mass``
    of the samples and each side's peak bin at least ``min_bin_samples`` samples. Of all such
    valleys the deepest relative to its peaks is reported.
    """
    count = np.asarray(report.reliability["count"], dtype=np.float64)
    mean_conf = np.asarray(report.reliability["confidence"], dtype=np.float64)
    conf_sum = count * np.nan_to_num(mean_conf)
    total = count.sum()
    best: tuple[float, int] | None = None
    for v in range(1, len(count) - 1):
        left, right = count[:v], count[v + 1 :]
        peak = min(left.max(), right.max())
        if (peak < limits.min_bin_samples or count[v] >= limits.bimodal_valley * peak
                or min(left.sum(), right.sum()) < limits.bimodal_min_mass * total):
            continue
        depth = count[v] / peak
        if best is None or depth < best[0]:
            best = (depth, v)
    if best is None:
        return None
    v = best[1]
    return {
        "low_mass": float(count[:v].sum() / total),
        "low_confidence": float(conf_sum[:v].sum() / count[:v].sum()),
        "high_mass": float(count[v + 1 :].sum() / total),
        "high_confidence": float(conf_sum[v + 1 :].sum() / count[v + 1 :].sum()),
        "valley": [float(report.reliability["lower"][v]), float(report.reliability["upper"][v])],
        "valley_count": int(count[v]),
    }


def _class_flags(report: CalibrationReport, limits: Thresholds, eps: float | None, where: str) -> list[Flag]:
    table = report.per_class
    counts, errors = table["count"], table["ece"]
    flags = []
    too_few = [c for c, n in zip(table["class"], counts, strict=True) if 0 < n < limits.min_class_samples]
    if too_few and eps is None:
        flags.append(Flag(
            FlagCode.FEW_CLASS_SAMPLES, INFO,
            f"{len(too_few)} classes have fewer than {limits.min_class_samples} samples: their "
            "per-class figures are shown but too noisy to flag.", eps, {"classes": too_few},
        ))
    judged = [(c, n, e) for c, n, e in zip(table["class"], counts, errors, strict=True)
              if n >= limits.min_class_samples and math.isfinite(e)]
    if len(judged) < 2:
        return flags
    mean = sum(e for _, _, e in judged) / len(judged)
    for c, n, e in judged:
        if mean > 0 and e > limits.class_ratio * mean and e > 0.05:
            flags.append(Flag(
                FlagCode.CLASS_OUTLIER, WARNING,
                f"Class {c} is far worse calibrated {where}: ECE {e:.3f} against a class average "
                f"of {mean:.3f} ({n} samples).", eps, {"class": c, "count": n, "ece": e, "mean": mean},
            ))
    return flags


def comparison_flags(
    clean: CalibrationReport,
    attacked: list[tuple[float, CalibrationReport]],
    limits: Thresholds,
    paired: dict[float, dict[str, PairedChange]] | None = None,
) -> list[Flag]:
    """Flags comparing clean and adversarial calibration over the ε sweep.

    With ``paired`` (the paired bootstrap test per ε, see :mod:`advcal.metrics.paired`), an
    ECE rise above the thresholds whose interval still includes zero is reported as ``info``
    (within noise), not as a warning or an error.
    """
    flags = []
    clean_ece = clean["ece"]
    if clean_ece > limits.retrain_ece:
        flags.append(Flag(
            FlagCode.RETRAIN_BEFORE_CALIBRATING, WARNING,
            f"Clean ECE is {clean_ece:.3f} (above {limits.retrain_ece}): post-hoc fixes rarely "
            "rescue this; retrain (e.g. calibration-aware adversarial training) before calibrating.",
            None, {"ece": clean_ece},
        ))
    clean_bins = {round(low, 9): (n, acc) for low, _, n, _, acc in _bins(clean, limits)}
    jumps = []
    previous = clean_ece
    for eps, report in attacked:
        delta = report["ece"] - clean_ece
        jumps.append((report["ece"] - previous, eps))
        previous = report["ece"]
        if delta > limits.delta_ece_error:
            severity, verdict = ERROR, "calibration is broken under attack"
        elif delta > limits.delta_ece_warning:
            severity, verdict = WARNING, "calibration degrades under attack"
        else:
            severity = None
        test = None if paired is None else paired[eps]["ece"]
        if severity is not None and test is not None and not test.significant:
            severity = INFO
            verdict = (f"within bootstrap noise (paired 95% interval {test.ci[0]:+.3f} to "
                       f"{test.ci[1]:+.3f}); audit more samples to decide")
        if severity is not None:
            evidence: dict[str, object] = {
                "clean_ece": clean_ece, "adversarial_ece": report["ece"], "delta": delta,
            }
            if test is not None:
                evidence.update(ci=list(test.ci), p_value=test.p_value, significant=test.significant)
            flags.append(Flag(
                FlagCode.ECE_DELTA, severity,
                f"At eps={eps:g} ECE rises from {clean_ece:.3f} to {report['ece']:.3f} "
                f"(+{delta:.3f}): {verdict}.", eps, evidence,
            ))
        for low, high, n, _, acc in _bins(report, limits):
            if round(low, 9) in clean_bins:
                n_clean, acc_clean = clean_bins[round(low, 9)]
                if abs(acc - acc_clean) > limits.bin_gap:
                    flags.append(Flag(
                        FlagCode.BIN_ACCURACY_GAP, WARNING,
                        f"At eps={eps:g}, predictions with confidence {low:.2f}-{high:.2f} are right "
                        f"{acc:.0%} of the time against {acc_clean:.0%} on clean inputs.", eps,
                        {"bin": [low, high], "clean_accuracy": acc_clean, "adversarial_accuracy": acc,
                         "clean_count": n_clean, "adversarial_count": n},
                    ))
                    break
    if len(jumps) >= 2:
        jump, eps = max(jumps)
        if jump > 0:
            flags.append(Flag(
                FlagCode.ECE_INFLECTION, INFO,
                f"ECE jumps most on the way to eps={eps:g} (+{jump:.3f}): the model stops being "
                "trustworthy around there.", eps, {"jump": jump},
            ))
    return flags


def abstention_flags(abstentions: list[tuple[float, dict[str, float]]], limits: Thresholds) -> list[Flag]:
    """Flags where abstaining on low confidence, tuned on clean data, fails under attack.

    ``abstentions`` holds, per ε, the risk and coverage of answering only inputs at or above
    the confidence threshold that keeps ``abstention_coverage`` of clean inputs; fewer than
    ``min_bin_samples`` answered attacked inputs are too few to judge.
    """
    flags = []
    for eps, entry in abstentions:
        gap = entry["adv_risk"] - entry["clean_risk"]
        answered = round(entry["adv_coverage"] * entry["n_samples"])
        if math.isfinite(gap) and gap > limits.abstention_gap and answered >= limits.min_bin_samples:
            flags.append(Flag(
                FlagCode.ABSTENTION_FAILS, WARNING,
                f"Abstaining below confidence {entry['threshold']:.4f} keeps "
                f"{entry['clean_coverage']:.0%} of clean inputs at {entry['clean_risk']:.1%} error, but at "
                f"eps={eps:g} it answers {entry['adv_coverage']:.0%} of attacked inputs and "
                f"{entry['adv_risk']:.0%} of those answers are wrong: a confidence threshold does not "
                "protect against this attack.", eps, dict(entry),
            ))
    return flags


def evaluation_flags(evaluation: dict[str, object]) -> list[Flag]:
    """A stored adversarial set made against other weights: the robustness shown is transfer."""
    if evaluation.get("kind") != "transfer":
        return []
    return [Flag(
        FlagCode.TRANSFER_EVALUATION, WARNING,
        "The adversarial inputs were crafted against another model (a stored set whose model "
        "fingerprint differs): this is a transfer evaluation, usually much weaker than a white-box "
        "attack on this model, so robust accuracy and adversarial calibration look better than "
        "they are. Attack this model itself before signing it off.",
        evidence={"model_fingerprint": evaluation["model_fingerprint"],
                  "source_model_fingerprint": evaluation["source_model_fingerprint"],
                  "adversarial_set": evaluation["adversarial_set"]},
    )]


def illusion_flags(found: IllusionReport) -> list[Flag]:
    """The illusion check's verdict as a flag: an illusion is an error, a suspicion a warning."""
    if found.verdict == "genuine":
        return []
    evidence = {"verdict": found.verdict, "served_adv_accuracy": found.served_adv_accuracy,
                "best_adv_accuracy": found.best_adv_accuracy, "best_check": found.best_check}
    eps = float(found.settings["eps"])
    if found.verdict == "illusion":
        return [Flag(FlagCode.ILLUSION_OF_ROBUSTNESS, ERROR,
                     f"The robustness shown at eps={eps:g} is an illusion: {found.reasons[0]}. Report "
                     f"{found.best_adv_accuracy:.3f}, not {found.served_adv_accuracy:.3f}.",
                     eps=eps, evidence=evidence)]
    return [Flag(FlagCode.SUSPECT_ROBUSTNESS, WARNING,
                 f"The robustness shown at eps={eps:g} may be overstated: " + "; ".join(found.reasons) + ".",
                 eps=eps, evidence=evidence)]


def fix_flag(finding: dict[str, object]) -> Flag:
    """A finding of the fixes table (:mod:`advcal.analyses.fixes`) as an audit flag."""
    return Flag(FlagCode(finding["code"]), Severity(finding["severity"]), str(finding["message"]) + ".",
                evidence={"fix": finding.get("fix")})
