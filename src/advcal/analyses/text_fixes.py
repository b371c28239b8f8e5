"""Which post-hoc fix survives a text attack? The fixes table of :mod:`advcal.analyses.fixes`
for text classifiers under the score-based word and character attacks.

The same calibrators, fitted the same three ways, scored in the same two threat models:
``frozen`` (texts perturbed against the uncalibrated classifier) and ``adaptive`` (the attack
reading the *calibrated* classifier's scores, for the calibrators that keep a smooth score;
for isotonic regression and histogram binning, as for images, the adaptive attacker's best move
is the attack on the raw classifier). A budget — the largest fraction of a text's words changed —
takes the place of ε.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

import advcal
from advcal._core.validation import check_choice, check_int
from advcal.analyses.fixes import DEFAULT_CALIBRATORS, FIT_ON, FixesReport, check_fix_choices, fixes_table
from advcal.calibration.base import Calibrator
from advcal.engine.passes import collect
from advcal.engine.text_passes import TextAttacks
from advcal.text.attack_table import SCORE_ATTACKS, TEXT_ATTACKS, attack_record
from advcal.text.data import TextDataset


def evaluate_text_fixes(
    model: nn.Module,
    calibration: TextDataset,
    test: TextDataset,
    budgets: Sequence[float],
    *,
    attack: str = "word",
    attack_params: Mapping[str, object] | None = None,
    calibrators: Sequence[str] = DEFAULT_CALIBRATORS,
    fit_on: Sequence[str] = FIT_ON,
    seed: int = 0,
    batch_size: int = 32,
    n_bins: int = 15,
) -> FixesReport:
    """Fit each calibrator on ``calibration`` each way in ``fit_on``; score it on ``test``.

    Args:
        model: the uncalibrated text classifier: any ``nn.Module`` mapping a list of texts to logits.
        calibration, test: the texts calibrators are fitted on and the texts they are scored on.
        budgets: the sweep: largest fractions of a text's words changed.
        attack, attack_params: ``word`` or ``char`` and its further settings (``query_budget``).
        calibrators, fit_on, seed, batch_size, n_bins: as in
            :func:`advcal.calibration.evaluate_fixes` (``batch_size`` in texts).
    """
    check_choice(attack, "attack", SCORE_ATTACKS)
    check_int(batch_size, "batch_size", 1)
    check_fix_choices(calibrators, fit_on)
    budgets = [float(b) for b in budgets]
    attackers = [TEXT_ATTACKS[attack].build(budget, **{"seed": seed, **dict(attack_params or {})})
                 for budget in budgets]

    def attacked(data: TextDataset, fitted: Calibrator | None) -> list[torch.Tensor]:
        """Logits per budget of the texts perturbed against the classifier (calibrated by
        ``fitted``, when given: the attack then reads the calibrated scores)."""
        target = model if fitted is None else fitted.wrap(model)
        found = collect("", target, TextAttacks(data, attackers, budgets, batch_size, wanted=0))
        return [logits.double() for logits in found.adversarial_logits]

    def clean_logits(data: TextDataset) -> torch.Tensor:
        return collect("", model, TextAttacks(data, [], [], batch_size, wanted=0)).clean_logits.double()

    baseline, fixes, flags = fixes_table(clean_logits, attacked, calibration, test,
                                         torch.from_numpy(calibration.labels), torch.from_numpy(test.labels),
                                         budgets, calibrators, fit_on, n_bins)
    return FixesReport(
        baseline=baseline, fixes=fixes, flags=flags,
        settings={"advcal_version": advcal.__version__, "epsilons": budgets,
                  "budget": TEXT_ATTACKS[attack].budget,
                  "attack": attack_record(attack, attackers[0].params),
                  "calibrators": list(calibrators),
                  "fit_on": list(fit_on), "n_bins": n_bins,
                  "calibration": {"spec": calibration.name, "n_samples": len(calibration)},
                  "test": {"spec": test.name, "n_samples": len(test)}},
    )
