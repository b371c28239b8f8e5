"""Which post-hoc fix survives attack? Every calibrator, fitted three ways, under two threats.

Each calibrator is fitted on the calibration split — on clean logits, on adversarial logits
(examples crafted against the uncalibrated model at every ε of the sweep, pooled), or on both
(``mixed``); adversarial temperature scaling is always fitted on both. Each fit is then scored
on the test split, clean and at every ε, in two threat models:

* ``frozen`` — the adversarial examples crafted against the *uncalibrated* model (a frozen set,
  what a static benchmark measures);
* ``adaptive`` — an attacker who attacks the *calibrated* model itself
  (:func:`~advcal.calibration.attack_calibrated`: end to end for differentiable calibrators,
  BPDA for the others).

A fix **holds** when, under the adaptive attacker, its ECE at every ε is no worse than the
uncalibrated model's (within ``NOISE``), and **helps** when its mean adaptive ECE over the sweep
is lower by more than ``NOISE``. Flags: ``FIX_BACKFIRES`` when a fix improves clean ECE but
worsens adversarial ECE at some ε by more than ``NOISE`` (either threat model),
``FIX_MOVES_DECISIONS`` when its accuracy on the same inputs (clean, or the frozen set) differs
from the uncalibrated model's by more than ``DECISION_SHIFT`` (vector scaling's biases, isotonic and
histogram maps can move the decision: a fit on adversarial data may learn to undo the frozen
attack, or to call every sample the majority class), and
``RETRAIN_NOT_PATCH`` (the seed's rule of thumb) when no fix brings clean ECE under 0.15.

For isotonic regression and histogram binning the adaptive attacker's BPDA attack is the attack
on the raw model, so both threat models see the same inputs. Temperature scaling fitted on
mixed data is adversarial temperature scaling: when both are asked for, the table holds it once,
under ``adversarial-temperature``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from torch import nn

import advcal
from advcal._core.errors import ConfigError
from advcal._core.validation import check_int
from advcal.attacks import get_attack
from advcal.calibration.base import Calibrator
from advcal.calibration.registry import CALIBRATORS
from advcal.calibration.temperature import AdversarialTemperatureScaling
from advcal.data import DataSource
from advcal.engine.model_check import check_model_fits
from advcal.engine.passes import ImageAttack, collect
from advcal.metrics import calibration_report
from advcal.results.flags import WARNING, FlagCode

FIT_ON = ("clean", "adversarial", "mixed")
METRICS = ("ece", "brier", "nll", "accuracy")
RETRAIN_ECE = 0.15
# ECE differences below this are within the noise of a few hundred samples (the audit's
# bootstrap intervals on digits are about this wide): not a change worth a flag.
NOISE = 0.01
# A fix whose accuracy on the same inputs (clean, or the frozen set) differs from the uncalibrated
# model's by more than this has moved the decision boundary: its figures are another classifier's.
DECISION_SHIFT = 0.05
# A split of whatever the model reads: a DataSource of images, a TextDataset of texts.
Split = TypeVar("Split")
DEFAULT_CALIBRATORS = ("temperature", "vector", "isotonic", "histogram", "adversarial-temperature")


@dataclass
class Fix:
    """One calibrator fitted one way, and its figures (``metrics[threat][condition][metric]``)."""

    calibrator: str
    fit_on: str
    fitted: Calibrator
    metrics: dict[str, dict[str, dict[str, float]]]
    holds: bool = False
    helps: bool = False

    @property
    def name(self) -> str:
        return f"{self.calibrator}/{self.fit_on}"

    def to_dict(self) -> dict[str, object]:
        return {"calibrator": self.calibrator, "fit_on": self.fit_on, "holds": self.holds,
                "helps": self.helps, "metrics": self.metrics}


@dataclass
class FixesReport:
    """The uncalibrated baseline, every fix, the flags and the settings."""

    baseline: dict[str, dict[str, dict[str, float]]]
    fixes: list[Fix]
    flags: list[dict[str, object]]
    settings: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"baseline": self.baseline, "fixes": [fix.to_dict() for fix in self.fixes],
                "flags": self.flags, "settings": self.settings}

    def fix(self, name: str) -> Fix:
        """The fix called ``calibrator/fit_on``."""
        for fix in self.fixes:
            if fix.name == name:
                return fix
        raise ConfigError(f"name: expected one of {', '.join(f.name for f in self.fixes)}, got {name!r}")


def evaluate_fixes(
    model: nn.Module,
    calibration: DataSource,
    test: DataSource,
    epsilons: Sequence[float],
    *,
    attack: str = "pgd",
    attack_params: dict[str, object] | None = None,
    calibrators: Sequence[str] = DEFAULT_CALIBRATORS,
    fit_on: Sequence[str] = FIT_ON,
    seed: int = 0,
    batch_size: int = 256,
    n_bins: int = 15,
) -> FixesReport:
    """Fit each calibrator on ``calibration`` each way in ``fit_on``; score it on ``test``.

    Args:
        model: the uncalibrated model (logits).
        calibration, test: the split calibrators are fitted on and the split they are scored on.
        epsilons: the ε sweep, in input units.
        attack, attack_params: the attack of both threat models (a registered name).
        calibrators: kinds from :data:`advcal.calibration.CALIBRATORS`.
        fit_on: any of ``clean``, ``adversarial``, ``mixed``.
        seed, batch_size, n_bins: attack seed, samples per pass, ECE bins.
    """
    check_int(batch_size, "batch_size", 1)
    check_fix_choices(calibrators, fit_on)
    epsilons = [float(e) for e in epsilons]
    attacker = get_attack(attack, eps=epsilons, seed=seed, **dict(attack_params or {}))
    check_model_fits("", model, test, batch_size, needs_gradient=attacker.needs_gradient)

    def attacked(data: DataSource, fitted: Calibrator | None) -> list[torch.Tensor]:
        """Logits per ε at adversarial examples crafted against the model, or against the model
        calibrated by ``fitted`` (end to end: :func:`attack_calibrated`)."""
        target = model if fitted is None else fitted.wrap(model)
        found = collect("", target, ImageAttack(data, attacker, batch_size))
        return [logits.double() for logits in found.adversarial_logits]

    def clean_logits(data: DataSource) -> torch.Tensor:
        return collect("", model, ImageAttack(data, None, batch_size)).clean_logits.double()

    baseline, fixes, flags = fixes_table(clean_logits, attacked, calibration, test, calibration.y, test.y,
                                         epsilons, calibrators, fit_on, n_bins)
    return FixesReport(
        baseline=baseline, fixes=fixes, flags=flags,
        settings={"advcal_version": advcal.__version__, "epsilons": epsilons, "attack": attacker.params(),
                  "calibrators": list(calibrators), "fit_on": list(fit_on), "n_bins": n_bins,
                  "calibration": {"spec": calibration.name, "split": calibration.split,
                                  "n_samples": len(calibration)},
                  "test": {"spec": test.name, "split": test.split, "n_samples": len(test)}},
    )


def check_fix_choices(calibrators: Sequence[str], fit_on: Sequence[str]) -> None:
    """Refuse unknown calibrator kinds and fitting ways."""
    unknown = [kind for kind in calibrators if kind not in CALIBRATORS]
    if unknown or not calibrators:
        raise ConfigError(f"calibrators: expected some of {', '.join(CALIBRATORS)}, got {list(calibrators)}")
    bad = [way for way in fit_on if way not in FIT_ON]
    if bad or not fit_on:
        raise ConfigError(f"fit_on: expected some of {', '.join(FIT_ON)}, got {list(fit_on)}")


def fixes_table(
    clean_logits: Callable[[Split], torch.Tensor],
    attacked: Callable[[Split, Calibrator | None], list[torch.Tensor]],
    calibration: Split,
    test: Split,
    calibration_labels: torch.Tensor,
    test_labels: torch.Tensor,
    epsilons: list[float],
    calibrators: Sequence[str],
    fit_on: Sequence[str],
    n_bins: int,
) -> tuple[dict[str, dict[str, dict[str, float]]], list[Fix], list[dict[str, object]]]:
    """The baseline, every fix and the flags, whatever the inputs are (images or texts).

    ``clean_logits(split)`` gives the model's logits on a split; ``attacked(split, None)`` the
    logits per ε at examples crafted against the uncalibrated model, ``attacked(split, fitted)``
    those crafted against the model calibrated by ``fitted`` (asked for differentiable
    calibrators only: for the others the adaptive attacker's best move is the attack on the
    raw model, BPDA's, which the frozen set already is).
    """
    def figures(clean: torch.Tensor, per_eps: list[torch.Tensor]) -> dict[str, dict[str, float]]:
        out = {"clean": _metrics(clean, test_labels, n_bins)}
        out.update({f"eps={eps:g}": _metrics(logits, test_labels, n_bins)
                    for eps, logits in zip(epsilons, per_eps, strict=True)})
        return out

    cal_clean = clean_logits(calibration)
    cal_adversarial = attacked(calibration, None)
    test_clean = clean_logits(test)
    test_frozen = attacked(test, None)
    baseline = figures(test_clean, test_frozen)
    repeated = calibration_labels.repeat(len(epsilons))
    fit_data = {
        "clean": (cal_clean, calibration_labels),
        "adversarial": (torch.cat(cal_adversarial), repeated),
        "mixed": (torch.cat([cal_clean, *cal_adversarial]), calibration_labels.repeat(len(epsilons) + 1)),
    }
    fixes = []
    for kind in calibrators:
        ways = [w for w in fit_on if not (kind == "temperature" and w == "mixed"
                                          and AdversarialTemperatureScaling.kind in calibrators)]
        for way in (("mixed",) if kind == AdversarialTemperatureScaling.kind else ways):
            if kind == AdversarialTemperatureScaling.kind:
                fitted = AdversarialTemperatureScaling().fit(
                    cal_clean, calibration_labels, adversarial_logits=torch.cat(cal_adversarial),
                    adversarial_labels=repeated)
            else:
                fitted = CALIBRATORS[kind]().fit(*fit_data[way])
            clean = fitted.transform(test_clean)
            frozen_set = [fitted.transform(logits) for logits in test_frozen]
            adaptive = attacked(test, fitted) if fitted.differentiable else frozen_set
            fixes.append(Fix(kind, way, fitted, {
                "frozen": figures(clean, frozen_set),
                "adaptive": figures(clean, adaptive),
            }))
    return baseline, fixes, _judge(baseline, fixes, epsilons)


def _metrics(logits: torch.Tensor, labels: torch.Tensor, n_bins: int) -> dict[str, float]:
    report = calibration_report(logits, labels, n_bins=n_bins)
    return {key: float(report[key]) for key in METRICS}


def _judge(baseline: dict, fixes: list[Fix], epsilons: list[float]) -> list[dict[str, object]]:
    """Mark the fixes that hold; flag the ones that backfire, and a model past patching."""
    conditions = [f"eps={eps:g}" for eps in epsilons]
    flags = []
    for fix in fixes:
        adaptive = fix.metrics["adaptive"]
        fix.holds = all(adaptive[c]["ece"] <= baseline[c]["ece"] + NOISE for c in conditions)
        fix.helps = (sum(adaptive[c]["ece"] - baseline[c]["ece"] for c in conditions) / len(conditions)
                     < -NOISE)
        clean_gain = baseline["clean"]["ece"] - fix.metrics["frozen"]["clean"]["ece"]
        worse = [(threat, c) for threat in ("frozen", "adaptive") for c in conditions
                 if fix.metrics[threat][c]["ece"] > baseline[c]["ece"] + NOISE]
        # On the same inputs (clean, and the frozen set): an attack that does better or worse
        # through the calibrator (adaptive) is not a moved decision.
        same_inputs = fix.metrics["frozen"]
        moved = [(c, baseline[c]["accuracy"], same_inputs[c]["accuracy"]) for c in ("clean", *conditions)
                 if abs(same_inputs[c]["accuracy"] - baseline[c]["accuracy"]) > DECISION_SHIFT]
        if moved:
            condition, before, after = max(moved, key=lambda m: abs(m[2] - m[1]))
            flags.append({
                "code": FlagCode.FIX_MOVES_DECISIONS.value, "severity": WARNING.value, "fix": fix.name,
                "message": f"{fix.name} changes the classifier's decisions (accuracy "
                           f"{'clean' if condition == 'clean' else 'on the frozen set at ' + condition} "
                           f"{before:.3f} -> "
                           f"{after:.3f}): it is another classifier, not a recalibration; judge its "
                           "robustness as a new model's, and prefer a fix that keeps the decision",
            })
        if clean_gain > 0 and worse:
            threat, condition = worse[0]
            flags.append({
                "code": FlagCode.FIX_BACKFIRES.value, "severity": WARNING.value, "fix": fix.name,
                "message": f"{fix.name} improves clean ECE ({baseline['clean']['ece']:.4f} -> "
                           f"{fix.metrics['frozen']['clean']['ece']:.4f}) but worsens adversarial ECE at "
                           f"{condition} under the {threat} attack ({baseline[condition]['ece']:.3f} -> "
                           f"{fix.metrics[threat][condition]['ece']:.3f})",
            })
    best_clean = min(fix.metrics["frozen"]["clean"]["ece"] for fix in fixes)
    if best_clean > RETRAIN_ECE:
        flags.append({
            "code": FlagCode.RETRAIN_NOT_PATCH.value, "severity": WARNING.value, "fix": None,
            "message": f"no post-hoc fix brings clean ECE under {RETRAIN_ECE} (best {best_clean:.3f}): "
                       "retrain (the training recipes of advcal train), do not patch",
        })
    return flags
