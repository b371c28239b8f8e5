"""Is a text classifier's robustness real? The illusion check with score-based text attacks.

arXiv 2402.17509's own setting: a text classifier served at an extreme temperature rounds the
float32 probabilities a score-based attack reads to 0 and 1, so word importance and
substitution gains vanish and the attack fails — the model looks robust. The checks, each an
adversarial accuracy of the model as served (temperatures change only what the attack reads):

1. **served**: the attack as everyone runs it (``scores="probability"``, ``loss_temperature=1``);
2. **logit**: the same attack reading float64 log-odds of the logits, which never saturate (the
   text counterpart of the image check's scale-invariant losses);
3. **cal**: the attack through one temperature fitted by NLL on clean calibration texts;
4. **sanity**: accuracy must not rise from half the budget to the budget;
5. **saturation**: the share of test texts whose served float32 probabilities are exactly 0
   and 1 (the text counterpart of vanishing gradients);
6. with ``full`` (or when the cheap checks do not settle it): **sweep**, the attack through a
   log grid of temperatures, and **opt**, the temperature minimising adversarial accuracy on the
   calibration texts, applied to the test texts.

The verdict and its thresholds are the image check's (:mod:`advcal.analyses.illusion.detector`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import torch
from torch import nn

import advcal
from advcal._core.validation import check_choice, check_int
from advcal.analyses.illusion.detector import (
    SANITY_TOLERANCE,
    IllusionReport,
    illusion_doubts,
    illusion_verdict,
    lowest_check,
)
from advcal.analyses.illusion.search import log_grid, optimise_temperature
from advcal.calibration import fit_temperature
from advcal.engine.passes import collect
from advcal.engine.text_passes import TextAttacks
from advcal.text.attack_table import SCORE_ATTACKS, TEXT_ATTACKS
from advcal.text.data import TextDataset

TEXT_TEMPERATURES = log_grid(1e-3, 1e6, per_decade=1)


class _TextRunner:
    """Runs one text attack over a split in batches, counting runs, queries and time."""

    def __init__(self, model: nn.Module, batch_size: int) -> None:
        self.model, self.batch_size = model, batch_size
        self.runs = self.queries = 0
        self.seconds = 0.0

    def accuracy(self, attack: object, data: TextDataset) -> float:
        start = time.perf_counter()
        # The budget is the attack's own; the modality needs one only to pick examples to keep.
        passes = TextAttacks(data, [attack], [0.0], self.batch_size, wanted=0)
        found = collect("", self.model, passes)
        self.queries += passes.queries
        self.runs += 1
        self.seconds += time.perf_counter() - start
        return int((found.adversarial_logits[0].argmax(1) == found.y).sum()) / len(data)

    def logits(self, data: TextDataset) -> torch.Tensor:
        found = collect("", self.model, TextAttacks(data, [], [], self.batch_size, wanted=0))
        return found.clean_logits.double()


def check_text_illusion(
    model: nn.Module,
    test: TextDataset,
    calibration: TextDataset,
    budget: float,
    attack: str = "word",
    attack_params: Mapping[str, object] | None = None,
    *,
    seed: int = 0,
    batch_size: int = 32,
    full: bool = False,
    temperatures: Sequence[float] = TEXT_TEMPERATURES,
) -> IllusionReport:
    """Whether ``model``'s robustness to ``attack`` at ``budget`` is genuine, an illusion, or suspect.

    Args:
        model: the text classifier as served (any temperature is part of it): any ``nn.Module``
            mapping a list of texts to logits.
        test: the texts the figures are measured on.
        calibration: clean texts to fit the ``cal`` temperature and to search ``opt`` on.
        budget: the attack's budget: the largest fraction of a text's words changed.
        attack: ``word`` or ``char`` (the score-based attacks; embedding PGD reads no scores).
        attack_params: further settings (``query_budget``, ...); not ``scores`` or
            ``loss_temperature``, which the checks set.
        seed, batch_size: the attacks' seed, texts per batch.
        full: run the sweep and ``opt`` even when the cheap checks settle the verdict.
        temperatures: the grid of the sweep.
    """
    check_choice(attack, "attack", SCORE_ATTACKS)
    check_int(batch_size, "batch_size", 1)
    params = dict(attack_params or {})
    for reserved in ("scores", "loss_temperature", TEXT_ATTACKS[attack].budget):
        params.pop(reserved, None)
    runner = _TextRunner(model, batch_size)

    def run(data: TextDataset, fraction: float = budget, **options: object) -> float:
        made = TEXT_ATTACKS[attack].build(fraction, **{"seed": seed, **params, **options})
        return runner.accuracy(made, data)

    clean = runner.logits(test)
    served_probabilities = torch.softmax(clean.float(), 1)
    checks: dict[str, dict[str, object]] = {}
    served = run(test)
    one_run = runner.seconds
    checks["served"] = {"adv_accuracy": served,
                        "clean_accuracy": float((clean.argmax(1).numpy() == test.labels).mean()),
                        "mean_confidence": float(served_probabilities.max(1).values.mean()),
                        "attack": f"{attack} reading float32 probabilities"}
    checks["logit"] = {"adv_accuracy": run(test, scores="logit"),
                       "attack": f"{attack} reading float64 log-odds"}
    temperature = fit_temperature(runner.logits(calibration), torch.from_numpy(calibration.labels))
    checks["cal"] = {"adv_accuracy": run(test, loss_temperature=temperature), "temperature": temperature,
                     "attack": f"{attack} through the NLL-fitted temperature"}
    half = run(test, fraction=budget / 2)
    checks["sanity"] = {"half_budget_adv_accuracy": half,
                        "not_monotone_in_eps": half < served - SANITY_TOLERANCE}
    saturated = ((served_probabilities == 0) | (served_probabilities == 1)).any(1)
    checks["saturation"] = {"saturated_share": float(saturated.float().mean())}
    verdict, reasons = illusion_verdict(checks)
    settled = verdict == "illusion" or (verdict == "genuine" and not illusion_doubts(checks))
    if full or not settled:
        sweep = [(t, run(test, loss_temperature=t)) for t in temperatures]
        best_t, best_accuracy = min(sweep, key=lambda row: row[1])
        checks["sweep"] = {"adv_accuracy": best_accuracy, "temperature": best_t,
                           "curve": [{"temperature": t, "adv_accuracy": a} for t, a in sweep]}
        search = optimise_temperature(lambda t: run(calibration, loss_temperature=t))
        checks["opt"] = {"adv_accuracy": run(test, loss_temperature=search.temperature),
                         "temperature": search.temperature, "search": search.to_dict()}
        verdict, reasons = illusion_verdict(checks)
    best_check, best_accuracy = lowest_check(checks)
    return IllusionReport(
        verdict=verdict,
        served_adv_accuracy=served,
        best_adv_accuracy=best_accuracy,
        best_check=best_check,
        reasons=reasons,
        checks=checks,
        attack_runs=runner.runs,
        cost={"queries": runner.queries, "seconds": runner.seconds,
              "time_of_served_attack": runner.seconds / max(one_run, 1e-12),
              "settled_by_cheap_checks": settled},
        # "eps" is the report's name for the sweep variable, which a text audit's budget is.
        settings={"advcal_version": advcal.__version__, "budget": budget, "eps": budget, "attack": attack,
                  "params": params, "seed": seed, "batch_size": batch_size, "full": full,
                  "temperatures": list(temperatures),
                  "test": {"spec": test.name, "n_samples": len(test)},
                  "calibration": {"spec": calibration.name, "n_samples": len(calibration)}},
    )
